"""genkit plugin: GPT-2-style causal language models on transformers and tokenizers.

This module stays light (no torch import): it only describes the generator; the class in
``genkit_gpt.generator`` is imported when a command needs it.
"""

from __future__ import annotations

from collections.abc import Callable

from genkit.plugin import hookimpl


@hookimpl
def register_generators(register: Callable[..., None]) -> None:
    """Offer the ``gpt`` text generator with its shipped default model (trained on pydoc)."""
    register("gpt", target="genkit_gpt.generator:GPTGenerator", modality="text",
             summary="GPT-2-style causal language model (transformers) with a BPE or "
                     "character tokenizer trained on your text; fine-tunes local models",
             default_checkpoint="genkit_gpt:default")
