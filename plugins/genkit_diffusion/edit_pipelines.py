"""Prompt-guided edits of text-to-image pipelines, through diffusers' own edit pipelines.

A Stable-Diffusion-style pipeline (genkit's text-to-image fine-tunes, ``base=`` a
text-to-image pipeline, and foreign pipeline directories) edits in its VAE's latent
space, which genkit's pixel-space loop cannot do. diffusers has the image-to-image and
inpainting pipeline of every text-to-image pipeline it knows; ``AutoPipelineFor*``
``.from_pipe`` builds it over the same components (no copy, no download), so the edit
is exactly what diffusers would make. genkit adds what its contract promises: one
generator per row (``generator=[...]``), the scheduler swapped for the call only, and
for inpainting the kept pixels put back exactly (a latent-space inpainting repaints
them slightly, through the VAE).

:class:`PipelineEditing` gives a foreign pipeline generator (``genkit_diffusion.pipelines``)
the hook; ``DiffusionEditing`` calls :func:`pipeline_edit` for a text-to-image base.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any, ClassVar

import torch

from genkit.plugin import SamplingError, sample_generators, tensor_to_images

DEFAULT_STRENGTH = {"img2img": 0.8, "inpaint": 1.0}  # diffusers' pipelines' defaults


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' errors only: diffusers' auto pipelines import every pipeline family,
    and transformers warns about image processors none of them uses here."""
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)


def edit_pipeline(pipe: Any, task: str) -> Any:
    """diffusers' image-to-image or inpainting pipeline over ``pipe``'s components."""
    with _quiet_transformers():
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    auto = AutoPipelineForInpainting if task == "inpaint" else AutoPipelineForImage2Image
    try:
        with _quiet_transformers():
            edit = auto.from_pipe(pipe)
    except (ValueError, KeyError):
        raise SamplingError(f"diffusers has no {task} pipeline for {type(pipe).__name__}; "
                            "edits work with its text-to-image pipelines") from None
    edit.set_progress_bar_config(disable=True)
    return edit


def pipeline_edit(pipe: Any, task: str, images: torch.Tensor, masks: torch.Tensor | None,
                  seeds: list[int], conditions: list[dict[str, Any]], strength: float | None,
                  steps: int, device: Any, scheduler: str | None = None,
                  guidance_scale: float | None = None,
                  negative_prompt: str | None = None) -> list[Any]:
    """One batch through diffusers' edit pipeline; the kept pixels come back exactly.

    Args:
        images: ``(B, 3, H, W)`` in [-1, 1]; masks ``(B, 1, H, W)``, 1 = fill (inpaint).
        strength: None: diffusers' default (0.8 img2img, 1 inpaint).
    """
    strength = DEFAULT_STRENGTH[task] if strength is None else strength
    if int(steps * strength) == 0:  # no step to run (diffusers would fail): the input back
        return tensor_to_images(images)
    edit = edit_pipeline(pipe, task)
    kwargs: dict[str, Any] = {
        "prompt": [str(c.get("prompt", "")) for c in conditions],
        "image": (images + 1) / 2,  # diffusers takes tensors in [0, 1]
        "strength": strength,
        "generator": sample_generators(seeds, device), "num_inference_steps": steps,
        "output_type": "pt"}
    if masks is not None:
        kwargs["mask_image"] = masks
        kwargs["height"], kwargs["width"] = images.shape[-2:]
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    if negative_prompt is not None:
        kwargs["negative_prompt"] = [negative_prompt] * len(seeds)
    if scheduler is not None:
        from genkit_diffusion.sampler import make_scheduler

        edit.scheduler = make_scheduler(scheduler, edit.scheduler.config)  # this call only
    out = edit(**kwargs).images.to(images.device, images.dtype) * 2 - 1  # (B, 3, H, W)
    if masks is not None:
        out = masks * out + (1 - masks) * images
    return tensor_to_images(out.clamp(-1, 1))


class PipelineEditing:
    """Mixin of ``PipelineGenerator``: prompt-guided img2img and inpainting of a foreign
    text-to-image pipeline directory (an unconditional one cannot edit)."""

    edit_tasks: ClassVar[tuple[str, ...]] = ("img2img", "inpaint")

    def accepted_edit_tasks(self) -> tuple[str, ...]:
        takes_prompt = "prompt" in inspect.signature(self.pipe.__call__).parameters
        return self.edit_tasks if takes_prompt else ()

    def edit_image_format(self) -> tuple[int, int]:
        return 3, int(self.pipe.unet.config.sample_size) * int(self.pipe.vae_scale_factor)

    def check_edit(self, task: str, strength: float | None, options: Any) -> None:
        edit_pipeline(self.pipe, task)

    def edit_batch(self, images: torch.Tensor, masks: torch.Tensor | None, seeds: list[int],
                   conditions: list[dict[str, Any]], options: Any, task: str,
                   strength: float | None) -> list[Any]:
        return pipeline_edit(self.pipe, task, images, masks, seeds, conditions, strength,
                             options.steps or self.default_steps, self.device,
                             options.scheduler, options.guidance_scale, options.negative_prompt)
