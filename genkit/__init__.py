"""genkit: a plugin-based toolkit for generative models on the Hugging Face stack.

    >>> import genkit
    >>> g = genkit.create("diffusion", image_size=16)
    >>> report = g.train("digits", steps=2000, out="runs/d")
    >>> g = genkit.load("runs/d")
    >>> images = g.sample(16, seed=0)

Importing genkit is light: torch and the model libraries load when a generator is
created or loaded, never to list plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genkit.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    GenkitError,
    PluginClashError,
    PluginError,
    SamplingError,
    TrainingError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "Generator",
    "GenkitError",
    "PluginClashError",
    "PluginError",
    "SamplingError",
    "TrainingError",
    "__version__",
    "create",
    "evaluate",
    "generators",
    "hookimpl",
    "load",
    "load_data",
]

if TYPE_CHECKING:
    from pathlib import Path

    from genkit.generator import Generator
    from genkit.registry import GeneratorSpec


def __getattr__(name: str) -> Any:
    if name == "Generator":
        from genkit.generator import Generator

        return Generator
    if name == "hookimpl":
        from genkit.plugin import hookimpl

        return hookimpl
    raise AttributeError(f"module 'genkit' has no attribute {name!r}")


def generators() -> list[GeneratorSpec]:
    """Every installed generator, as specs (nothing is imported to list them)."""
    from genkit.registry import get_registry

    return get_registry().generator_specs()


def create(name: str, /, *, seed: int = 0, **config: Any) -> Generator:
    """A new, untrained generator of family ``name`` with ``config`` (validated).

    The initial weights are a function of ``seed``: the same call builds the same model.
    """
    from genkit.registry import get_registry

    spec = get_registry().generator(name)
    cls = spec.load_class()
    return cls.named(name, init_seed=seed, **config)


def load(path: str | Path, device: str = "auto") -> Generator:
    """Load a checkpoint directory (the plugin is read from its ``genkit.json``)."""
    from genkit.checkpoint import load_checkpoint

    return load_checkpoint(path, device=device)


def load_data(source: str, split: str = "train", **options: Any) -> Any:
    """Load a data source (``digits``, ``folder:PATH``, ``text:PATH``, ``pydoc``, ``hf:PATH``)."""
    from genkit.data import load_data as _load

    return _load(source, split=split, **options)


def evaluate(path: str | Path, data: str | None = None, n: int = 500, **kwargs: Any) -> Any:
    """Sample-quality figures of a checkpoint against held-out data (see genkit.evaluation)."""
    from genkit.evaluation import evaluate as _evaluate

    return _evaluate(path, data=data, n=n, **kwargs)
