"""The one module a genkit plugin imports from.

Everything here is covered by genkit's stability promise: names are only added within a
major version, never removed or changed in meaning. Plugins must not import from
``genkit.cli`` or other private modules. Importing this module is light (no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from genkit.config import build_config, check
from genkit.data import ImageData, TextData, images_to_tensor
from genkit.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    GenkitError,
    SamplingError,
    TrainingError,
)
from genkit.generator import Generator, NoOptions

hookimpl = pluggy.HookimplMarker("genkit")

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Generator",
    "GenkitError",
    "ImageData",
    "NoOptions",
    "SamplingError",
    "StepContext",
    "TensorDictDataset",
    "TextData",
    "image_dataset",
    "tensor_to_images",
    "TrainArgs",
    "TrainingError",
    "build_config",
    "check",
    "hookimpl",
    "images_to_tensor",
    "sample_generators",
]

if TYPE_CHECKING:
    from genkit.datasets import TensorDictDataset, image_dataset, tensor_to_images
    from genkit.training import StepContext, TrainArgs


def __getattr__(name: str) -> Any:
    if name in ("StepContext", "TrainArgs"):
        from genkit import training

        return getattr(training, name)
    if name in ("TensorDictDataset", "image_dataset", "tensor_to_images"):
        from genkit import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module 'genkit.plugin' has no attribute {name!r}")


def sample_generators(seeds: list[int], device: Any) -> list[Any]:
    """One ``torch.Generator`` per sample seed, on ``device``: the per-sample randomness
    that makes sample i independent of the batch it is drawn in."""
    import torch

    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
