"""Everything a genkit plugin needs, and the only genkit module plugins import.

Everything here is covered by genkit's stability promise: names are only added within a
major version, never removed or changed in meaning. Importing this module is light (no
torch): the names that need torch load on first use.

What a plugin finds here:

- the contract: :class:`Generator` (subclass it), :class:`NoOptions`, :data:`hookimpl`,
  :class:`StepContext` (what ``training_step`` gets), :class:`TrainArgs`;
- configuration: :func:`build_config`, :func:`check` (``__post_init__`` range checks);
- errors: :class:`ConfigError`, :class:`DataError`, :class:`CheckpointError`, ...;
- data: :class:`ImageData`, :class:`TextData`, :class:`TensorDictDataset`,
  :func:`image_dataset`, :func:`images_to_tensor`, :func:`load_data`;
- per-sample randomness: :func:`sample_generators`, :func:`sample_labels`,
  :func:`check_label`, :func:`sample_seed`;
- images: :func:`tensor_to_images`, :func:`pil_to_tensor`, :func:`make_grid`,
  :func:`strip`, :func:`save_png`, :func:`read_images` (files, folders or PIL images,
  as ``genkit edit`` reads them), :func:`atomic_write_bytes`;
- loading a checkpoint from a plugin's own commands: :func:`load`;
- weights: :class:`HubModules` (``save_weights``/``load_weights`` for modules that are
  ``huggingface_hub.PyTorchModelHubMixin`` s) and :func:`hub_mixin_options` (their
  tags and model card), :func:`resolve_device`;
- pretrained models (:mod:`genkit.hub`): :func:`resolve_model_path` (a directory or a Hub
  id ``ORG/NAME[@REV]`` -> a local folder, safetensors only, no remote code),
  :func:`hub_id_of`, :func:`check_no_remote_code`, :func:`remote_code_reason`,
  :class:`HubError`; LoRA through peft:
  :func:`check_lora_settings`, :func:`lora_config`, :func:`train_only_lora`,
  :func:`lora_scaled`, :func:`has_lora`, :func:`trainable_fraction`; :func:`quiet_progress`
  (no transformers/diffusers progress bars while a model opens or saves).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genkit.compiling import compile_module
from genkit.config import build_config, check
from genkit.contract import NoOptions
from genkit.data.types import ImageData, TextData
from genkit.devices import resolve_device
from genkit.discovery.hookspecs import hookimpl
from genkit.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    GenkitError,
    SamplingError,
    TrainingError,
)
from genkit.hubmodules import HubModules, hub_mixin_options
from genkit.seeding import check_label, sample_generators, sample_labels, sample_seed

if TYPE_CHECKING:
    from genkit.api import Generator, load
    from genkit.data.datasets import (
        TensorDictDataset,
        image_dataset,
        images_to_tensor,
        make_train_dataset,
    )
    from genkit.data.lazy import materialise
    from genkit.data.loading import load_data
    from genkit.fs import atomic_write_bytes
    from genkit.hub import (
        HubError,
        check_lora_settings,
        check_no_remote_code,
        has_lora,
        hub_id_of,
        lora_config,
        lora_scaled,
        quiet_progress,
        remote_code_reason,
        resolve_model_path,
        train_only_lora,
        trainable_fraction,
    )
    from genkit.imaging import make_grid, pil_to_tensor, save_png, strip, tensor_to_images
    from genkit.sample.edit_inputs import read_images
    from genkit.train.args import TrainArgs
    from genkit.train.context import StepContext

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Generator",
    "GenkitError",
    "HubError",
    "HubModules",
    "ImageData",
    "NoOptions",
    "SamplingError",
    "StepContext",
    "TensorDictDataset",
    "TextData",
    "TrainArgs",
    "TrainingError",
    "atomic_write_bytes",
    "build_config",
    "check",
    "check_label",
    "check_lora_settings",
    "check_no_remote_code",
    "compile_module",
    "has_lora",
    "hookimpl",
    "hub_id_of",
    "hub_mixin_options",
    "image_dataset",
    "images_to_tensor",
    "load_data",
    "load",
    "lora_config",
    "lora_scaled",
    "make_grid",
    "make_train_dataset",
    "materialise",
    "pil_to_tensor",
    "quiet_progress",
    "read_images",
    "remote_code_reason",
    "resolve_device",
    "resolve_model_path",
    "sample_generators",
    "sample_labels",
    "sample_seed",
    "save_png",
    "strip",
    "tensor_to_images",
    "train_only_lora",
    "trainable_fraction",
]

#: names whose modules are heavy (torch, or the Hub and image code plugins need only when
#: they run), by the module that holds them: imported on first use, so discovering
#: plugins (which import this module) stays light
_LAZY = {
    "load_data": "genkit.data.loading",
    "atomic_write_bytes": "genkit.fs",
    "HubError": "genkit.hub",
    "check_lora_settings": "genkit.hub",
    "check_no_remote_code": "genkit.hub",
    "has_lora": "genkit.hub",
    "hub_id_of": "genkit.hub",
    "lora_config": "genkit.hub",
    "lora_scaled": "genkit.hub",
    "quiet_progress": "genkit.hub",
    "remote_code_reason": "genkit.hub",
    "resolve_model_path": "genkit.hub",
    "train_only_lora": "genkit.hub",
    "trainable_fraction": "genkit.hub",
    "make_grid": "genkit.imaging",
    "pil_to_tensor": "genkit.imaging",
    "save_png": "genkit.imaging",
    "strip": "genkit.imaging",
    "tensor_to_images": "genkit.imaging",

    "Generator": "genkit.api",
    "load": "genkit.api",
    "read_images": "genkit.sample.edit_inputs",
    "TensorDictDataset": "genkit.data.datasets",
    "image_dataset": "genkit.data.datasets",
    "images_to_tensor": "genkit.data.datasets",
    "make_train_dataset": "genkit.data.datasets",
    "materialise": "genkit.data.lazy",
    "TrainArgs": "genkit.train.args",
    "StepContext": "genkit.train.context",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # lazy: plugin modules import this at discovery

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'genkit.plugin' has no attribute {name!r}")
