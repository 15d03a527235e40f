"""``torch.compile`` for genkit: when training compiles by default, and a cache that
outlives the run.

torch's compiled kernels are cached on disk (inductor's FX-graph and autotuning caches,
on by default), but in ``/tmp/torchinductor_$USER``, which many machines clear: genkit
points them at its own cache folder so the second run of a model shape skips most of the
compile (on the CPU a tiny VAE's 100-step compiled run took 80 s cold and 24 s in a new
process with the cache; 13 s eager, where compiling does not pay).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genkit.paths import cache_dir

if TYPE_CHECKING:
    import torch

#: training compiles by default only on CUDA, and only for runs long enough to repay the
#: compile (tens of seconds): 500 steps, or a time budget of 5 minutes. On the CPU a small
#: model's step is mostly the library's own kernels, and compiling rarely pays
AUTO_COMPILE_MIN_STEPS = 500
AUTO_COMPILE_MIN_SECONDS = 300.0
#: the environment variable torch's inductor reads for its cache folder
INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept: ``$TORCHINDUCTOR_CACHE_DIR`` when the user set it,
    else ``<genkit cache>/inductor``. Sets the variable so torch (and the processes it
    starts for parallel compiles) use that folder."""
    folder = os.environ.get(INDUCTOR_CACHE_ENV) or str(cache_dir() / "inductor")
    os.environ[INDUCTOR_CACHE_ENV] = folder
    return Path(folder)


def should_compile(requested: bool | None, device: torch.device, steps: int,
                   budget_seconds: float | None = None) -> bool:
    """Whether training compiles its models: as ``requested``, else (``None``, the default)
    on CUDA for runs that are long enough: a time budget of at least
    :data:`AUTO_COMPILE_MIN_SECONDS`, or without one, :data:`AUTO_COMPILE_MIN_STEPS` steps."""
    if requested is not None:
        return requested
    if device.type != "cuda":
        return False
    if budget_seconds is not None:
        return budget_seconds >= AUTO_COMPILE_MIN_SECONDS
    return steps >= AUTO_COMPILE_MIN_STEPS


def compile_module(module: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """``torch.compile(module, **options)`` with the kernels cached in genkit's folder."""
    import torch

    compile_cache_dir()
    return torch.compile(module, **options)
