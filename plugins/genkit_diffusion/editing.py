"""Editing with a diffusion model: image-to-image (SDEdit) and inpainting.

:class:`DiffusionEditing` is a mixin of ``DiffusionGenerator`` (genkit's ``edit_batch`` hook).
Both tasks run one loop, :func:`edit_denoise`, with any of the sampler's schedulers:

- **img2img** (SDEdit, Meng et al. 2022): the input is noised to ``strength`` of the
  schedule (the last ``int(steps * strength)`` of the ``steps`` timesteps, as diffusers'
  img2img pipelines count them; each scheduler's own ``add_noise``, so Euler's sigma
  scale is right too) and denoised from there. Strength 0 runs no step and returns the
  input; strength 1 starts from pure noise exactly as sampling does, so it *is* sampling
  with the same seed. With ``label`` the denoiser is steered to that class.
- **inpaint**, ``inpaint="replace"`` (the default): known-region replacement. After every
  step the kept pixels are replaced by the input noised to the level the sample has
  reached (fresh noise from the row's own generator), and at the end by the input itself,
  so kept pixels come back exactly. It only touches the sample between steps, so it works
  with every scheduler and costs what sampling costs.
- **inpaint**, ``inpaint="repaint"``: RePaint (Lugmayr et al. 2022) through diffusers'
  ``RePaintScheduler``: the same replacement plus resampling, jumping back
  ``jump_length`` steps ``jump_n_sample - 1`` times so the filled region agrees with the
  kept one. It is a DDPM/DDIM-type schedule of its own (``--scheduler`` does not apply),
  costs about ``1 + 2 (jump_n_sample - 1)`` times the steps, and takes noise predictions,
  so v-prediction outputs are converted to noise first.

A text-to-image model (``base=`` a Stable-Diffusion-style pipeline) edits in latent space
through diffusers' own image-to-image and inpainting pipelines, guided by ``prompt``
(:mod:`genkit_diffusion.edit_pipelines`).

Without a label, a class-conditional model does not pull the image toward a label drawn
at random, as unlabelled sampling does. img2img runs with the null label (unconditioned),
which keeps the class the image shows. Inpainting first asks the model which class the
kept pixels are (``infer_label``, on by default), the way a diffusion model classifies
(Li et al. 2023): noise the image (the hole grey) at ``LABEL_TIMESTEPS`` fixed levels,
and take the label whose denoising error on the kept pixels is lowest. A null-label fill
is often of another class than the rest of the digit; the inferred label fixes that
(measured in benchmarks/edit_quality.py), and it travels with the image
(``image.info["label"]``, recorded in the manifest). Every random number of row i comes
from its own generator.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, ClassVar

import torch
from diffusers import DDIMScheduler, RePaintScheduler
from diffusers.utils.torch_utils import randn_tensor

from genkit.plugin import (
    ConfigError,
    SamplingError,
    build_config,
    check,
    lora_scaled,
    sample_generators,
    tensor_to_images,
)
from genkit_diffusion.edit_pipelines import DEFAULT_STRENGTH, edit_pipeline, pipeline_edit
from genkit_diffusion.sampler import make_scheduler

INPAINT_METHODS = ("replace", "repaint")
LABEL_TIMESTEPS = 8  # noise levels the label of an inpainting is inferred at


@functools.cache
def edit_options_class(sample_options: type) -> type:
    """The family's sampling options plus the inpainting method: one dataclass, validated
    together, that the sampler's own code still takes (a subclass)."""

    @dataclasses.dataclass
    class DiffusionEditOptions(sample_options):  # type: ignore[misc, valid-type]
        inpaint: str = "replace"  # replace (any scheduler) | repaint (RePaintScheduler)
        jump_length: int = 5  # repaint: steps of each jump back
        jump_n_sample: int = 3  # repaint: passes over each jumped stretch (1: no resampling)
        infer_label: bool = True  # inpaint without a label: the kept pixels' class (else null)

        def __post_init__(self) -> None:
            super().__post_init__()
            check(self.inpaint in INPAINT_METHODS, f"unknown inpaint method {self.inpaint!r}; "
                  f"use one of {', '.join(INPAINT_METHODS)}")
            check(self.jump_length >= 1, f"jump_length must be at least 1, got {self.jump_length}")
            check(self.jump_n_sample >= 1,
                  f"jump_n_sample must be at least 1, got {self.jump_n_sample}")

    return DiffusionEditOptions


class DiffusionEditing:
    """Mixin of ``DiffusionGenerator``: the ``edit_batch`` hook (see the module docstring)."""

    edit_tasks: ClassVar[tuple[str, ...]] = ("img2img", "inpaint")

    def edit_options(self, values: Any) -> Any:
        return build_config(edit_options_class(self.SampleOptions), values,
                            what=f"{self.name or 'diffusion'} edit option")

    def edit_image_format(self) -> tuple[int, int]:
        self._ensure_base()  # a base fills in image_size and channels
        return self.config.channels, self.config.image_size

    def check_edit(self, task: str, strength: float | None, options: Any) -> None:
        """Refuse what this model cannot edit with these options, before anything runs."""
        from genkit_diffusion.generator import DEFAULT_STEPS  # lazy: that module imports this

        self._ensure_base()
        if options.trajectory or options.channels_last or options.compile:
            raise ConfigError("trajectory, channels_last and compile are sampling options; "
                              "drop them for an edit")
        if self.pipe is not None:  # a text-to-image base: diffusers' own edit pipelines
            if task == "inpaint" and options.inpaint == "repaint":
                raise SamplingError("inpaint=repaint works with genkit's pixel-space UNet "
                                    "models; a text-to-image model inpaints with diffusers' "
                                    "inpainting pipeline (drop --inpaint)")
            edit_pipeline(self.pipe, task)
            return
        steps = options.steps or DEFAULT_STEPS[options.scheduler]
        check(options.scheduler != "ddpm" or steps <= self.config.num_train_timesteps,
              f"ddpm takes at most num_train_timesteps={self.config.num_train_timesteps} steps; "
              "lower --steps")
        check(options.guidance_scale in (None, 1.0) or
              (self.null_label is not None and self.config.label_dropout > 0),
              "guidance_scale needs a class-conditional model trained with label_dropout > 0; "
              "drop --guidance-scale")
        if task == "inpaint" and options.inpaint == "repaint" and strength not in (None, 1.0):
            raise SamplingError("inpaint=repaint starts from noise: leave --strength out (or 1), "
                                "or use inpaint=replace")

    def edit_batch(self, images: torch.Tensor, masks: torch.Tensor | None, seeds: list[int],
                   conditions: list[dict[str, Any]], options: Any, task: str,
                   strength: float | None) -> list[Any]:
        """One batch of edits; edit i depends only on ``seeds[i]``, its condition and input."""
        from genkit_diffusion.generator import DEFAULT_STEPS  # lazy: that module imports this

        self._ensure_base()
        steps = options.steps or DEFAULT_STEPS[options.scheduler]
        lora = self.unet if self.config.lora_rank else None
        if self.pipe is not None:
            with lora_scaled(lora, options.lora_scale):
                return pipeline_edit(self.pipe, task, images, masks, seeds, conditions, strength,
                                     steps, self.device, options.scheduler,
                                     options.guidance_scale, options.negative_prompt)
        strength = DEFAULT_STRENGTH[task] if strength is None else strength
        guidance = 1.0 if options.guidance_scale is None else options.guidance_scale
        generators = sample_generators(seeds, self.device)
        labels = None
        with torch.inference_mode(), lora_scaled(lora, options.lora_scale):
            if self.null_label is not None:
                labels = torch.tensor([c.get("label", self.null_label) for c in conditions],
                                      dtype=torch.long, device=self.device)  # (B,)
                unlabelled = labels == self.null_label  # (B,)
                if masks is not None and options.infer_label and bool(unlabelled.any()):
                    inferred = infer_labels(self.unet, self.noise_scheduler, images, masks,
                                            self.config.num_classes, generators)
                    labels = torch.where(unlabelled, inferred, labels)
            denoiser = Denoiser(self.unet, labels, self.null_label, guidance)
            if task == "inpaint" and options.inpaint == "repaint":
                x = repaint(denoiser, self.noise_scheduler.config, images, masks, steps,
                            options.jump_length, options.jump_n_sample, generators, options.eta)
            else:
                scheduler = make_scheduler(options.scheduler, self.noise_scheduler.config)
                x = edit_denoise(denoiser, scheduler, images, masks, strength, steps,
                                 generators, options.eta)
        out = tensor_to_images(x)
        if labels is not None:
            for image, label in zip(out, labels.tolist()):
                if label != self.null_label:
                    image.info["label"] = label
        return out


@dataclasses.dataclass
class Denoiser:
    """The UNet's prediction for a batch, with classifier-free guidance when asked for
    (conditional and null-label rows in one batch, as the sampler runs them)."""

    unet: Any
    labels: torch.Tensor | None  # (B,)
    null_label: int | None
    guidance: float = 1.0

    def __call__(self, x: torch.Tensor, t: Any) -> torch.Tensor:
        if self.labels is None or self.guidance == 1.0:
            return self.unet(x, t, class_labels=self.labels).sample  # (B, C, H, W)
        both = torch.cat([self.labels, torch.full_like(self.labels, self.null_label)])
        cond, uncond = self.unet(torch.cat([x, x]), t, class_labels=both).sample.chunk(2)
        return uncond + self.guidance * (cond - uncond)


@torch.inference_mode()
def infer_labels(unet: Any, schedule: Any, images: torch.Tensor, masks: torch.Tensor,
                 num_classes: int, generators: list[torch.Generator]) -> torch.Tensor:
    """The class whose denoising error on the kept pixels is lowest, per row ``(B,)``: the
    hole grey, ``LABEL_TIMESTEPS`` evenly spread noise levels, the same noise for every
    class (drawn from each row's generator), the error in the model's own target."""
    keep = 1 - masks
    x0 = keep * images  # (B, C, H, W): the hole at 0, mid-grey
    b = x0.shape[0]
    total = schedule.config.num_train_timesteps
    errors = torch.zeros(num_classes, b, device=x0.device)
    for k in range(LABEL_TIMESTEPS):
        t = torch.full((b,), int((k + 0.5) * total / LABEL_TIMESTEPS), device=x0.device)
        noise = randn_tensor(tuple(x0.shape), generator=generators, device=x0.device,
                             dtype=x0.dtype)
        x_t = schedule.add_noise(x0, noise, t)
        target = schedule.get_velocity(x0, noise, t) \
            if schedule.config.prediction_type == "v_prediction" else noise
        for label in range(num_classes):
            pred = unet(x_t, t, class_labels=torch.full_like(t, label)).sample
            errors[label] += ((pred - target) ** 2 * keep).flatten(1).sum(1)
    return errors.argmin(0)


def edit_timesteps(scheduler: Any, steps: int, strength: float,
                   device: torch.device) -> tuple[torch.Tensor, bool]:
    """The timesteps an edit of ``strength`` runs: the last ``int(steps * strength)`` of
    the schedule; and whether that is all of it (start from pure noise)."""
    scheduler.set_timesteps(steps, device=device)
    start = steps - min(int(steps * strength), steps)
    if hasattr(scheduler, "set_begin_index"):  # count steps (Karras timesteps can repeat);
        scheduler.set_begin_index(start * scheduler.order)  # add_noise reads it too
    return scheduler.timesteps[start * scheduler.order:], start == 0


def edit_denoise(denoiser: Denoiser, scheduler: Any, images: torch.Tensor,
                 masks: torch.Tensor | None, strength: float, steps: int,
                 generators: list[torch.Generator], eta: float = 0.0) -> torch.Tensor:
    """SDEdit, with known-region replacement when ``masks`` (1 = fill) are given.

    Args:
        images: ``(B, C, H, W)`` in [-1, 1]; masks ``(B, 1, H, W)`` or None.
        strength: share of the schedule to run (0: the input back; 1: from pure noise).

    Returns:
        ``(B, C, H, W)`` in [-1, 1]; with masks, the kept pixels are the input's exactly.
    """
    timesteps, from_noise = edit_timesteps(scheduler, steps, strength, images.device)
    if len(timesteps) == 0:
        return images.clone()
    noise = randn_tensor(tuple(images.shape), generator=generators, device=images.device,
                         dtype=images.dtype)  # (B, C, H, W): each row's first draw, as sampling
    if from_noise:
        x = noise * scheduler.init_noise_sigma
    else:
        x = scheduler.add_noise(images, noise, timesteps[:1])
    step_kwargs = {"eta": eta} if isinstance(scheduler, DDIMScheduler) else {}
    for k, t in enumerate(timesteps):
        out = denoiser(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(out, t, x, generator=generators, **step_kwargs).prev_sample
        if masks is not None and k + 1 < len(timesteps):
            fresh = randn_tensor(tuple(images.shape), generator=generators, device=images.device,
                                 dtype=images.dtype)
            known = scheduler.add_noise(images, fresh, timesteps[k + 1:k + 2])
            x = masks * x + (1 - masks) * known
    x = x.clamp(-1.0, 1.0)
    return x if masks is None else masks * x + (1 - masks) * images


def repaint(denoiser: Denoiser, schedule: Any, images: torch.Tensor, masks: torch.Tensor,
            steps: int, jump_length: int, jump_n_sample: int,
            generators: list[torch.Generator], eta: float = 0.0) -> torch.Tensor:
    """RePaint through diffusers' ``RePaintScheduler`` built from the training schedule
    (the loop of diffusers' ``RePaintPipeline``, with per-row generators)."""
    takes = inspect.signature(RePaintScheduler.__init__).parameters  # its keys of the schedule
    scheduler = RePaintScheduler.from_config({k: v for k, v in schedule.items() if k in takes})
    scheduler.set_timesteps(steps, jump_length, jump_n_sample, images.device)
    scheduler.eta = eta
    keep = 1 - masks  # RePaint's mask: 1 = keep
    alphas = scheduler.alphas_cumprod.to(images.device)
    x = randn_tensor(tuple(images.shape), generator=generators, device=images.device,
                     dtype=images.dtype)
    t_last = scheduler.timesteps[0] + 1
    for t in scheduler.timesteps:
        if t < t_last:
            out = denoiser(x, t)
            if schedule.get("prediction_type") == "v_prediction":  # v -> the noise it implies
                a = alphas[t]
                out = a.sqrt() * out + (1 - a).sqrt() * x
            x = scheduler.step(out, t, x, images, keep, generators).prev_sample
        else:
            x = scheduler.undo_step(x, t_last, generators)
        t_last = t
    return masks * x.clamp(-1.0, 1.0) + keep * images
