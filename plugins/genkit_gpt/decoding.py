"""The sampling loop: a causal LM, a KV cache and one random stream per batch row.

transformers' ``model.generate`` draws every row's token from the global RNG, so a sample
depends on the batch it is drawn in. This loop keeps generate's pieces (the model's own
KV cache, transformers' ``LogitsProcessorList``) but draws row i's tokens from row i's
``torch.Generator`` only: each row pre-draws one uniform number per step and picks its
token by inverse-CDF sampling, which is exact, batched and cheap.

Prompts of different lengths share a batch by left padding, an attention mask and
per-row position ids. A row whose text outgrows the model's context slides its window
(it keeps its last ``3/4`` context tokens and re-encodes them) on its own schedule, so
even long generations do not depend on the batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


@dataclass
class DecodeSettings:
    """What the loop needs besides the model and prompts."""

    max_new_tokens: int
    context: int  # the most tokens the model attends to (its position table)
    eos_token_id: int | None = None  # None: never stop early
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0


def logits_processors(settings: DecodeSettings) -> LogitsProcessorList:
    """transformers' processors in generate's order; identity settings are left out."""
    processors = LogitsProcessorList()
    if settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    if settings.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k > 0:
        processors.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1.0:
        processors.append(TopPLogitsWarper(settings.top_p))
    return processors


def sample_tokens(model: Any, prompts: list[list[int]], generators: list[torch.Generator],
                  settings: DecodeSettings,
                  on_token: Callable[[int], None] | None = None) -> list[list[int]]:
    """New token ids for each prompt (EOS excluded), row i drawn with ``generators[i]``.

    Args:
        model: a transformers causal LM (in eval mode) on the device of the generators.
        prompts: token ids per row; each non-empty and at most ``settings.context`` long.
        generators: one seeded ``torch.Generator`` per row.
        settings: length, context, EOS and the sampling options.
        on_token: called with each new token id of row 0 while it is unfinished.
    """
    device = model.device
    batch, steps = len(prompts), settings.max_new_tokens
    # one uniform per row and step, from that row's own stream: (B, N)
    uniforms = torch.stack([torch.rand(steps, generator=g, device=g.device) for g in generators])
    uniforms = uniforms.to(device)
    processors = logits_processors(settings)
    state = _RowState(prompts, steps, settings.context, device)
    logits = state.prefill(model)  # (B, V)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    out = torch.empty(batch, steps, dtype=torch.long, device=device)
    done = 0
    for t in range(steps):
        scores = processors(state.history(), logits.float())  # (B, V)
        probs = torch.softmax(scores, dim=-1)
        cdf = probs.cumsum(dim=-1)  # (B, V)
        target = (uniforms[:, t] * cdf[:, -1]).unsqueeze(1)  # (B, 1)
        token = torch.searchsorted(cdf, target, right=True).squeeze(1)  # (B,)
        token.clamp_(max=cdf.shape[-1] - 1)
        out[:, t] = token
        done = t + 1
        if settings.eos_token_id is not None:
            finished |= token == settings.eos_token_id
        if on_token is not None and not bool(finished[0]):
            on_token(int(token[0]))
        if t + 1 == steps or (settings.eos_token_id is not None and bool(finished.all())):
            break
        logits = state.step(model, token)
    return [_cut_at_eos(row, settings.eos_token_id) for row in out[:, :done].tolist()]


def _cut_at_eos(row: list[int], eos: int | None) -> list[int]:
    return row[: row.index(eos)] if eos is not None and eos in row else row


class _RowState:
    """Every row's tokens, its window into them, and the batch's shared KV cache.

    ``tokens`` holds row i's tokens left-padded so they end at column ``length``; the pad
    slots repeat the row's first token, so the repetition penalty, which reads the whole
    row, sees exactly the row's own tokens. ``start[i]`` is the first column of row i's
    window (what the cache holds for it).
    """

    def __init__(self, prompts: list[list[int]], steps: int, context: int,
                 device: torch.device) -> None:
        longest = max(len(p) for p in prompts)
        self.context = context
        self.keep = max(1, context - context // 4)
        self.length = longest
        self.tokens = torch.empty(len(prompts), longest + steps, dtype=torch.long)  # (B, P + N)
        for i, prompt in enumerate(prompts):
            pad = longest - len(prompt)
            self.tokens[i, :pad] = prompt[0]
            self.tokens[i, pad:longest] = torch.tensor(prompt)
        self.tokens = self.tokens.to(device)
        self.start = torch.tensor([longest - len(p) for p in prompts], device=device)  # (B,)
        self.cache: Any = None
        self.mask = torch.empty(0)  # (B, cache length + 1): grows by one column per step
        self.positions = torch.empty(0)  # (B,) position of the next token of each row
        self.cache_kwarg = "cache"
        self.prefill_kwargs: dict[str, Any] = {}

    def history(self) -> torch.Tensor:
        """All tokens so far, (B, L): what transformers' processors call ``input_ids``."""
        return self.tokens[:, : self.length]

    def prefill(self, model: Any) -> torch.Tensor:
        """Encode every row's window afresh (left-padded); the next-token logits, (B, V)."""
        self.cache_kwarg, self.prefill_kwargs = _forward_kwargs(model)
        lengths = self.length - self.start  # (B,) window lengths
        width = int(lengths.max())
        ids = self.tokens[:, self.length - width: self.length].clone()  # (B, W)
        cols = torch.arange(width, device=ids.device).unsqueeze(0)  # (1, W)
        mask = (cols >= (width - lengths).unsqueeze(1)).long()  # (B, W): 0 on left pads
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, W)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                    use_cache=True, **self.prefill_kwargs)
        self.cache = _cache_of(out)
        self.mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        self.positions = lengths
        return out.logits[:, -1]

    def step(self, model: Any, token: torch.Tensor) -> torch.Tensor:
        """Append ``token`` (B,) to every row; the next-token logits, (B, V)."""
        self.tokens[:, self.length] = token
        self.length += 1
        lengths = self.length - self.start  # (B,)
        full = lengths > self.context
        if bool(full.any()):  # these rows slide: keep their last `keep` tokens
            self.start = torch.where(full, self.length - self.keep, self.start)
            return self.prefill(model)
        out = model(input_ids=token.unsqueeze(1), attention_mask=self.mask,
                    position_ids=self.positions.unsqueeze(1), use_cache=True,
                    **{self.cache_kwarg: self.cache})
        self.cache = _cache_of(out)
        self.mask = torch.cat([self.mask, self.mask[:, :1].new_ones(len(token), 1)], dim=1)
        self.positions = self.positions + 1
        return out.logits[:, -1]


def _forward_kwargs(model: Any) -> tuple[str, dict[str, Any]]:
    """The name a model's forward gives its KV cache (``cache`` in transformers 5.x,
    ``past_key_values`` before), and ``logits_to_keep=1`` for the prefill where the model
    takes it (only the last position's logits are needed)."""
    params = inspect.signature(model.forward).parameters
    kwarg = "cache" if "cache" in params else "past_key_values"
    return kwarg, ({"logits_to_keep": 1} if "logits_to_keep" in params else {})


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)
