"""Editing with the VAE: reconstruction, and inpainting by iterative encode-decode.

:class:`VAEEditing` is a mixin of ``VAEGenerator`` (genkit's ``edit_batch`` hook):

- **reconstruct**: the decoder's mean image at the posterior mean of the input, the VAE's
  closest rendering of it (denoised, simplified, pulled toward the training data).
- **inpaint**: the hole starts as a prior sample (z drawn from the row's own seed, so
  seeds give different fills), then ``iterations`` rounds of encode (posterior mean),
  decode, and put the kept pixels back. Each round is a step toward a fixed point where
  the image's known pixels and its filled region agree under the model; the kept pixels
  are returned exactly. Iterative encode-decode needs nothing but the two networks, where
  latent optimisation would need gradients and a learning rate to tune per model.

A class-conditional VAE needs the image's label, which an image to restore rarely comes
with. Without ``label``, every class is tried and the one with the best ELBO of the kept
pixels (reconstruction of the known pixels plus KL, in nats) wins; the chosen label
travels with the image (``image.info["label"]``, recorded in the manifest).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from genkit.plugin import SamplingError, build_config, check, sample_generators, tensor_to_images
from genkit_vae.elbo import kl_nats, reconstruction_nats


@dataclasses.dataclass
class VAEEditOptions:
    """Options of ``edit_batch`` (CLI: ``--iterations 50``)."""

    iterations: int = 50  # inpaint: encode-decode rounds with the kept pixels held

    def __post_init__(self) -> None:
        check(self.iterations >= 1, f"iterations must be at least 1, got {self.iterations}")


class VAEEditing:
    """Mixin of ``VAEGenerator``: the ``edit_batch`` hook (see the module docstring)."""

    edit_tasks: ClassVar[tuple[str, ...]] = ("reconstruct", "inpaint")

    def edit_options(self, values: Any) -> VAEEditOptions:
        return build_config(VAEEditOptions, values, what="vae edit option")

    def check_edit(self, task: str, strength: float | None, options: Any) -> None:
        if strength is not None:
            raise SamplingError("the vae's reconstruct and inpaint take no --strength (it is "
                                "for diffusion img2img); drop it")

    def edit_batch(self, images: torch.Tensor, masks: torch.Tensor | None, seeds: list[int],
                   conditions: list[dict[str, Any]], options: Any, task: str,
                   strength: float | None) -> list[Any]:
        """One batch of reconstructions or inpaintings, each row from its own seed."""
        asked = [c.get("label") for c in conditions]
        z0 = None
        if masks is not None:
            z0 = torch.stack([torch.randn(self.config.latent_dim, generator=g, device=self.device)
                              for g in sample_generators(seeds, self.device)])  # (B, Z)
        results, scores, labels = [], [], []
        for y in self._candidate_labels(asked):
            image, nats = self._fit(images, masks, y, z0, options.iterations)
            results.append(image)
            scores.append(nats)
            labels.append(y)
        best = torch.stack(scores).argmin(0)  # (B,): the label whose fit is best, per row
        rows = torch.arange(images.shape[0], device=images.device)
        out = tensor_to_images(torch.stack(results)[best, rows])
        if labels[0] is not None:
            chosen = torch.stack(labels)[best, rows].tolist()
            for image, label in zip(out, chosen):
                image.info["label"] = int(label)
        return out

    def best_labels(self, images: torch.Tensor) -> torch.Tensor:
        """The class of each image ``(N, C, S, S)`` under which its ELBO is best ``(N,)``
        (a conditional VAE used as a classifier; ``genkit encode`` without ``--label``)."""
        with self.inference():
            candidates = self._candidate_labels([None] * images.shape[0])
            nats = torch.stack([self._fit(images, None, y, None, 1)[1] for y in candidates])
            return nats.argmin(0)

    def _candidate_labels(self, asked: list[int | None]) -> list[torch.Tensor | None]:
        """The label rows to try: the asked labels; where none was asked, every class."""
        k = self.config.num_classes
        if not k:
            return [None]
        classes = range(k) if any(a is None for a in asked) else range(1)
        return [torch.tensor([c if a is None else a for a in asked], dtype=torch.long,
                             device=self.device) for c in classes]

    def _fit(self, images: torch.Tensor, masks: torch.Tensor | None, labels: torch.Tensor | None,
             z0: torch.Tensor | None, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The edit under ``labels`` and its negative ELBO of the known pixels ``(B,)``."""
        keep = None if masks is None else 1 - masks
        x = images
        if masks is not None:  # the hole starts as the prior sample of the row's seed
            x = keep * images + masks * self.decoder.to_image(self.decoder(z0, labels))
        for _ in range(iterations if masks is not None else 1):
            mean, logvar = self.encoder(x, labels)  # (B, Z) each
            output = self.decoder(mean, labels)
            rebuilt = self.decoder.to_image(output)  # (B, C, S, S)
            x = rebuilt if masks is None else keep * images + masks * rebuilt
        c = self.config
        nats = reconstruction_nats(output.float(), images.float(), c.likelihood, c.sigma, keep)
        return x, nats + kl_nats(mean.float(), logvar.float())
