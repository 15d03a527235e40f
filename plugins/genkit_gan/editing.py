"""Editing with the GAN: reconstruction and inpainting through latent projection.

:class:`GANEditing` is a mixin of ``GANGenerator`` (genkit's ``edit_batch`` hook). A GAN
has no encoder, so both tasks go through ``GANGenerator.project(images, steps, seed) ->
latents`` (the latent projection of the GAN's own API: the z whose image is closest to
each input, found by optimisation from a start drawn from ``seed``):

- **reconstruct**: ``G(project(image))``, the GAN's closest rendering of the image.
- **inpaint**: the hole starts as ``G(z)`` of a prior sample drawn from the row's seed;
  then ``iterations`` rounds of project the composite, render it, and put the kept pixels
  back. Where ``project`` takes ``masks`` (a loss on the kept pixels only) one masked
  projection replaces the rounds. The kept pixels are returned exactly.

Each row is projected alone with its own seed, so edit i depends only on (checkpoint,
seed, i, input i). genkit calls the hook in inference mode; the glue leaves it, so
``project`` gets plain tensors it can optimise against (it turns gradients on itself).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, ClassVar

import torch

from genkit.plugin import SamplingError, build_config, check, sample_generators, tensor_to_images


@dataclasses.dataclass
class GANEditOptions:
    """Options of ``edit_batch`` (CLI: ``--steps 200 --iterations 4``)."""

    steps: int = 200  # optimisation steps of each projection
    iterations: int = 4  # inpaint: project-render-restore rounds (1 with a masked projection)

    def __post_init__(self) -> None:
        check(self.steps >= 1, f"steps must be at least 1, got {self.steps}")
        check(self.iterations >= 1, f"iterations must be at least 1, got {self.iterations}")


class GANEditing:
    """Mixin of ``GANGenerator``: the ``edit_batch`` hook (see the module docstring)."""

    edit_tasks: ClassVar[tuple[str, ...]] = ("reconstruct", "inpaint")

    def edit_options(self, values: Any) -> GANEditOptions:
        return build_config(GANEditOptions, values, what="gan edit option")

    def check_edit(self, task: str, strength: float | None, options: Any) -> None:
        if strength is not None:
            raise SamplingError("the gan's reconstruct and inpaint take no --strength (it is "
                                "for diffusion img2img); drop it")
        if self.config.num_classes:
            raise SamplingError("editing a class-conditional gan is not supported yet "
                                "(projection would need the image's label)")
        if not callable(getattr(self, "project", None)):
            raise SamplingError("gan edits project images into the latent space, and this "
                                "GAN has no project() yet")

    def edit_batch(self, images: torch.Tensor, masks: torch.Tensor | None, seeds: list[int],
                   conditions: list[dict[str, Any]], options: Any, task: str,
                   strength: float | None) -> list[Any]:
        """One batch of reconstructions or inpaintings, each row projected from its seed."""
        with torch.inference_mode(False):  # projection optimises: it needs plain tensors
            images = images.clone()
            masks = None if masks is None else masks.clone()
            rows = [self._edit_row(images[i:i + 1], None if masks is None else masks[i:i + 1],
                                   seed, options) for i, seed in enumerate(seeds)]
        return tensor_to_images(torch.cat(rows))

    def _edit_row(self, image: torch.Tensor, mask: torch.Tensor | None, seed: int,
                  options: GANEditOptions) -> torch.Tensor:
        """One edited row ``(1, C, S, S)`` in [-1, 1]."""
        render = self._render
        if mask is None:
            return render(self.project(image, options.steps, seed))
        keep = 1 - mask
        if "masks" in inspect.signature(self.project).parameters:
            return keep * image + mask * render(self.project(image, options.steps, seed,
                                                             masks=keep))
        gen = sample_generators([seed], self.device)[0]
        z = torch.randn(1, self.config.latent_dim, generator=gen, device=self.device)  # (1, Z)
        x = keep * image + mask * render(z)
        for _ in range(options.iterations):
            x = keep * image + mask * render(self.project(x, options.steps, seed))
        return x

    def _render(self, z: torch.Tensor) -> torch.Tensor:
        """``G(z)`` in [-1, 1] (no gradients), a plain tensor the next projection can use."""
        with torch.no_grad():
            return self.generator(z.detach().to(self.device), None).float().clamp(-1, 1)
