"""Diffusion edits: SDEdit's two ends (strength 0 is the input, strength 1 is sampling),
inpainting that keeps the known pixels with every scheduler and with RePaint, the label a
conditional model infers, per-seed determinism, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from genkit_diffusion.edit_pipelines import PipelineEditing
from genkit_diffusion.editing import DiffusionEditing
from genkit_diffusion.generator import DiffusionGenerator
from genkit_diffusion.pipelines import PipelineGenerator
from genkit_diffusion.sampler import SCHEDULERS
from PIL import Image

import genkit
from genkit.errors import GenkitError

TINY = {"image_size": 8, "block_out_channels": (8, 16), "norm_num_groups": 4}
FAST = {"steps": 4}


def tiny(**config) -> DiffusionGenerator:
    torch.manual_seed(0)
    return genkit.create("diffusion", **{**TINY, **config})


@pytest.fixture(scope="module")
def plain():
    return tiny()


@pytest.fixture(scope="module")
def conditional():
    return tiny(num_classes=10)


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


def test_the_diffusion_family_edits():
    assert issubclass(DiffusionGenerator, DiffusionEditing)
    assert issubclass(PipelineGenerator, PipelineEditing)
    assert DiffusionGenerator.edit_tasks == ("img2img", "inpaint")


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_strength_0_is_the_input_and_strength_1_is_sampling(plain, images, scheduler):
    unchanged = plain.edit(images, task="img2img", strength=0.0, scheduler=scheduler, **FAST)
    assert np.array_equal(pixels(unchanged), pixels(images))
    edited = plain.edit(images, task="img2img", strength=1.0, seed=5, scheduler=scheduler, **FAST)
    sampled = plain.sample(3, seed=5, scheduler=scheduler, **FAST)
    assert np.abs(pixels(edited) - pixels(sampled)).max() <= 1
    halfway = plain.edit(images, task="img2img", strength=0.5, seed=5, scheduler=scheduler,
                         **FAST)
    assert not np.array_equal(pixels(halfway), pixels(images))


def test_strength_1_with_a_label_is_conditional_sampling(conditional, images):
    edited = conditional.edit(images, task="img2img", strength=1.0, seed=2, label=7, **FAST)
    sampled = conditional.sample(3, seed=2, label=7, **FAST)
    assert np.abs(pixels(edited) - pixels(sampled)).max() <= 1


@pytest.mark.parametrize("method", [*(("replace", s) for s in sorted(SCHEDULERS)),
                                    ("repaint", "ddim")])
def test_inpainting_keeps_the_known_pixels_exactly(plain, images, method):
    inpaint, scheduler = method
    out = plain.edit(images, task="inpaint", masks=mask(), seed=1, inpaint=inpaint,
                     scheduler=scheduler, jump_length=2, jump_n_sample=2, **FAST)
    keep = np.asarray(mask()) == 0
    assert np.array_equal(pixels(out)[:, keep], pixels(images)[:, keep])
    assert not np.array_equal(pixels(out)[:, ~keep], pixels(images)[:, ~keep])


def test_edits_depend_only_on_seed_and_input(conditional, images):
    kwargs = {"task": "inpaint", "masks": mask(), "seed": 4, **FAST}
    whole = conditional.edit(images, batch_size=3, **kwargs)
    single = conditional.edit(images, batch_size=1, **kwargs)
    assert np.abs(pixels(whole) - pixels(single)).max() <= 2
    first = conditional.edit(images[:1], **kwargs)
    assert np.abs(pixels(whole[:1]) - pixels(first)).max() <= 2
    assert not np.array_equal(pixels(whole), pixels(conditional.edit(images, **{**kwargs,
                                                                               "seed": 5})))


def test_a_conditional_model_infers_the_label_of_the_kept_pixels(conditional, images):
    inferred = conditional.edit(images, task="inpaint", masks=mask(), **FAST)
    assert all(0 <= im.info["label"] < 10 for im in inferred)
    asked = conditional.edit(images, task="inpaint", masks=mask(), label=4, **FAST)
    assert [im.info["label"] for im in asked] == [4, 4, 4]
    null = conditional.edit(images, task="inpaint", masks=mask(), infer_label=False, **FAST)
    assert all("label" not in im.info for im in null)


@pytest.mark.parametrize("model, kwargs, fragment", [
    ("plain", {"task": "inpaint", "inpaint": "repaint", "strength": 0.5}, "repaint starts from noise"),
    ("plain", {"task": "img2img", "trajectory": "t.gif"}, "are sampling options"),
    ("plain", {"task": "img2img", "guidance_scale": 3.0}, "needs a class-conditional model"),
    ("plain", {"task": "img2img", "label": 1}, "does not take a label"),
    ("plain", {"task": "inpaint", "inpaint": "blend"}, "unknown inpaint method 'blend'"),
    ("plain", {"task": "reconstruct"}, "does not do --task reconstruct"),
    ("conditional", {"task": "img2img", "label": 10}, "label 10 is out of range"),
])
def test_refusals_are_one_line(request, images, model, kwargs, fragment):
    generator = request.getfixturevalue(model)
    masks = mask() if kwargs["task"] == "inpaint" else None
    with pytest.raises(GenkitError) as info:
        generator.edit(images, masks=masks, **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------- text-to-image models
@pytest.fixture(scope="module")
def text_to_image(tmp_path_factory):
    """A tiny random Stable Diffusion pipeline: as a foreign directory and as a base."""
    from genkit_diffusion.testing import tiny_text_to_image

    path = tiny_text_to_image(tmp_path_factory.mktemp("sd"), image_size=8, latent_down=1)
    return {"foreign": genkit.load(path, plugin="diffusion", device="cpu"),
            "base": genkit.create("diffusion", base=str(path))}


@pytest.mark.parametrize("kind", ["foreign", "base"])
def test_text_to_image_models_edit_through_diffusers_pipelines(text_to_image, kind):
    g = text_to_image[kind]
    rgb = [Image.fromarray((np.random.default_rng(i).random((8, 8, 3)) * 255).astype(np.uint8))
           for i in range(3)]
    kwargs = {"prompt": "a red square", "seed": 1, "steps": 4}
    varied = g.edit(rgb, task="img2img", strength=0.5, **kwargs)
    alone = g.edit(rgb, task="img2img", strength=0.5, batch_size=1, **kwargs)
    assert np.abs(pixels(varied) - pixels(alone)).max() <= 2
    assert np.array_equal(pixels(g.edit(rgb, task="img2img", strength=0.0, **kwargs)), pixels(rgb))
    filled = g.edit(rgb, task="inpaint", masks=mask(), **kwargs)
    keep = np.asarray(mask()) == 0
    assert np.array_equal(pixels(filled)[:, keep], pixels(rgb)[:, keep])
    with pytest.raises(GenkitError, match="does not take a label"):
        g.edit(rgb, task="img2img", label=1)
