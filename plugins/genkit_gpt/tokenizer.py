"""Tokenizers trained on the training text with Hugging Face ``tokenizers``.

Two kinds, both wrapped as a transformers ``PreTrainedTokenizerFast`` so they save with
``save_pretrained`` and reopen with ``AutoTokenizer.from_pretrained(DIR)`` without genkit:

- ``bpe``: byte-level BPE (GPT-2's scheme): any text round-trips exactly, no unknowns.
- ``char``: one token per character seen in the training text, plus ``<unk>`` for others.

Both reserve ``<|endoftext|>`` as a dedicated BOS/EOS/pad token, never a character of the
text (a newline as EOS would stop generation at the first line break).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genkit.plugin import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TOKENIZER_KINDS = ("bpe", "char")
EOS = "<|endoftext|>"
UNK = "<unk>"


def train_tokenizer(text: str, kind: str, vocab_size: int,
                    max_length: int) -> PreTrainedTokenizerBase:
    """A tokenizer of ``kind`` trained on ``text``.

    Args:
        text: the training text.
        kind: ``"bpe"`` or ``"char"``.
        vocab_size: the BPE vocabulary size (the char vocabulary is the text's characters).
        max_length: the model's context in tokens (recorded as ``model_max_length``).
    """
    from transformers import PreTrainedTokenizerFast

    if not text:
        raise DataError("cannot train a tokenizer on an empty text; give a non-empty corpus")
    if kind == "bpe":
        backend = _train_bpe(text, vocab_size)
        specials = {"bos_token": EOS, "eos_token": EOS, "pad_token": EOS}
    elif kind == "char":
        backend = _char_level(text)
        specials = {"bos_token": EOS, "eos_token": EOS, "pad_token": EOS, "unk_token": UNK}
    else:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; use one of {', '.join(TOKENIZER_KINDS)}")
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=max_length,
                                   clean_up_tokenization_spaces=False, **specials)


def _train_bpe(text: str, vocab_size: int):  # -> tokenizers.Tokenizer
    """Byte-level BPE as GPT-2 has it: bytes as the base alphabet, merges learnt from text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator([text], trainer=trainer)
    return tokenizer


def _char_level(text: str):  # -> tokenizers.Tokenizer
    """One token per character: split every character apart, look it up, fuse on decode."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {EOS: 0, UNK: 1}
    for char in sorted(set(text)):
        vocab[char] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (no length warning for long corpora)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.encode(text, add_special_tokens=False).ids
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
