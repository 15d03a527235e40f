"""Denoising diffusion: a diffusers ``UNet2DModel`` trained with a ``DDPMScheduler`` schedule.

Training (Ho et al., 2020): noise a clean image to a random timestep t with the DDPM
forward process and regress the UNet onto the noise (``epsilon``) or the velocity
(``v_prediction``). Sampling runs the reverse process with any diffusers scheduler built
``from_config`` of the training schedule (DDPM, DDIM, DPM-Solver++, Euler), so the sampler
and its step count are chosen at sample time without retraining.

Class-conditional (``num_classes > 0``): the UNet gets a label embedding with one extra
"null" row (index ``num_classes``). Training replaces a ``label_dropout`` fraction of the
labels by the null label, so the model is also unconditional and classifier-free guidance
(``guidance_scale > 1``) works. A sample asked for without a label gets a label drawn from
its own seed: drawing y, then x given y, is a sample of the whole data distribution, and
conditional samples of a small model are sharper than null-label ones.

The checkpoint directory is also a diffusers pipeline directory (``model_index.json``,
``unet/``, ``scheduler/``)::

    from diffusers import DDPMPipeline
    pipe = DDPMPipeline.from_pretrained(DIR, use_safetensors=True)   # unconditional models
    images = pipe(batch_size=4, num_inference_steps=50).images

A class-conditional checkpoint opens with plain diffusers the same way, piece by piece::

    import torch
    from diffusers import DDIMScheduler, UNet2DModel
    unet = UNet2DModel.from_pretrained(DIR, subfolder="unet", use_safetensors=True)
    scheduler = DDIMScheduler.from_pretrained(DIR, subfolder="scheduler")
    scheduler.set_timesteps(50)
    labels = torch.tensor([0, 1, 2, 3])                     # null label = num_class_embeds - 1
    x = torch.randn(4, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    with torch.inference_mode():
        for t in scheduler.timesteps:
            eps = unet(x, t, class_labels=labels).sample
            x = scheduler.step(eps, t, x).prev_sample
    images = (x.clamp(-1, 1) + 1) / 2                        # (4, C, H, W) in [0, 1]

With ``base=DIR_OR_ID`` the UNet of a pretrained diffusers pipeline is fine-tuned instead,
whole or through a LoRA adapter (``lora_rank``): unconditional ``UNet2DModel`` pipelines
(``genkit_diffusion.pretrained``) and text-to-image ``UNet2DConditionModel`` pipelines
trained on captioned images (``genkit_diffusion.text2image``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import load_file

from genkit.plugin import (
    CheckpointError,
    ConfigError,
    Generator,
    SamplingError,
    StepContext,
    TensorDictDataset,
    check,
    check_label,
    check_lora_settings,
    compile_module,
    image_dataset,
    lora_scaled,
    sample_generators,
    sample_seed,
    tensor_to_images,
)
from genkit_diffusion.editing import DiffusionEditing
from genkit_diffusion.presets import resolve as resolve_preset
from genkit_diffusion.pretrained import PretrainedUNet, card_details
from genkit_diffusion.sampler import SCHEDULERS, Trajectory, denoise, make_scheduler
from genkit_diffusion.text2image import TextToImage

#: ``beta_schedule`` names shown to users -> diffusers' names
BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
#: steps used when ``--steps`` is left out, per sampler
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "dpm++": 20, "euler": 30, "dpm++karras": 10,
                 "unipc": 10, "dpm++sde": 10}
#: the default sampler, UniPC-10, from FD (n=500) against steps: on the shipped model
#: (benchmarks/sampler_curves.py) 13.18 against DDIM-50's 12.77 (within a tenth of the
#: real floor) in 0.12x its time; on the 32 px tiles model of examples/train_tiles.py
#: 12.45 against DDIM-50's 14.87. dpm++karras-10 (12.23 on digits) gave 20.1 on the tiles.
DEFAULT_SCHEDULER = "unipc"
#: the files a checkpoint must hold (beside genkit.json)
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
REQUIRED_FILES = ("model_index.json", "unet/config.json", UNET_WEIGHTS,
                  "scheduler/scheduler_config.json")
_LABEL_STREAM = 0x1ABE1  # keeps the label draw of a sample apart from its noise stream


@dataclasses.dataclass
class DiffusionConfig:
    """Hyper-parameters of a diffusion model (all visible here, with their defaults)."""

    image_size: int = 16  # side of the square images, in pixels
    channels: int = 1  # 1 (grey) or 3 (RGB)
    size: str | None = None  # UNet preset tiny|small|base for the 5 fields below left unset
    block_out_channels: tuple[int, ...] | None = None  # UNet widths, one per resolution
    layers_per_block: int | None = None  # ResNet blocks per resolution
    attention: bool | None = None  # self-attention at the lowest resolutions and in the middle
    attention_levels: int | None = None  # how many of the lowest resolutions get attention
    norm_num_groups: int | None = None  # GroupNorm groups; must divide every width
    num_classes: int = 0  # > 0: class-conditional on labels 0..num_classes-1
    label_dropout: float = 0.1  # fraction of labels replaced by the null label in training
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    beta_schedule: Literal["linear", "cosine"] = "cosine"
    num_train_timesteps: int = 1000
    # off by default: gamma 5 gave FD 20.0 against 23.2 after 10 minutes on the digits, but
    # 42.2 against 3.57 on the 32 px tiles in 26 (docs/defaults.md)
    snr_gamma: float | None = None  # min-SNR-gamma loss weighting (Hang et al.), e.g. 5
    # fine-tuning a pretrained pipeline (the fields above that it fixes are filled in from it)
    base: str | None = None  # a diffusers pipeline: a directory or Hub id ORG/NAME[@REV]
    lora_rank: int = 0  # > 0: train only a LoRA adapter of this rank on the base's UNet
    lora_alpha: float | None = None  # the adapter's scale is alpha / rank (None: alpha = rank)
    lora_dropout: float = 0.0  # dropout on the adapter's input
    lora_targets: tuple[str, ...] | None = None  # UNet modules (None: to_q,to_k,to_v,to_out.0)
    caption_dropout: float = 0.1  # text-to-image: fraction of captions trained as "" (guidance)

    def __post_init__(self) -> None:
        check(self.image_size > 0, f"image_size must be positive, got {self.image_size}")
        resolve_preset(self)  # the shape fields left unset, from the size preset
        blocks = self.block_out_channels
        check(self.channels in (1, 3), "channels must be 1 (grey) or 3 (RGB)")
        check(len(blocks) >= 1 and all(c > 0 for c in blocks),
              "block_out_channels needs one positive width per resolution, e.g. 32,64,64")
        factor = 2 ** (len(blocks) - 1)
        check(self.image_size > 0 and self.image_size % factor == 0,
              f"image_size {self.image_size} must be divisible by {factor} (2**(levels-1) for "
              f"{len(blocks)} UNet levels); pick another image_size or fewer block_out_channels")
        check(self.norm_num_groups > 0 and all(c % self.norm_num_groups == 0 for c in blocks),
              f"norm_num_groups {self.norm_num_groups} must divide every block width "
              f"{tuple(blocks)}; choose a divisor such as 4 or 8")
        check(self.layers_per_block >= 1, "layers_per_block must be at least 1")
        check(self.snr_gamma is None or self.snr_gamma > 0,
              f"snr_gamma must be positive (5 is usual) or unset, got {self.snr_gamma}")
        check(1 <= self.attention_levels <= len(blocks),
              f"attention_levels must be 1..{len(blocks)} (the UNet's resolutions)")
        check(self.num_classes >= 0, "num_classes must be 0 (unconditional) or the number of labels")
        check(0.0 <= self.label_dropout < 1.0, "label_dropout must be in [0, 1), e.g. 0.1")
        check(self.num_train_timesteps >= 2, "num_train_timesteps must be at least 2, e.g. 1000")
        check_lora_settings(self.lora_rank, self.lora_alpha, self.lora_dropout, self.base,
                            "diffusion")
        check(0.0 <= self.caption_dropout < 1.0, "caption_dropout must be in [0, 1), e.g. 0.1")


@dataclasses.dataclass
class DiffusionSampleOptions:
    """How to sample: which scheduler, how many steps, and side outputs."""

    scheduler: str = DEFAULT_SCHEDULER  # ddpm|ddim|dpm++|euler|dpm++karras|unipc|dpm++sde
    steps: int | None = None  # None: 1000 ddpm, 50 ddim, 20 dpm++, 30 euler, 10 the others
    eta: float = 0.0  # DDIM only: 0 deterministic, 1 as stochastic as DDPM
    guidance_scale: float | None = None  # classifier-free guidance; None: 1 (off) for label
    # models, the pipeline's own (7.5) for text-to-image models
    negative_prompt: str | None = None  # text-to-image: what guidance steers away from
    lora_scale: float = 1.0  # LoRA checkpoints: the adapter's strength (0: the base model)
    trajectory: str | None = None  # write the denoising of the first samples (.gif or .png)
    trajectory_samples: int = 8  # how many samples the trajectory shows
    trajectory_frames: int = 10  # how many steps it shows (evenly spaced)
    channels_last: bool = False  # run the UNet in channels-last memory format (CPU)
    compile: bool = False  # torch.compile the UNet (slow first call; faster after)

    def __post_init__(self) -> None:
        check(self.scheduler in SCHEDULERS,
              f"unknown scheduler {self.scheduler!r}; use one of {', '.join(SCHEDULERS)}")
        check(self.steps is None or self.steps > 0,
              f"steps must be a positive number of denoising steps, got {self.steps}")
        check(0.0 <= self.eta <= 1.0, f"eta must be in [0, 1], got {self.eta}")
        check(self.guidance_scale is None or self.guidance_scale >= 0.0,
              "guidance_scale must be >= 0 (1 = no guidance)")
        check(self.lora_scale >= 0.0, "lora_scale must be >= 0 (0: the base model, 1: as trained)")
        check(self.trajectory_samples >= 1, "trajectory_samples must be at least 1")
        check(self.trajectory_frames >= 2, "trajectory_frames must be at least 2")


class DiffusionGenerator(DiffusionEditing, PretrainedUNet, TextToImage, Generator):
    """Denoising diffusion on a diffusers ``UNet2DModel``, or the UNet of a pretrained
    pipeline (see the module docstring)."""

    Config = DiffusionConfig
    SampleOptions = DiffusionSampleOptions
    modality: ClassVar[str] = "image"
    conditions: ClassVar[tuple[str, ...]] = ("label",)
    module_names: ClassVar[tuple[str, ...]] = ("unet",)
    ema_modules: ClassVar[tuple[str, ...]] = ("unet",)
    default_data: ClassVar[str | None] = "digits"
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 2e-3, "batch_size": 64, "steps": 2000,
                                                "ema_decay": 0.999, "lr_schedule": "cosine"}

    config: DiffusionConfig
    unet: UNet2DModel

    # ------------------------------------------------------------------ model
    def build(self) -> None:
        """The UNet and the training noise schedule, from the config; with ``base`` they
        come from the base pipeline, opened when first needed (``_ensure_base``), so a
        fully fine-tuned checkpoint loads without its base."""
        self._compiled: Any = None
        self._seen_conditions: dict[int, dict[str, Any]] = {}
        self.pipe: Any = None
        if self.config.lora_rank:
            self.ema_modules = ()  # no EMA of a frozen UNet: the adapter alone trains
        if self.config.base is not None:
            self.unet, self.noise_scheduler = None, None
            # drawn now, as weights are at create time: the LoRA init uses it
            self._init_seed = int(torch.randint(0, 2**62, (1,)))
            return
        self.unet = UNet2DModel(**unet_kwargs(self.config))
        self.noise_scheduler = DDPMScheduler(**scheduler_kwargs(self.config))


    @property
    def null_label(self) -> int | None:
        """The label index that means "no label" (None for unconditional models)."""
        return self.config.num_classes if self.config.num_classes > 0 else None

    def accepted_conditions(self) -> tuple[str, ...]:
        self._ensure_base()
        if self.pipe is not None:
            return ("prompt",)
        return ("label",) if self.config.num_classes > 0 else ()

    # ------------------------------------------------------------------ training
    def make_dataset(self, data: Any, split: str) -> TensorDictDataset:
        """Images resized to ``image_size`` in [-1, 1]; labels when the model is conditional;
        caption token ids for a text-to-image base."""
        self._ensure_base()
        if self.pipe is not None:
            return self._text_dataset(data)
        c = self.config
        return image_dataset(data, c.image_size, c.channels, c.num_classes, "diffusion")

    def training_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, Any]:
        """Denoising loss at a random timestep; every random draw comes from ``ctx.generator``."""
        if self.pipe is not None:
            return self._text_step(batch, ctx)
        x0 = batch["image"]  # (B, C, S, S)
        gen = ctx.generator
        b = x0.shape[0]
        noise = torch.randn(x0.shape, generator=gen, device=gen.device).to(x0)  # (B, C, S, S)
        t = torch.randint(0, self.config.num_train_timesteps, (b,), generator=gen,
                          device=gen.device).to(x0.device)  # (B,)
        labels = self._training_labels(batch, gen)
        x_t = self.noise_scheduler.add_noise(x0, noise, t)  # (B, C, S, S)
        pred = ctx.models["unet"](x_t, t, class_labels=labels).sample  # (B, C, S, S)
        if self.config.snr_gamma is None:
            return {"loss": F.mse_loss(pred.float(), self._target(x0, noise, t).float())}
        per_sample = F.mse_loss(pred.float(), self._target(x0, noise, t).float(),
                                reduction="none").mean(dim=(1, 2, 3))  # (B,)
        return {"loss": (per_sample * self._snr_weights(t)).mean()}

    def _snr_weights(self, t: torch.Tensor) -> torch.Tensor:
        """min-SNR-gamma weights of timesteps ``t`` (B,), as diffusers' training examples
        compute them: min(SNR, gamma) over SNR (epsilon) or over SNR + 1 (v-prediction)."""
        from diffusers.training_utils import compute_snr

        snr = compute_snr(self.noise_scheduler, t).float()  # (B,)
        clipped = snr.clamp(max=self.config.snr_gamma)
        return clipped / (snr + 1 if self.config.prediction_type == "v_prediction" else snr)

    def _training_labels(self, batch: dict[str, torch.Tensor], gen: torch.Generator
                         ) -> torch.Tensor | None:
        """The batch labels with a ``label_dropout`` fraction set to the null label."""
        if self.null_label is None:
            return None
        labels = batch["label"].long()  # (B,)
        drop = torch.rand(labels.shape, generator=gen, device=gen.device).to(labels.device)
        return torch.where(drop < self.config.label_dropout,
                           torch.full_like(labels, self.null_label), labels)

    def _target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.config.prediction_type == "v_prediction":
            return self.noise_scheduler.get_velocity(x0, noise, t)
        return noise

    @torch.inference_mode()
    def evaluate(self, data: Any) -> dict[str, float]:
        """Held-out denoising loss at fixed timesteps and noise (comparable across runs)."""
        self._ensure_base()
        if self.pipe is not None:
            return self._text_evaluate(data)
        held_out = self.make_dataset(data, "test").tensors
        x0 = held_out["image"][:512].to(self.device)  # (N, C, S, S)
        labels = held_out["label"][: len(x0)].to(self.device) if "label" in held_out else None
        gen = torch.Generator(device="cpu").manual_seed(0)
        losses = []
        for frac in (0.1, 0.3, 0.5, 0.7, 0.9):
            t = torch.full((len(x0),), int(frac * (self.config.num_train_timesteps - 1)),
                           device=self.device)  # (N,)
            noise = torch.randn(x0.shape, generator=gen).to(x0)
            pred = self.unet(self.noise_scheduler.add_noise(x0, noise, t), t,
                             class_labels=labels).sample
            losses.append(F.mse_loss(pred.float(), self._target(x0, noise, t).float()).item())
        return {"val_loss": float(np.mean(losses))}

    # ------------------------------------------------------------------ sampling
    def generate(self, seeds: list[int], conditions: list[dict[str, Any]], options: Any,
                 stream: Callable[[str], None] | None = None) -> list[Any]:
        """One batch of images; sample i depends only on ``seeds[i]`` and its conditions."""
        self._ensure_base()
        if not isinstance(options, DiffusionSampleOptions):
            options = self.options(dict(options or {}))
        if self.pipe is not None:
            return self._text_generate(seeds, conditions, options)
        images = self._sample_tensor(seeds, conditions, options)  # (B, C, S, S)
        self._remember(seeds, conditions)
        pil = tensor_to_images(images)
        for image, label in zip(pil, self._labels_of(seeds, conditions)):
            if label is not None:
                image.info["label"] = label  # the drawn label travels with the image
        return pil

    def _remember(self, seeds: list[int], conditions: list[dict[str, Any]]) -> None:
        """Keep each seed's latest conditions (the first 10,000 seeds), so the trajectory
        written after a run shows its first samples as they were drawn."""
        for seed, condition in zip(seeds, conditions):
            if seed in self._seen_conditions or len(self._seen_conditions) < 10_000:
                self._seen_conditions[seed] = dict(condition)

    def _sample_tensor(self, seeds: list[int], conditions: list[dict[str, Any]], options: Any,
                       trajectory: Trajectory | None = None) -> torch.Tensor:
        """Images in [-1, 1], ``(B, C, S, S)``, for ``seeds`` / ``conditions``."""
        if not isinstance(options, DiffusionSampleOptions):
            options = self.options(dict(options or {}))
        steps = options.steps or DEFAULT_STEPS[options.scheduler]
        check(options.scheduler != "ddpm" or steps <= self.config.num_train_timesteps,
              f"ddpm takes at most num_train_timesteps={self.config.num_train_timesteps} steps; "
              f"lower --steps")
        guidance = 1.0 if options.guidance_scale is None else options.guidance_scale
        check(guidance == 1.0 or (self.null_label is not None and self.config.label_dropout > 0),
              "guidance_scale needs a class-conditional model trained with label_dropout > 0; "
              "drop --guidance-scale")
        check(options.negative_prompt is None, "negative_prompt is for text-to-image models")
        labels = self._labels_of(seeds, conditions)
        label_tensor = None
        if self.null_label is not None:
            label_tensor = torch.tensor(labels, dtype=torch.long, device=self.device)  # (B,)
        cfg = self.config
        lora = self.unet if self.config.lora_rank else None
        with torch.inference_mode(), lora_scaled(lora, options.lora_scale), \
                self._sampling_unet(options) as unet:
            return denoise(unet, make_scheduler(options.scheduler, self.noise_scheduler.config),
                           (len(seeds), cfg.channels, cfg.image_size, cfg.image_size), steps,
                           sample_generators(seeds, self.device), label_tensor, self.null_label,
                           guidance, options.eta, trajectory)

    def _labels_of(self, seeds: list[int], conditions: list[dict[str, Any]]) -> list[int | None]:
        """Each sample's label: the asked one, else (conditional models) one drawn from
        its own seed, on a stream apart from its noise; None for unconditional models."""
        if len(conditions) not in (0, len(seeds)):
            raise ConfigError(f"got {len(conditions)} conditions for {len(seeds)} seeds; "
                              "give one condition dict per sample")
        labels: list[int | None] = []
        for i, seed in enumerate(seeds):
            asked = (conditions[i] if conditions else {}).get("label")
            if self.null_label is None:
                if asked is not None:
                    raise SamplingError("this diffusion model is unconditional: drop --label, or "
                                        "train with --set num_classes=N")
                labels.append(None)
            elif asked is None:
                rng = np.random.default_rng([int(seed), _LABEL_STREAM])
                labels.append(int(rng.integers(self.config.num_classes)))
            else:
                labels.append(check_label(asked, self.config.num_classes))
        return labels

    @contextlib.contextmanager
    def _sampling_unet(self, options: DiffusionSampleOptions) -> Iterator[torch.nn.Module]:
        """The UNet as sampling runs it: channels-last and/or compiled when asked. The
        memory format is restored afterwards (safetensors saves contiguous tensors only)."""
        unet = self.unet.eval()
        if options.channels_last:
            unet.to(memory_format=torch.channels_last)
        try:
            if options.compile:
                if self._compiled is None:
                    self._compiled = compile_module(unet)  # kernels cached across runs
                yield self._compiled
            else:
                yield unet
        finally:
            if options.channels_last:
                unet.to(memory_format=torch.contiguous_format)

    def write_extras(self, options: Any, seed: int, out: Path | None) -> list[Path]:
        """The denoising trajectory of the first samples, when ``options.trajectory`` is set."""
        if options is None or getattr(options, "trajectory", None) is None:
            return []
        self._ensure_base()
        if self.pipe is not None:
            raise ConfigError("trajectory works with genkit's own UNet sampler; drop it for a "
                              "text-to-image model")
        from genkit_diffusion.trajectory import write_trajectory

        rows = options.trajectory_samples
        seeds = [sample_seed(seed, i) for i in range(rows)]
        conditions = [self._seen_conditions.get(s, {}) for s in seeds]  # as they were sampled
        trajectory = Trajectory(rows)
        with self.sampling_weights():
            self._sample_tensor(seeds, conditions, options, trajectory)
        path = Path(options.trajectory).expanduser()
        return [write_trajectory(trajectory.frames, path, options.trajectory_frames)]

    # ------------------------------------------------------------------ files
    def save_weights(self, directory: Path) -> None:
        """Write a diffusers pipeline directory (model_index.json, unet/, scheduler/):
        the checkpoint opens with ``DDPMPipeline.from_pretrained`` too. With ``base``: the
        LoRA adapter alone, or the fine-tuned pipeline (see ``genkit_diffusion.pretrained``)."""
        if self.config.base is not None:
            self._save_base_weights(Path(directory))
            return
        pipe = DDPMPipeline(unet=self.unet, scheduler=self.noise_scheduler)
        pipe.save_pretrained(str(directory), safe_serialization=True)
        for weights in Path(directory).rglob("*.safetensors"):
            weights.chmod(0o644)  # safetensors writes 0600: others could not read the model

    def load_weights(self, directory: Path) -> None:
        """Read the UNet weights from ``unet/`` (safetensors only, any float dtype); with
        ``base``, the fine-tuned pipeline or the base plus the adapter."""
        directory = Path(directory)
        if self.config.base is not None:
            self._load_base_weights(directory)
            return
        missing = [f for f in REQUIRED_FILES if not (directory / f).is_file()]
        if missing:
            raise CheckpointError(f"{directory} is not a complete diffusion checkpoint: missing "
                                  f"{', '.join(missing)}; re-save it or point at another directory")
        self._check_unet_config(directory / "unet" / "config.json")
        state = load_file(str(directory / UNET_WEIGHTS), device=str(self.device))
        self.unet.load_state_dict(state, strict=True)  # copies and casts to the module dtype

    def _check_unet_config(self, path: Path) -> None:
        """The saved UNet config must match the one this config builds."""
        saved = json.loads(path.read_text())
        expected = unet_kwargs(self.config)
        wrong = [k for k, v in expected.items()
                 if k in saved and _jsonish(saved[k]) != _jsonish(v)]
        if wrong:
            raise CheckpointError(f"{path} does not match genkit.json (differs in "
                                  f"{', '.join(wrong)}); the checkpoint is damaged or mixed up")

    @classmethod
    def from_foreign_dir(cls, path: str | Path, device: Any = "auto") -> Generator:
        """A generator that samples a diffusers pipeline directory written without genkit
        (no ``genkit.json``): unconditional, class-conditional or text-to-image."""
        from genkit_diffusion.pipelines import load_pipeline_dir

        return load_pipeline_dir(path, device)

    @classmethod
    def model_card_details(cls, manifest: dict[str, Any], where: str) -> dict[str, Any]:
        """Card metadata and the plain-diffusers loading recipe (see genkit.store.modelcard)."""
        return card_details(manifest, where)


def unet_kwargs(config: DiffusionConfig) -> dict[str, Any]:
    """``UNet2DModel`` arguments for ``config``: plain ResNet blocks at every resolution,
    attention (when on) at the lowest ``attention_levels`` ones (never the first) and in
    the middle block."""
    levels = len(config.block_out_channels)
    down = ["DownBlock2D"] * levels
    if config.attention and levels > 1:  # the lowest attention_levels resolutions
        for i in range(max(1, levels - config.attention_levels), levels):
            down[i] = "AttnDownBlock2D"
    up = [block.replace("Down", "Up") for block in reversed(down)]
    kwargs: dict[str, Any] = {
        "sample_size": config.image_size,
        "in_channels": config.channels,
        "out_channels": config.channels,
        "block_out_channels": tuple(config.block_out_channels),
        "layers_per_block": config.layers_per_block,
        "down_block_types": tuple(down),
        "up_block_types": tuple(up),
        "norm_num_groups": config.norm_num_groups,
        "add_attention": config.attention,
        "attention_head_dim": min(32, config.block_out_channels[-1]),
    }
    # class-conditional: one embedding per label + the null label (classifier-free guidance)
    kwargs["num_class_embeds"] = config.num_classes + 1 if config.num_classes > 0 else None
    return kwargs


def scheduler_kwargs(config: DiffusionConfig) -> dict[str, Any]:
    """``DDPMScheduler`` arguments for ``config`` (saved as the pipeline's scheduler)."""
    return {
        "num_train_timesteps": config.num_train_timesteps,
        "beta_schedule": BETA_SCHEDULES[config.beta_schedule],
        "prediction_type": config.prediction_type,
        "clip_sample": True,
        "timestep_spacing": "trailing",  # few-step samplers start at the last timestep
    }


def _jsonish(value: Any) -> Any:
    return json.loads(json.dumps(value))
