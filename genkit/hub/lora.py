"""LoRA adapters (through ``peft``) for the families that fine-tune pretrained models.

Why in the core: gpt and diffusion both put low-rank adapters on a pretrained network
and owe users the same choices and the same errors: the config checks, which modules
are adapted when the user names none (each family passes its architectures' defaults),
one line naming the model's adaptable layers when none match, only the adapter
trainable, and the adapter's strength scaled at sampling time (``lora_scale``).

``peft`` is imported inside the functions: this module is imported while listing plugins.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from genkit.config import check
from genkit.errors import ConfigError

#: module types LoRA can adapt (by class name, so torch is not imported here)
_ADAPTABLE = ("Linear", "Conv1D", "Conv2d", "LoRACompatibleLinear", "LoRACompatibleConv")


def check_lora_settings(rank: int, alpha: float | None, dropout: float, base: str | None,
                        family: str) -> None:
    """``__post_init__`` checks shared by every family's LoRA fields."""
    check(rank >= 0, f"lora_rank must be >= 0 (0: full fine-tuning), got {rank}")
    check(rank == 0 or base is not None,
          f"lora_rank needs base=DIR_OR_ID: LoRA adapts a pretrained {family} model "
          "(or drop lora_rank to train from scratch)")
    check(alpha is None or alpha > 0, f"lora_alpha must be > 0 (None: = lora_rank), got {alpha}")
    check(0.0 <= dropout < 1.0, f"lora_dropout must be in [0, 1), got {dropout}")


def _matches(names: set[str], target: str) -> bool:
    """peft's rule: a target names a module exactly or as the end of its dotted name."""
    return any(n == target or n.endswith("." + target) for n in names)


def adaptable_layers(model: Any, limit: int = 8) -> list[str]:
    """The distinct short names of the layers LoRA could adapt (for messages)."""
    seen: list[str] = []
    for name, module in model.named_modules():
        if type(module).__name__ in _ADAPTABLE and name:
            short = name.rsplit(".", 1)[-1]
            if short.isdigit() and "." in name:  # to_out.0: keep the parent's name
                short = ".".join(name.rsplit(".", 2)[-2:])
            if short not in seen:
                seen.append(short)
    return seen[:limit]


def choose_targets(model: Any, targets: Sequence[str] | None,
                   defaults: Sequence[Sequence[str]], what: str) -> list[str]:
    """The module names to adapt: the user's (each must match a module), else the first
    group of ``defaults`` of which the model has any module.

    Raises:
        ConfigError: one line naming the model's adaptable layers when nothing matches.
    """
    names = {name for name, _ in model.named_modules()}
    layers = ", ".join(adaptable_layers(model)) or "none"
    if targets:
        missing = [t for t in targets if not _matches(names, t)]
        if missing:
            raise ConfigError(f"lora_targets {', '.join(missing)} match no module of {what}; "
                              f"its adaptable layers include {layers}")
        return list(targets)
    for group in defaults:
        found = [t for t in group if _matches(names, t)]
        if found:
            return found
    tried = ", ".join(t for group in defaults for t in group)
    raise ConfigError(f"{what} has none of the modules LoRA adapts by default ({tried}); name "
                      f"its layers with --set lora_targets=NAME,NAME (it has {layers})")


def lora_config(model: Any, rank: int, alpha: float | None, dropout: float,
                targets: Sequence[str] | None, defaults: Sequence[Sequence[str]], what: str,
                **extra: Any) -> Any:
    """A ``peft.LoraConfig`` for ``model`` (targets chosen by :func:`choose_targets`;
    ``fan_in_fan_out`` set for GPT-2's ``Conv1D`` layers)."""
    from peft import LoraConfig

    chosen = choose_targets(model, targets, defaults, what)
    conv1d = any(type(m).__name__ == "Conv1D" and _matches({n}, t)
                 for n, m in model.named_modules() for t in chosen)
    return LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank,
                      lora_dropout=dropout, target_modules=chosen,
                      fan_in_fan_out=conv1d, **extra)


def train_only_lora(model: Any) -> None:
    """Freeze every parameter but the LoRA adapter's (``lora_`` in the name)."""
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)


def has_lora(model: Any) -> bool:
    """Whether ``model`` holds LoRA layers."""
    return any("lora_" in name for name, _ in model.named_parameters())


@contextlib.contextmanager
def lora_scaled(model: Any, scale: float) -> Iterator[None]:
    """Inside the block the LoRA adapters of ``model`` act at ``scale`` times their
    trained strength (0: the base model; 1: as trained). Restored afterwards."""
    if scale == 1.0:
        yield
        return
    if model is None or not has_lora(model):
        raise ConfigError("lora_scale works only on a LoRA checkpoint; drop --lora-scale")
    from peft.helpers import rescale_adapter_scale

    with rescale_adapter_scale(model, float(scale)):
        yield


def trainable_fraction(model: Any) -> tuple[int, int]:
    """(trainable parameters, all parameters) of ``model``."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
