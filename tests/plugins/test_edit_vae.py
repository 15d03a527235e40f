"""VAE edits: reconstruction is the VAE's own ``reconstruct``, inpainting keeps the known
pixels and depends on the seed only, a conditional VAE infers the label it edits under,
and ``genkit encode`` / ``genkit decode`` carry latents through ``.npy`` files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import genkit
from genkit.cli.group import GenkitGroup
from genkit.errors import GenkitError

TINY = {"image_size": 8, "latent_dim": 4, "base_width": 8}


def tiny(**config):
    torch.manual_seed(0)
    return genkit.create("vae", **{**TINY, **config})


@pytest.fixture(scope="module")
def images():
    test = genkit.load_data("digits", "test")
    return [Image.fromarray(a[..., 0], "L") for a in test.images[:4]]


def mask() -> Image.Image:
    m = np.zeros((8, 8), np.uint8)
    m[:, :4] = 255  # the left half
    return Image.fromarray(m, "L")


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


def test_reconstruct_is_the_vae_reconstruction(images):
    g = tiny()
    assert np.array_equal(pixels(g.edit(images, task="reconstruct")), pixels(g.reconstruct(images)))


@pytest.fixture(scope="module")
def trained():
    g = tiny()
    g.train("digits", steps=40, batch_size=32, lr=3e-3, device="cpu", progress=False,
            log_with="none")
    return g


def test_inpainting_keeps_known_pixels_and_depends_on_the_seed_only(trained, images):
    kwargs = {"task": "inpaint", "masks": mask(), "iterations": 1}
    out = trained.edit(images, seed=3, **kwargs)
    keep = np.asarray(mask()) == 0
    assert np.array_equal(pixels(out)[:, keep], pixels(images)[:, keep])
    one_by_one = trained.edit(images, seed=3, batch_size=1, **kwargs)
    assert np.abs(pixels(out) - pixels(one_by_one)).max() <= 2
    other = trained.edit(images, seed=4, **kwargs)
    assert not np.array_equal(pixels(out), pixels(other))


def test_a_conditional_vae_infers_the_label_or_takes_the_asked_one(images):
    g = tiny(num_classes=3)
    out = g.edit(images, task="reconstruct")
    assert all(im.info["label"] in (0, 1, 2) for im in out)
    asked = g.edit(images, task="inpaint", masks=mask(), labels=[2, 1], iterations=2)
    assert [im.info["label"] for im in asked] == [2, 1, 2, 1]
    best = g.best_labels(torch.zeros(2, 1, 8, 8))
    assert best.shape == (2,) and int(best.max()) < 3


@pytest.mark.parametrize("kwargs, fragment", [
    ({"task": "img2img"}, "does not do --task img2img; it does: reconstruct, inpaint"),
    ({"task": "reconstruct", "strength": 0.3}, "take no --strength"),
    ({"task": "inpaint", "iterations": 0}, "iterations must be at least 1"),
])
def test_refusals_are_one_line(images, kwargs, fragment):
    masks = mask() if kwargs["task"] == "inpaint" else None
    with pytest.raises(GenkitError) as info:
        tiny().edit(images, masks=masks, **kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("num_classes", [0, 3])
def test_encode_and_decode_round_trip_through_npy(tmp_path, images, num_classes):
    checkpoint = tiny(num_classes=num_classes).save(tmp_path / "model")
    folder = tmp_path / "in"
    folder.mkdir()
    for i, im in enumerate(images):
        im.save(folder / f"{i}.png")
    from genkit_vae.commands import decode, encode

    group = GenkitGroup(name="genkit", commands={"encode": encode, "decode": decode})
    run = CliRunner().invoke
    common = ["--checkpoint", str(checkpoint), "--device", "cpu"]
    result = run(group, ["encode", *common, "--images", str(folder), "--out", str(tmp_path / "z.npy")])
    assert result.exit_code == 0, result.output
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (4, 4) and z.dtype == np.float32
    assert (tmp_path / "z.labels.npy").is_file() == bool(num_classes)
    again = run(group, ["encode", *common, "--images", str(folder), "--out", str(tmp_path / "z.npy")])
    assert again.exit_code == 2 and "already exists" in again.output
    result = run(group, ["decode", *common, "--latents", str(tmp_path / "z.npy"),
                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "000000.png", "000001.png", "000002.png", "000003.png", "grid.png"]
    busy = run(group, ["decode", *common, "--latents", str(tmp_path / "z.npy"),
                     "--out", str(tmp_path / "out")])
    assert busy.exit_code == 2 and "new or empty folder" in busy.output
