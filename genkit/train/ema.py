"""The EMA of a module's weights: diffusers' ``EMAModel``, as the engine configures it."""

from __future__ import annotations

from typing import Any

import torch

from genkit.train.args import TrainArgs


def make_ema(module: torch.nn.Module, args: TrainArgs) -> Any:
    """diffusers' EMAModel over ``module``'s parameters (warm-up: decay grows with steps)."""
    from diffusers.training_utils import EMAModel

    return EMAModel(module.parameters(), decay=args.ema_decay, use_ema_warmup=args.ema_warmup,
                    inv_gamma=1.0, power=2 / 3, foreach=True)
