"""Fine-tuning the UNet of a pretrained diffusers pipeline (``--set base=DIR_OR_ID``).

:class:`PretrainedUNet` is a mixin of ``DiffusionGenerator``: with ``base`` set, the UNet
and the noise schedule come from a pipeline (a directory or a Hub id, opened offline,
safetensors only, never remote code) instead of the config, and the checkpoint is saved
in the form the plain libraries read:

============================  ==========================  =================================
base UNet                      full (``lora_rank=0``)      LoRA (``lora_rank=R``)
============================  ==========================  =================================
``UNet2DModel`` (DDPM-like)    a ``DDPMPipeline`` dir      ``adapter_config.json`` +
                                                           ``adapter_model.safetensors``
                                                           (``PeftModel.from_pretrained``)
``UNet2DConditionModel``       the whole pipeline          ``pytorch_lora_weights.safetensors``
(text-to-image)                (``save_pretrained``)       (``pipe.load_lora_weights(DIR)``)
============================  ==========================  =================================

What the base fixes (image size, channels, UNet widths, prediction type, timesteps) is
written into the config, so ``genkit.json`` tells the truth; the text encoder and VAE of
a text-to-image base stay frozen (``genkit_diffusion.text2image`` trains it). A LoRA run
trains the adapter only, and keeps no EMA (the engine would shadow the whole frozen UNet).
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DConditionModel, UNet2DModel

from genkit.plugin import (
    CheckpointError,
    ConfigError,
    GenkitError,
    hub_id_of,
    lora_config,
    quiet_progress,
    resolve_model_path,
    train_only_lora,
)

#: modules LoRA adapts when the user names none: the attention projections (diffusers'
#: own LoRA recipe for Stable Diffusion)
UNET_TARGETS = (("to_q", "to_k", "to_v", "to_out.0"),)
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' text-to-image LoRA file
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # a plain peft adapter (UNet2DModel)


def open_base(spec: str | Path, what: str = "base model") -> Any:
    """The diffusers pipeline ``spec`` names (a directory, a run directory or a Hub id),
    checked to have a UNet genkit can fine-tune."""
    from genkit_diffusion.pipelines import open_pipeline

    path = resolve_model_path(spec, what)
    if not path.exists():
        raise ConfigError(f"{what} {spec} does not exist; give a diffusers pipeline directory "
                          "or a Hub id ORG/NAME")
    if not (path / "model_index.json").is_file() and (path / "model" / "model_index.json").is_file():
        path = path / "model"  # a genkit run directory: its final model
    if not (path / "model_index.json").is_file():
        hint = (" (it is a LoRA adapter: merge it first with genkit export --merge)"
                if (path / ADAPTER_WEIGHTS).is_file() or (path / LORA_WEIGHTS).is_file() else "")
        raise ConfigError(f"{what} {spec} is not a diffusers pipeline (no model_index.json){hint}")
    pipe = open_pipeline(path)
    pipe.set_progress_bar_config(disable=True)
    unet = getattr(pipe, "unet", None)
    name = type(pipe).__name__
    if isinstance(unet, UNet2DConditionModel):
        if not all(getattr(pipe, part, None) is not None for part in ("vae", "text_encoder", "tokenizer")) \
                or getattr(pipe, "text_encoder_2", None) is not None:
            raise ConfigError(f"{what} {spec} is a {name}; genkit fine-tunes text-to-image "
                              "pipelines with one text encoder and a VAE (Stable Diffusion 1/2 style)")
    elif not isinstance(unet, UNet2DModel) or any(getattr(pipe, p, None) is not None
                                                  for p in ("vae", "vqvae")):
        raise ConfigError(f"{what} {spec} is a {name}; genkit fine-tunes the UNet of unconditional "
                          "(UNet2DModel, pixel space) and text-to-image (UNet2DConditionModel) pipelines")
    return pipe


class PretrainedUNet:
    """Mixin of ``DiffusionGenerator`` for ``base=`` models (see the module docstring)."""

    config: Any
    unet: Any
    noise_scheduler: Any
    pipe: Any  # the text-to-image pipeline (vae, text encoder, tokenizer); None otherwise
    name: str
    device: torch.device
    training_summary: dict[str, Any]
    _init_seed: int

    @property
    def derived_config_keys(self) -> tuple[str, ...]:
        """With ``base``, the fields the base pipeline fixes (a resume may differ in them)."""
        if self.config.base is None:
            return ()
        return ("image_size", "channels", "block_out_channels", "layers_per_block",
                "norm_num_groups", "num_classes", "prediction_type", "num_train_timesteps")

    def to(self, device: Any) -> Any:
        """Move the UNet (and EMA), and a text-to-image base's frozen VAE and text encoder."""
        super().to(device)  # type: ignore[misc]
        if self.pipe is not None:
            self.pipe.to(self.device)
        return self

    def num_parameters(self) -> int:
        self._ensure_base()
        return super().num_parameters()  # type: ignore[misc]

    def options(self, values: Any) -> Any:
        """Validated sampling options; ``lora_scale`` only for a LoRA model (said before
        any sample is drawn)."""
        options = super().options(values)  # type: ignore[misc]
        if options.lora_scale != 1.0 and not self.config.lora_rank:
            raise ConfigError("lora_scale works only on a LoRA checkpoint; drop --lora-scale")
        return options

    def _ensure_base(self) -> None:
        """Open the base pipeline (and put a fresh LoRA adapter on its UNet) once."""
        if self.unet is None and self.config.base is not None:
            with torch.inference_mode(False):  # first use may be inside inference(): the
                pipe = open_base(self.config.base)  # weights must stay trainable tensors
                self._adopt(pipe.unet, pipe.scheduler.config, pipe if _is_text(pipe) else None,
                            fresh_lora=True)
                self.to(self.device)

    def _adopt(self, unet: Any, scheduler_config: Any, pipe: Any, fresh_lora: bool) -> None:
        """Take ``unet`` (and a text-to-image ``pipe``) as this model; record what they fix."""
        c = self.config
        base_unet = unet.get_base_model() if hasattr(unet, "get_base_model") else unet
        prediction = scheduler_config.get("prediction_type", "epsilon")
        if prediction not in ("epsilon", "v_prediction"):
            raise ConfigError(f"base model {c.base} predicts {prediction!r}; genkit fine-tunes "
                              "epsilon and v_prediction models")
        size = base_unet.config.sample_size
        if not isinstance(size, int):
            raise ConfigError(f"base model {c.base} has non-square samples ({size}); genkit "
                              "fine-tunes square images")
        if pipe is not None:
            c.image_size, c.channels = size * pipe.vae_scale_factor, 3
            for part in (pipe.vae, pipe.text_encoder):
                part.requires_grad_(False).eval()
        else:
            if base_unet.config.in_channels not in (1, 3):
                raise ConfigError(f"base model {c.base} has {base_unet.config.in_channels} image "
                                  "channels; genkit fine-tunes grey (1) or RGB (3) pixel models")
            c.image_size, c.channels = size, base_unet.config.in_channels
            embeds = base_unet.config.num_class_embeds
            c.num_classes = int(embeds) - 1 if embeds else 0  # genkit's null label is the last
        c.block_out_channels = tuple(base_unet.config.block_out_channels)
        for field in ("layers_per_block", "norm_num_groups"):
            if isinstance(base_unet.config.get(field), int):
                setattr(c, field, base_unet.config[field])
        c.prediction_type = prediction
        c.num_train_timesteps = int(scheduler_config.get("num_train_timesteps", 1000))
        self.noise_scheduler = DDPMScheduler.from_config(scheduler_config)
        self.pipe = pipe
        if c.lora_rank and fresh_lora:
            unet = self._add_lora(unet)
        self.unet = unet
        if pipe is not None:
            pipe.unet = unet

    def _add_lora(self, unet: Any) -> Any:
        """A fresh LoRA adapter on ``unet`` (seeded); only the adapter trains."""
        c = self.config
        peft_config = lora_config(unet, c.lora_rank, c.lora_alpha, c.lora_dropout,
                                  c.lora_targets, UNET_TARGETS,
                                  f"the UNet of base model {c.base} ({type(unet).__name__})",
                                  init_lora_weights="gaussian")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._init_seed)
            if self.pipe is not None:  # diffusers' own adapter API: load_lora_weights reads it
                unet.add_adapter(peft_config)
                train_only_lora(unet)
                return unet
            from peft import get_peft_model

            return get_peft_model(unet, peft_config)

    # ------------------------------------------------------------------ files
    def _save_base_weights(self, directory: Path) -> None:
        """The adapter alone (LoRA) or the whole fine-tuned pipeline, in diffusers' forms."""
        self._ensure_base()
        with quiet_progress(), warnings.catch_warnings():
            # peft looks for a transformers config.json in a UNet's base to see whether
            # the vocabulary changed; a UNet has none, and no vocabulary
            warnings.filterwarnings("ignore", message="Could not find a config file")
            self._write_weights(directory)

    def _write_weights(self, directory: Path) -> None:
        if self.config.lora_rank and self.pipe is not None:
            from diffusers.utils import convert_state_dict_to_diffusers
            from peft import get_peft_model_state_dict

            layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))
            save = type(self.pipe).save_lora_weights
            extra = {}  # the LoraConfig (alpha, targets), where this diffusers records it
            if "unet_lora_adapter_metadata" in inspect.signature(save).parameters:
                extra["unet_lora_adapter_metadata"] = self.unet.peft_config["default"].to_dict()
            save(str(directory), unet_lora_layers=layers, **extra)
        elif self.config.lora_rank:
            peft_config = self.unet.peft_config["default"]
            model_id = hub_id_of(self.config.base)
            peft_config.base_model_name_or_path = (
                f"{model_id.repo}" if model_id else str(Path(self.config.base).expanduser().resolve()))
            peft_config.revision = model_id.revision if model_id else None
            self.unet.save_pretrained(str(directory), safe_serialization=True)
        elif self.pipe is not None:
            self.pipe.save_pretrained(str(directory), safe_serialization=True)
        else:
            DDPMPipeline(unet=self.unet, scheduler=self.noise_scheduler).save_pretrained(
                str(directory), safe_serialization=True)

    def _load_base_weights(self, directory: Path) -> None:
        """A full checkpoint is a pipeline of its own; an adapter goes onto its base."""
        directory = Path(directory)
        if not self.config.lora_rank:
            pipe = open_base(directory, "checkpoint")
            self._adopt(pipe.unet, pipe.scheduler.config, pipe if _is_text(pipe) else None,
                        fresh_lora=False)
            return
        try:
            pipe = open_base(self.config.base)
        except GenkitError as exc:
            raise CheckpointError(f"the LoRA adapter {directory} needs its base model: {exc}") from None
        text = _is_text(pipe)
        wanted = LORA_WEIGHTS if text else ADAPTER_WEIGHTS
        if not (directory / wanted).is_file():
            raise CheckpointError(f"{directory} has no {wanted}, the adapter a "
                                  f"{'text-to-image' if text else 'UNet2DModel'} base takes; "
                                  f"is {self.config.base} still the base it was trained on?")
        self._adopt(pipe.unet, pipe.scheduler.config, pipe if text else None, fresh_lora=False)
        if text:
            _quiet_diffusers()
            with quiet_progress():
                pipe.load_lora_weights(str(directory), adapter_name="default")
            self.unet = pipe.unet
            train_only_lora(self.unet)
        else:
            from peft import PeftModel

            self.unet = PeftModel.from_pretrained(self.unet, str(directory), is_trainable=True)

    def merge_lora(self) -> Any:
        """A plain (``lora_rank=0``) generator with the adapter merged into the UNet's
        weights: ``genkit export --merge``. This generator's UNet is merged in place."""
        if not self.config.lora_rank:
            raise CheckpointError("this diffusion model has no LoRA adapter; there is nothing to "
                                  "merge (its checkpoint already opens with plain diffusers)")
        self._ensure_base()
        merged = type(self).named(self.name, dataclasses.replace(self.config, lora_rank=0))
        if self.pipe is not None:
            self.pipe.fuse_lora()
            self.pipe.unload_lora_weights()
            merged._adopt(self.pipe.unet, self.noise_scheduler.config, self.pipe, fresh_lora=False)
        else:
            merged._adopt(self.unet.merge_and_unload(), self.noise_scheduler.config, None,
                          fresh_lora=False)
        merged.training_summary = dict(self.training_summary)
        return merged.to(self.device)


def _is_text(pipe: Any) -> bool:
    return isinstance(getattr(pipe, "unet", None), UNet2DConditionModel)


def _quiet_diffusers() -> None:
    """No "No LoRA keys associated to CLIPTextModel" warnings: genkit's adapters are the
    UNet's alone, by design."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()


def card_details(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    """pipeline tag, tags and the plain-library loading recipe for a diffusion model card,
    by what the checkpoint holds."""
    weights = set(manifest.get("weights") or {})
    config = manifest.get("config") or {}
    base = config.get("base") or "BASE"
    model_id = hub_id_of(base)
    base = model_id.repo if model_id else base
    text = LORA_WEIGHTS in weights or any(w.startswith("text_encoder/") for w in weights)
    tags = ["diffusers", "text-to-image" if text else "unconditional-image-generation"]
    if LORA_WEIGHTS in weights:
        tags += ["lora"]
        usage = (f"```python\nfrom diffusers import DiffusionPipeline\n\n"
                 f"pipe = DiffusionPipeline.from_pretrained(\"{base}\", use_safetensors=True)\n"
                 f"pipe.load_lora_weights(\"{where}\")\n"
                 f"image = pipe(\"a prompt\", cross_attention_kwargs={{\"scale\": 1.0}}).images[0]\n```")
    elif ADAPTER_WEIGHTS in weights:
        tags += ["peft", "lora"]
        usage = (f"diffusers has no LoRA loader for `UNet2DModel`; peft puts the adapter on the "
                 f"base pipeline's UNet:\n\n```python\nfrom diffusers import DiffusionPipeline\n"
                 f"from peft import PeftModel\n\npipe = DiffusionPipeline.from_pretrained(\"{base}\", "
                 f"use_safetensors=True)\npipe.unet = PeftModel.from_pretrained(pipe.unet, "
                 f"\"{where}\").merge_and_unload()\nimages = pipe(batch_size=4).images\n```")
    elif text:
        usage = (f"```python\nfrom diffusers import DiffusionPipeline\n\n"
                 f"pipe = DiffusionPipeline.from_pretrained(\"{where}\", use_safetensors=True)\n"
                 f"image = pipe(\"a prompt\").images[0]\n```")
    else:
        usage = (f"```python\nfrom diffusers import DDPMPipeline\n\n"
                 f"pipe = DDPMPipeline.from_pretrained(\"{where}\", use_safetensors=True)\n"
                 f"images = pipe(batch_size=4, num_inference_steps=50).images\n```\n\n"
                 "A class-conditional model loads piece by piece: `UNet2DModel.from_pretrained("
                 "DIR, subfolder=\"unet\")` with `DDIMScheduler.from_pretrained(DIR, "
                 "subfolder=\"scheduler\")`; pass `class_labels` to the UNet (the null label "
                 "is `num_class_embeds - 1`).")
    return {"pipeline_tag": tags[1], "tags": tags, "usage": usage}
