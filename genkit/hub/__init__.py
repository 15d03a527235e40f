"""Pretrained models: Hugging Face Hub ids resolved through the cache, and LoRA adapters.

A base-layer package (it imports only ``genkit.errors`` and ``genkit.config``), so the
store, the CLI and, through ``genkit.plugin``, every plugin resolve ids and build
adapters the same way:

- :mod:`genkit.hub.resolve`: ``ORG/NAME[@REVISION]`` -> a local snapshot folder
  (:func:`resolve_model_path`), safetensors only, never remote code.
- :mod:`genkit.hub.lora`: peft LoRA settings, target choice, scaling.
- :mod:`genkit.hub.quiet`: no library progress bars while a model opens or saves.

Light to import: ``huggingface_hub`` and ``peft`` load inside the functions.
"""

from __future__ import annotations

from genkit.hub.lora import (
    adaptable_layers,
    check_lora_settings,
    choose_targets,
    has_lora,
    lora_config,
    lora_scaled,
    train_only_lora,
    trainable_fraction,
)
from genkit.hub.quiet import quiet_progress
from genkit.hub.resolve import (
    HubError,
    ModelId,
    check_no_remote_code,
    hub_cache,
    hub_id_of,
    hub_offline,
    parse_model_id,
    remote_code_reason,
    resolve_model_path,
)

__all__ = [
    "HubError",
    "ModelId",
    "adaptable_layers",
    "check_lora_settings",
    "check_no_remote_code",
    "choose_targets",
    "has_lora",
    "hub_cache",
    "hub_id_of",
    "hub_offline",
    "lora_config",
    "lora_scaled",
    "parse_model_id",
    "quiet_progress",
    "remote_code_reason",
    "resolve_model_path",
    "train_only_lora",
    "trainable_fraction",
]
