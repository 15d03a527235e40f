"""The VAE's objective, term by term, in nats per image (used by training, held-out
evaluation and editing alike)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2 * math.pi)


def reconstruction_nats(output: torch.Tensor, images: torch.Tensor, likelihood: str,
                        sigma: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``-log p(x | z)`` per image ``(B,)`` in nats; ``images`` in [-1, 1]. ``weights``
    (broadcast to the images, e.g. ``(B, 1, S, S)`` of 0/1) counts only some pixels: the
    known ones, when inpainting."""
    if likelihood == "bernoulli":
        target = (images + 1) / 2  # (B, C, S, S) in [0, 1]
        nll = F.binary_cross_entropy_with_logits(output, target, reduction="none")
    else:
        nll = 0.5 * ((images - output) / sigma) ** 2 + math.log(sigma) + 0.5 * LOG_2PI
    if weights is not None:
        nll = nll * weights
    return nll.flatten(1).sum(1)  # (B,)


def kl_nats(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` per row ``(B,)`` in nats."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def kl_weight(beta: float, warmup_steps: int, step: int) -> float:
    """beta after a linear warm-up from 0 over ``warmup_steps`` (reached at that step)."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, (step + 1) / warmup_steps)
