"""GPT: a GPT-2-style causal language model (transformers) with its own tokenizer.

Trained from scratch, the tokenizer (byte-level BPE or character level, see
``genkit_gpt.tokenizer``) is learnt from the training text the first time a dataset is
made, and the ``GPT2LMHeadModel`` is rebuilt with the real vocabulary size. With
``base=DIR_OR_ID`` any causal LM (a local directory or a Hub id ``ORG/NAME[@REV]``,
``AutoModelForCausalLM`` + ``AutoTokenizer``) is fine-tuned, keeping its tokenizer: whole,
or with ``lora_rank=R`` through a peft LoRA adapter (see ``genkit_gpt.pretrained``).

A checkpoint directory is a plain transformers model directory (``config.json``,
``model.safetensors``, ``tokenizer.json``) beside genkit's ``genkit.json``, so
``AutoModelForCausalLM.from_pretrained(DIR)`` and ``pipeline("text-generation", model=DIR)``
open it without genkit. A LoRA checkpoint holds only the adapter (``adapter_model.safetensors``
+ ``adapter_config.json``) and the tokenizer: ``AutoPeftModelForCausalLM.from_pretrained(DIR)``
opens it with its base; :meth:`GPTGenerator.merge_lora` (``genkit export --merge``) makes a
plain model of it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from genkit.plugin import (
    CheckpointError,
    ConfigError,
    DataError,
    Generator,
    SamplingError,
    StepContext,
    TextData,
    TrainArgs,
    check,
    check_lora_settings,
    lora_scaled,
    quiet_progress,
    sample_generators,
)
from genkit_gpt.decoding import DecodeSettings, sample_tokens
from genkit_gpt.pretrained import (
    add_lora,
    card_details,
    foreign_settings,
    open_adapter,
    open_pretrained,
    save_adapter,
)
from genkit_gpt.tokenizer import TOKENIZER_KINDS, encode, train_tokenizer


@dataclass
class GPTConfig:
    """Hyper-parameters of a GPT model and its tokenizer."""

    tokenizer: str = "bpe"  # "bpe" (byte-level BPE) or "char" (one token per character)
    vocab_size: int = 2048  # BPE target size; after training, the real vocabulary size
    # with base=DIR the base model's own tokenizer and shape are used, and recorded here
    block_size: int = 128  # context length in tokens (training window and position table)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    base: str | None = None  # a causal LM to fine-tune instead: a directory or Hub id ORG/NAME[@REV]
    lora_rank: int = 0  # > 0: train only a LoRA adapter of this rank on base; 0: all weights
    lora_alpha: float | None = None  # the adapter's scale is alpha / rank (None: alpha = rank)
    lora_dropout: float = 0.0  # dropout on the adapter's input
    lora_targets: tuple[str, ...] | None = None  # None: c_attn,c_proj (GPT-2), q/k/v/o_proj (Llama)

    def __post_init__(self) -> None:
        check(self.tokenizer in TOKENIZER_KINDS, f"unknown tokenizer kind {self.tokenizer!r}; "
              f"use one of {', '.join(TOKENIZER_KINDS)}")
        check(self.vocab_size >= 1, "vocab_size must be positive")
        check(self.vocab_size >= 257 or self.tokenizer != "bpe" or self.base is not None,
              "vocab_size must be at least 257 for byte-level BPE (256 bytes + <|endoftext|>)")
        check(self.block_size >= 2, "block_size must be at least 2 tokens")
        check(min(self.n_layer, self.n_head, self.n_embd) >= 1,
              "n_layer, n_head and n_embd must be positive")
        check(self.n_embd % self.n_head == 0,
              f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        check(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        check_lora_settings(self.lora_rank, self.lora_alpha, self.lora_dropout, self.base, "gpt")


@dataclass
class GPTSampleOptions:
    """How to continue a prompt."""

    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 0  # keep the k most likely tokens; 0: off
    top_p: float = 1.0  # nucleus sampling; 1.0: off
    repetition_penalty: float = 1.0  # > 1 discourages repeats; 1.0: off
    include_prompt: bool = True  # the text returned starts with the prompt
    stop_at_eos: bool = True  # end a sample at the end-of-text token
    lora_scale: float = 1.0  # LoRA checkpoints: the adapter's strength (0: the base model)

    def __post_init__(self) -> None:
        check(self.max_new_tokens >= 1, "max_new_tokens must be at least 1")
        check(self.temperature > 0 and math.isfinite(self.temperature),
              "temperature must be > 0 (use top_k=1 for greedy decoding)")
        check(self.top_k >= 0, "top_k must be >= 0 (0 turns it off)")
        check(0.0 < self.top_p <= 1.0, "top_p must be in (0, 1] (1 turns it off)")
        check(self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty),
              "repetition_penalty must be > 0 (1 turns it off)")
        check(self.lora_scale >= 0 and math.isfinite(self.lora_scale), "lora_scale must be >= 0")


class TokenWindows(Dataset):
    """Every window of ``block_size + 1`` consecutive tokens (inputs plus the next token)."""

    def __init__(self, ids: torch.Tensor, block_size: int) -> None:
        self.ids = ids  # (L,)
        self.block_size = block_size

    def __len__(self) -> int:
        return max(0, len(self.ids) - self.block_size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index: index + self.block_size + 1]}  # (T + 1,)


class GPTGenerator(Generator):
    """A GPT-2-style language model: train on a text, fine-tune a local model, sample text."""

    Config = GPTConfig
    SampleOptions = GPTSampleOptions
    modality = "text"
    conditions = ("prompt",)
    module_names = ("model",)
    ema_modules = ()  # language models train well without an EMA; the raw weights are used
    default_data = "pydoc"
    train_defaults = {"lr": 1e-3, "batch_size": 32, "steps": 2000, "weight_decay": 0.1,
                      "lr_schedule": "cosine", "clip_grad": 1.0}

    @property
    def derived_config_keys(self) -> tuple[str, ...]:
        """Config keys set from the data or the base model, not by the user (a resumed run
        may start from the user's values)."""
        fixed_by_base = ("n_layer", "n_head", "n_embd", "block_size")
        return ("vocab_size",) + (fixed_by_base if self.config.base else ())

    # ------------------------------------------------------------------ building
    def build(self) -> None:
        """A fresh GPT-2 from the config; a base model is opened lazily (see ``_ensure_model``)
        so that loading a fine-tuned checkpoint never needs the base directory."""
        self.model: Any = None
        self.tokenizer: Any = None
        # drawn now from the global RNG, as any model's init is at create time; the model
        # rebuilt once the vocabulary is known reuses it, so the init does not depend on
        # what ran between create() and training
        self._init_seed = int(torch.randint(0, 2**62, (1,)))
        if self.config.base is None:
            self.model = self._new_model(self.config.vocab_size)

    def _new_model(self, vocab_size: int, eos_token_id: int | None = None) -> Any:
        from transformers import GPT2Config, GPT2LMHeadModel

        c = self.config
        config = GPT2Config(vocab_size=vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                            n_layer=c.n_layer, n_head=c.n_head, resid_pdrop=c.dropout,
                            embd_pdrop=c.dropout, attn_pdrop=c.dropout,
                            # GPT-2's tanh GELU as one fused kernel: the same function (to
                            # 1e-7) as "gelu_new", whose five Python-level ops took 14% of
                            # a small model's training step on the CPU
                            activation_function="gelu_pytorch_tanh",
                            bos_token_id=eos_token_id, eos_token_id=eos_token_id,
                            pad_token_id=None)  # no pad in training windows
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._init_seed)
            model = GPT2LMHeadModel(config).to(self.device)
        model.generation_config.pad_token_id = eos_token_id
        return model

    def _ensure_model(self) -> None:
        """Open the base model and tokenizer (fine-tuning) if not done yet, with a fresh
        LoRA adapter on it when ``lora_rank`` is set (its init seeded like the model's)."""
        if self.model is not None or self.config.base is None:
            return
        with torch.inference_mode(False):  # opened inside inference(): still trainable
            self.model, self.tokenizer = open_pretrained(self.config.base, "base model",
                                                         self.device)
            self._record_shape()
            if self.config.lora_rank:
                self.model = add_lora(self.model, self.config, self._init_seed)

    def _record_shape(self) -> None:
        """Write what the tokenizer and (for a base model) the model fix into the config,
        so genkit.json tells the truth."""
        self.config.vocab_size = len(self.tokenizer)
        if self.config.base is None:
            return
        cfg = self.model.config
        for field, attr in (("n_layer", "num_hidden_layers"), ("n_head", "num_attention_heads"),
                            ("n_embd", "hidden_size")):
            value = getattr(cfg, attr, None)
            if isinstance(value, int):
                setattr(self.config, field, value)
        self.config.block_size = min(self.config.block_size, self.context_length())

    def _ensure_tokenizer(self, text: str) -> None:
        """Train the tokenizer on ``text`` the first time, and size the model to it."""
        if self.tokenizer is not None:
            return
        self.tokenizer = train_tokenizer(text, self.config.tokenizer, self.config.vocab_size,
                                         self.config.block_size)
        self.config.vocab_size = len(self.tokenizer)
        self.model = self._new_model(len(self.tokenizer), self.tokenizer.eos_token_id)

    def context_length(self) -> int:
        """The most tokens the model can attend to (its position table)."""
        self._ensure_model()
        limit = getattr(self.model.config, "max_position_embeddings", None)
        return int(limit) if isinstance(limit, int) and limit > 0 else self.config.block_size

    # ------------------------------------------------------------------ data
    def _check_text(self, data: Any) -> str:
        if not isinstance(data, TextData):
            raise DataError(f"gpt trains on text; got {type(data).__name__}: use 'pydoc' or "
                            "'text:PATH'")
        if not data.text.strip():
            raise DataError("the text is empty; give a corpus with some text in it")
        return data.text

    def _corpus_ids(self, text: str) -> torch.Tensor:
        """The text's token ids, after a BOS token when the tokenizer has one: (L,)."""
        ids = encode(self.tokenizer, text)
        bos = self.tokenizer.bos_token_id
        return torch.tensor(([bos] if bos is not None else []) + ids, dtype=torch.long)

    def make_dataset(self, data: Any, split: str) -> Dataset:
        """Windows of ``block_size + 1`` tokens of the text; trains the tokenizer first."""
        text = self._check_text(data)
        self._ensure_model()
        self._ensure_tokenizer(text)
        block = min(self.config.block_size, self.context_length())
        ids = self._corpus_ids(text)
        if len(ids) <= block:
            raise DataError(f"the text is {len(ids)} tokens, too short for windows of "
                            f"{block + 1}; use a longer text or a smaller block_size")
        return TokenWindows(ids, block)

    # ------------------------------------------------------------------ training
    def configure_optimizers(self, args: TrainArgs) -> dict[str, torch.optim.Optimizer]:
        """AdamW with weight decay on matrices only (not on biases, norms), as GPT-2 has it."""
        self._ensure_model()
        params = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": args.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        groups = [group for group in groups if group["params"]]
        return {"model": torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.99))}

    def training_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, Any]:
        """Next-token cross-entropy on a batch of windows, in nats per token."""
        x = batch["input_ids"]  # (B, T + 1)
        # dropout draws from torch's default generator, which the engine seeds every step
        # from (seed, step): kill-and-resume stays exact
        logits = ctx.models["model"](input_ids=x[:, :-1]).logits  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten())
        return {"loss": loss}

    @torch.no_grad()
    def evaluate(self, data: Any, batch_size: int = 32) -> dict[str, float]:
        """Held-out loss in nats per token, bits per character (comparable across
        tokenizers: total nats / characters / ln 2) and perplexity."""
        text = self._check_text(data)
        self._ensure_model()
        if self.tokenizer is None:
            raise DataError("the model has no tokenizer yet; train it before evaluating")
        nats, tokens = self._sum_nats(self._corpus_ids(text), batch_size)
        loss = nats / tokens
        return {"val_loss": loss, "val_bpc": nats / len(text) / math.log(2),
                "val_ppl": math.exp(min(loss, 50.0))}

    def _sum_nats(self, ids: torch.Tensor, batch_size: int) -> tuple[float, int]:
        """Total next-token nats over ``ids`` (each token after the first counted once)."""
        block = min(self.config.block_size, self.context_length())
        starts = list(range(0, len(ids) - 1, block))
        nats, count = 0.0, 0
        with self.inference():  # also when called directly, not through genkit's engine
            for i in range(0, len(starts), batch_size):
                x, y = _windows(ids, starts[i: i + batch_size], block)  # (b, T), (b, T)
                logits = self.model(input_ids=x.to(self.device)).logits  # (b, T, V)
                y = y.to(self.device)
                nats += float(F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(),
                                              ignore_index=-100, reduction="sum"))
                count += int((y != -100).sum())
        return nats, count

    # ------------------------------------------------------------------ sampling
    def generate(self, seeds: list[int], conditions: list[dict[str, Any]], options: Any,
                 stream: Callable[[str], None] | None = None) -> list[str]:
        """Continue each prompt; row i draws only from ``seeds[i]``. ``stream`` gets sample
        0's text piece by piece as it is produced."""
        self._ensure_model()
        if self.tokenizer is None:
            raise SamplingError("this gpt model is untrained (no tokenizer); train it or "
                                "load a checkpoint first")
        prompts = [str(c.get("prompt") or "") for c in conditions]
        ids = [self._prompt_ids(p) for p in prompts]
        settings = DecodeSettings(
            max_new_tokens=options.max_new_tokens, context=self.context_length(),
            eos_token_id=self.tokenizer.eos_token_id if options.stop_at_eos else None,
            temperature=options.temperature, top_k=options.top_k, top_p=options.top_p,
            repetition_penalty=options.repetition_penalty)
        streamer = _TextStream(self.tokenizer, stream) if stream is not None else None
        if streamer is not None and options.include_prompt:
            stream(prompts[0])
        with self.inference(), lora_scaled(self.model, options.lora_scale):
            new = sample_tokens(self.model, ids, sample_generators(seeds, self.device), settings,
                                on_token=streamer.push if streamer else None)
        if streamer is not None:
            streamer.flush()
        texts = [self.tokenizer.decode(row, skip_special_tokens=True) for row in new]
        return [p + t for p, t in zip(prompts, texts)] if options.include_prompt else texts

    def options(self, values: Any) -> Any:
        """Validated sampling options; ``lora_scale`` only for a LoRA model (said before
        any sample is drawn)."""
        options = super().options(values)
        if options.lora_scale != 1.0 and not self.config.lora_rank:
            raise ConfigError("lora_scale works only on a LoRA checkpoint; drop --lora-scale")
        return options

    def _prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of a prompt; an empty prompt starts from the BOS (or EOS) token."""
        ids = self.tokenizer(prompt)["input_ids"] if prompt else []
        if not ids:
            start = self.tokenizer.bos_token_id
            start = self.tokenizer.eos_token_id if start is None else start
            if start is None:
                raise SamplingError("this model's tokenizer has no BOS/EOS token; give a prompt")
            ids = [start]
        context = self.context_length()
        if len(ids) > context:
            raise SamplingError(f"the prompt is {len(ids)} tokens, longer than the model's "
                                f"context of {context}; shorten it")
        return ids

    # ------------------------------------------------------------------ weights
    def save_weights(self, directory: Path) -> None:
        """A transformers model directory: ``save_pretrained`` of the model (safetensors)
        and of the tokenizer, so the folder opens without genkit; with LoRA, the adapter
        alone (``adapter_model.safetensors`` + ``adapter_config.json``)."""
        self._ensure_model()
        if self.tokenizer is None:
            raise CheckpointError("cannot save a gpt model that has no tokenizer yet; "
                                  "train it first")
        if self.config.lora_rank:
            save_adapter(self.model, Path(directory), self.config.base)
        else:
            with quiet_progress():
                self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)

    def load_weights(self, directory: Path) -> None:
        """Open a directory written by :meth:`save_weights` (safetensors only, offline);
        a LoRA checkpoint opens its base first (a directory or the Hub cache)."""
        if self.config.lora_rank:
            self.model, self.tokenizer = open_adapter(Path(directory), self.config, self.device)
        else:
            self.model, self.tokenizer = open_pretrained(Path(directory), "checkpoint",
                                                         self.device)
        self._record_shape()

    def merge_lora(self) -> GPTGenerator:
        """A plain (``lora_rank=0``) generator with the adapter merged into the base
        weights: ``genkit export --merge``. This generator's model is merged in place."""
        if not self.config.lora_rank:
            raise CheckpointError("this gpt model has no LoRA adapter; there is nothing to "
                                  "merge (its checkpoint already opens with AutoModelForCausalLM)")
        self._ensure_model()
        merged = type(self).named(self.name, dataclasses.replace(self.config, lora_rank=0))
        merged.model, merged.tokenizer = self.model.merge_and_unload(), self.tokenizer
        merged.training_summary = dict(self.training_summary)
        return merged.to(self.device)

    @classmethod
    def from_foreign_dir(cls, path: Path, device: torch.device) -> GPTGenerator:
        """Sample a directory written without genkit: a transformers causal LM, or a peft
        LoRA adapter (its base named in ``adapter_config.json``)."""
        generator = cls.named("gpt", **foreign_settings(Path(path)))
        generator.to(device)
        if generator.config.lora_rank:
            generator.load_weights(Path(path))
        generator._ensure_model()
        return generator

    @classmethod
    def model_card_details(cls, manifest: dict[str, Any], where: str) -> dict[str, Any]:
        """Card metadata and the plain-library loading recipe (see genkit.store.modelcard)."""
        return card_details(manifest, where)

    def num_parameters(self) -> int:
        self._ensure_model()
        return super().num_parameters()


# ---------------------------------------------------------------------- helpers
def _windows(ids: torch.Tensor, starts: list[int],
             block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of windows at ``starts``; a short last window is
    padded (targets -100, ignored): (b, T), (b, T)."""
    x = torch.zeros(len(starts), block, dtype=torch.long)
    y = torch.full((len(starts), block), -100, dtype=torch.long)
    for row, s in enumerate(starts):
        chunk = ids[s: s + block + 1]
        x[row, : len(chunk) - 1] = chunk[:-1]
        y[row, : len(chunk) - 1] = chunk[1:]
    return x, y


class _TextStream:
    """Turns sample 0's new token ids into text pieces for ``stream``; holds back a piece
    that ends inside a multi-byte character until it is complete."""

    def __init__(self, tokenizer: Any, stream: Callable[[str], None]) -> None:
        self.tokenizer, self.stream = tokenizer, stream
        self.ids: list[int] = []
        self.sent = 0  # characters of decode(ids) already streamed

    def push(self, token: int) -> None:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not text.endswith("\ufffd") and len(text) > self.sent:
            self.stream(text[self.sent:])
            self.sent = len(text)

    def flush(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > self.sent:
            self.stream(text[self.sent:])
            self.sent = len(text)
