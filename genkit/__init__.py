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
    FolderBusyError,
    GenkitError,
    PluginClashError,
    PluginError,
    SamplingError,
    TrainingError,
)
from genkit.version import __version__

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "FolderBusyError",
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

_API = ("Generator", "create", "evaluate", "generators", "load", "load_data")

if TYPE_CHECKING:
    from genkit.api import Generator, create, evaluate, generators, load, load_data
    from genkit.discovery.hookspecs import hookimpl


def __getattr__(name: str) -> Any:
    if name in _API:
        from genkit import api  # lazy: the API imports torch; `import genkit` must not

        return getattr(api, name)
    if name == "hookimpl":
        from genkit.discovery.hookspecs import hookimpl  # lazy: kept off `import genkit`

        return hookimpl
    raise AttributeError(f"module 'genkit' has no attribute {name!r}")
