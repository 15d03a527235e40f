"""GAN edits: the glue over ``GANGenerator.project(images, steps, seed) -> latents``.

The projection itself belongs to the GAN's own API; here a plain one (Adam on z from a
seeded start) stands in for it, so the glue is tested on its own: reconstruction renders
the projected latents, inpainting keeps the known pixels, each row depends on its seed
only, a masked projection is used when ``project`` takes masks, and a GAN without
``project`` says so in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from genkit_gan.editing import GANEditing
from genkit_gan.generator import GANGenerator
from PIL import Image

import genkit
from genkit.errors import GenkitError
from genkit.plugin import sample_seed, tensor_to_images

TINY = {"image_size": 8, "latent_dim": 8, "base_width": 8}


def project(self, images, steps, seed, masks=None):
    """A stand-in projection: Adam on z, from z drawn from ``seed``, onto the (kept) pixels."""
    self.projected_with_masks = masks is not None
    gen = torch.Generator().manual_seed(int(seed))
    weights = torch.ones_like(images) if masks is None else masks
    with torch.inference_mode(False), torch.enable_grad():
        z = torch.randn(images.shape[0], self.config.latent_dim, generator=gen).requires_grad_()
        opt = torch.optim.Adam([z], lr=0.1)
        for _ in range(steps):
            loss = (((self.generator(z, None) - images) * weights) ** 2).sum()
            (z.grad,) = torch.autograd.grad(loss, z)
            opt.step()
    return z.detach()


#: the GAN with the editing glue (its own base once GANGenerator lists it)
BASES = (GANGenerator,) if issubclass(GANGenerator, GANEditing) else (GANEditing, GANGenerator)


class EditGAN(*BASES):
    def project(self, images, steps, seed):
        return project(self, images, steps, seed)


class MaskedEditGAN(*BASES):
    project = project


def tiny(cls=EditGAN):
    torch.manual_seed(0)
    return cls.named("gan", **TINY)


@pytest.fixture(scope="module")
def images():
    test = genkit.load_data("digits", "test")
    return [Image.fromarray(a[..., 0], "L") for a in test.images[:3]]


def mask() -> Image.Image:
    m = np.zeros((8, 8), np.uint8)
    m[2:6, 2:6] = 255
    return Image.fromarray(m, "L")


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


def test_reconstruct_renders_the_projected_latents(images):
    g = tiny()
    out = g.edit(images, task="reconstruct", seed=1, steps=5)
    x = torch.tensor(pixels(images), dtype=torch.float32)[:, None] / 127.5 - 1  # (3, 1, 8, 8)
    z = torch.cat([g.project(x[i:i + 1], 5, sample_seed(1, i)) for i in range(3)])
    with g.inference():
        expected = tensor_to_images(g.generator(z, None))
    assert np.abs(pixels(out) - pixels(expected)).max() <= 1


@pytest.mark.parametrize("cls", [EditGAN, MaskedEditGAN])
def test_inpainting_keeps_known_pixels_and_depends_on_the_seed_only(images, cls):
    g = tiny(cls)
    kwargs = {"task": "inpaint", "masks": mask(), "steps": 3, "iterations": 2}
    out = g.edit(images, seed=2, **kwargs)
    assert g.projected_with_masks == (cls is MaskedEditGAN)
    keep = np.asarray(mask()) == 0
    assert np.array_equal(pixels(out)[:, keep], pixels(images)[:, keep])
    assert np.abs(pixels(out) - pixels(g.edit(images, seed=2, batch_size=1, **kwargs))).max() <= 2
    assert not np.array_equal(pixels(out), pixels(g.edit(images, seed=3, **kwargs)))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"task": "img2img"}, "does not do --task img2img; it does: reconstruct, inpaint"),
    ({"task": "reconstruct", "strength": 0.5}, "take no --strength"),
    ({"task": "reconstruct", "steps": 0}, "steps must be at least 1"),
])
def test_refusals_are_one_line(images, kwargs, fragment):
    with pytest.raises(GenkitError) as info:
        tiny().edit(images, **kwargs)
    assert fragment in str(info.value)


def test_a_gan_without_projection_says_so(images):
    class NoProjection(*BASES):
        project = None

    with pytest.raises(GenkitError, match="has no project\\(\\) yet"):
        tiny(NoProjection).edit(images, task="reconstruct")
