"""genkit's GAN family: a DCGAN-style (or MLP) generative adversarial network.

This module is light on purpose (no torch): it only registers the spec; the model code
lives in :mod:`genkit_gan.generator` and :mod:`genkit_gan.models` and is imported when a
command needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genkit.plugin import hookimpl


@hookimpl
def register_generators(register: Callable[..., Any]) -> None:
    """Offer the ``gan`` generator and its shipped default checkpoint (trained on digits)."""
    register("gan", target="genkit_gan.generator:GANGenerator", modality="image",
             summary="DCGAN-style GAN (conv or MLP), non-saturating or hinge loss, "
                     "optional class conditioning",
             default_checkpoint="genkit_gan:default")
