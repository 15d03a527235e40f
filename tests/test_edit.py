"""Editing images, the core half: the checks before anything runs, per-seed determinism,
the resumable folder ``edit_to`` writes (manifest naming inputs and masks, contact
sheet), the ``genkit edit`` command, and families that cannot edit saying so."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from toy import ToyGenerator

import genkit
from genkit.cli import cli
from genkit.errors import GenkitError, SamplingError
from genkit.plugin import sample_generators, tensor_to_images
from genkit.sample.writer import read_manifest_records


class EditToy(ToyGenerator):
    """The toy generator with an edit hook: img2img mixes in noise from the row's seed by
    ``strength``; inpaint fills the hole with that noise (and keeps the rest)."""

    edit_tasks = ("img2img", "inpaint")

    def edit_image_format(self):
        return 1, self.config.image_size

    def edit_batch(self, images, masks, seeds, conditions, options, task, strength):
        gens = sample_generators(seeds, self.device)
        noise = torch.stack([torch.rand(images.shape[1:], generator=g) * 2 - 1 for g in gens])
        s = 0.5 if strength is None else strength
        x = (1 - s) * images + s * noise if masks is None else masks * noise + (1 - masks) * images
        return tensor_to_images(x)


@pytest.fixture
def toy():
    return EditToy.named("toy", image_size=8)


def digits(n=6, size=8):
    test = genkit.load_data("digits", "test")
    images = [Image.fromarray(a[..., 0], "L") for a in test.images[:n]]
    return images if size == 8 else [im.resize((size, size)) for im in images]


def centre_mask(size=8):
    m = np.zeros((size, size), np.uint8)
    m[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    return Image.fromarray(m, "L")


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


@pytest.fixture
def folders(tmp_path):
    """A folder of 5 digits and a folder of their masks, named alike."""
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    for i, im in enumerate(digits(5)):
        im.save(tmp_path / "in" / f"d{i}.png")
        centre_mask().save(tmp_path / "masks" / f"d{i}.png")
    return tmp_path


# ---------------------------------------------------------------------------- determinism
def test_edit_i_depends_only_on_seed_i_and_input_i(toy):
    images = digits(6)
    whole = toy.edit(images, task="img2img", strength=0.5, seed=3, batch_size=4)
    alone = [toy.edit(images[i:i + 1], task="img2img", strength=0.5, seed=3)[0] for i in (0,)]
    assert np.array_equal(pixels(whole[:1]), pixels(alone))
    again = toy.edit(images, task="img2img", strength=0.5, seed=3, batch_size=1)
    assert np.abs(pixels(whole) - pixels(again)).max() <= 2
    other = toy.edit(images, task="img2img", strength=0.5, seed=4)
    assert not np.array_equal(pixels(whole), pixels(other))


def test_inpainting_keeps_the_pixels_outside_the_mask(toy):
    images = digits(4)
    out = toy.edit(images, task="inpaint", masks=centre_mask(), seed=0)
    keep = np.asarray(centre_mask()) == 0
    assert np.array_equal(pixels(out)[:, keep], pixels(images)[:, keep])
    assert not np.array_equal(pixels(out)[:, ~keep], pixels(images)[:, ~keep])


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, fragment", [
    ({"task": "restyle"}, "unknown --task 'restyle'; use one of img2img, inpaint, reconstruct"),
    ({"task": "reconstruct"}, "does not do --task reconstruct; it does: img2img, inpaint"),
    ({"task": "img2img", "strength": 1.5}, "--strength must be a number between 0 and 1"),
    ({"task": "img2img", "strength": -0.1}, "--strength must be a number between 0 and 1"),
    ({"task": "img2img", "strength": math.nan}, "--strength must be a number between 0 and 1"),
    ({"task": "img2img", "strength": True}, "--strength must be a number between 0 and 1"),
    ({"task": "inpaint"}, "--task inpaint needs --masks"),
    ({"task": "img2img", "masks": "MASK"}, "--masks are for --task inpaint"),
    ({"task": "inpaint", "masks": "BIG"}, "is 9x9 but its image <image 0> is 8x8"),
    ({"task": "inpaint", "masks": "GREY"}, "is not black and white (3 grey levels, such as 128)"),
    ({"task": "inpaint", "masks": "TWO"}, "2 masks for 3 images"),
    ({"task": "img2img", "label": 3}, "does not take a label"),
    ({"task": "img2img", "per_condition": 2}, "--per-condition is for sampling"),
    ({"task": "img2img", "stepz": 2}, "unknown toy sampling option key 'stepz'"),
])
def test_bad_requests_are_one_clear_line(toy, kwargs, fragment):
    grey = np.zeros((8, 8), np.uint8)
    grey[0, :2] = (128, 255)
    masks = {"MASK": centre_mask(), "BIG": centre_mask(9), "GREY": Image.fromarray(grey, "L"),
             "TWO": [centre_mask()] * 2}
    if isinstance(kwargs.get("masks"), str):
        kwargs = {**kwargs, "masks": masks[kwargs["masks"]]}
    with pytest.raises(GenkitError) as info:
        toy.edit(digits(3), **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_other_sizes_and_modes_are_converted_with_a_note(toy):
    rgb = [im.convert("RGB").resize((12, 12)) for im in digits(2)]
    with pytest.warns(UserWarning) as notes:
        out = toy.edit(rgb, task="img2img", strength=0.0)
    lines = [str(n.message) for n in notes]
    assert any("2 of 2 images are 12x12, not the model's 8x8: resized" in line for line in lines)
    assert any("2 of 2 images converted to grey" in line for line in lines)
    assert [im.size for im in out] == [(8, 8)] * 2


def test_files_that_are_not_images_and_empty_folders_are_refused(toy, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(SamplingError, match="holds no image files"):
        toy.edit(tmp_path / "empty")
    with pytest.raises(SamplingError, match="cannot read image .*bad.png"):
        toy.edit(tmp_path / "bad.png")
    with pytest.raises(SamplingError, match="no such file or folder"):
        toy.edit(tmp_path / "missing")


def test_masks_pair_with_images_by_file_name(toy, folders):
    (folders / "masks" / "d3.png").unlink()
    with pytest.raises(SamplingError, match=r"no mask for .*d3.png in .*masks \(masks pair"):
        toy.edit(folders / "in", task="inpaint", masks=folders / "masks")


# ------------------------------------------------------------------------------ the folder
def test_edit_to_writes_a_resumable_folder_naming_inputs_and_masks(toy, folders):
    out = folders / "out"
    report = toy.edit_to(out, folders / "in", task="inpaint", masks=folders / "masks", seed=1,
                         batch_size=2, progress=False)
    assert (report.written, report.skipped) == (5, 0) and "wrote 5 edits" in report.summary()
    records = read_manifest_records(out)
    assert [records[i]["input"] for i in range(5)] == [str(folders / "in" / f"d{i}.png")
                                                       for i in range(5)]
    assert records[4]["mask"] == str(folders / "masks" / "d4.png")
    run = json.loads((out / "run.json").read_text())
    assert run["task"] == "inpaint" and run["n"] == 5 and len(run["inputs"]) == 64
    with Image.open(out / "grid.png") as sheet:  # before | masked | after, 5 rows
        assert sheet.width < sheet.height
    first = {i: (out / records[i]["file"]).read_bytes() for i in records}
    for i in (3, 4):  # a crash after 3 edits: their records and files never came
        (out / records[i]["file"]).unlink()
    lines = (out / "manifest.jsonl").read_text().splitlines()
    (out / "manifest.jsonl").write_text("\n".join(lines[:3]) + "\n")
    again = toy.edit_to(out, folders / "in", task="inpaint", masks=folders / "masks", seed=1,
                        batch_size=2, progress=False)
    assert (again.written, again.skipped) == (2, 3)
    assert {i: (out / r["file"]).read_bytes() for i, r in read_manifest_records(out).items()} == first


def test_edit_to_refuses_another_run_and_other_files(toy, folders):
    out = folders / "out"
    toy.edit_to(out, folders / "in", task="img2img", strength=0.3, progress=False)
    with pytest.raises(SamplingError, match="different run .*strength"):
        toy.edit_to(out, folders / "in", task="img2img", strength=0.4, progress=False)
    assert toy.edit_to(out, folders / "in", task="img2img", strength=0.4, overwrite=True,
                       progress=False).written == 5
    (folders / "in" / "d0.png").write_bytes((folders / "in" / "d1.png").read_bytes())
    with pytest.raises(SamplingError, match="different run .*inputs"):
        toy.edit_to(out, folders / "in", task="img2img", strength=0.4, progress=False)
    with pytest.raises(SamplingError, match="holds files genkit did not write"):
        toy.edit_to(folders / "masks", folders / "in", task="img2img", progress=False)


def test_a_refused_request_leaves_no_folder(toy, folders):
    with pytest.raises(SamplingError):
        toy.edit_to(folders / "out", folders / "in", task="img2img", strength=2, progress=False)
    assert not (folders / "out").exists()


# --------------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def vae_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    g = genkit.create("vae", image_size=8, latent_dim=4, base_width=8)
    return g.save(tmp_path_factory.mktemp("vae") / "model")


def _cli(*args):
    return CliRunner().invoke(cli, ["edit", *map(str, args)], catch_exceptions=False)


def test_genkit_edit_writes_and_resumes_a_folder(vae_checkpoint, folders):
    args = ["--checkpoint", vae_checkpoint, "--task", "inpaint", "--images", folders / "in",
            "--masks", folders / "masks", "--out", folders / "out", "--device", "cpu",
            "--no-progress", "--iterations", "3"]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    assert "wrote 5 edits" in result.output and "grid:" in result.output
    records = read_manifest_records(folders / "out")
    assert records[0]["input"].endswith("d0.png") and records[0]["mask"].endswith("d0.png")
    assert sorted(p.name for p in (folders / "out").iterdir() if p.name != ".genkit.lock") == [
        *(f"{i:06d}.png" for i in range(5)), "grid.png", "manifest.jsonl", "run.json"]
    again = _cli(*args)
    assert "wrote 0 edits, skipped 5 already done" in again.output


@pytest.mark.parametrize("extra, fragment", [
    (["--task", "img2img"], "does not do --task img2img; it does: reconstruct, inpaint"),
    (["--task", "reconstruct", "--strength", "0.5"], "take no --strength"),
    (["--task", "reconstruct", "--iterations", "0"], "iterations must be at least 1"),
    (["--task", "inpaint", "--masks", "{tmp}/grey.png"], "is not black and white"),
    (["--task", "warp"], "Invalid value for '--task'"),
])
def test_genkit_edit_errors_are_one_line_exit_2(vae_checkpoint, folders, extra, fragment):
    grey = np.full((8, 8), 100, np.uint8)
    Image.fromarray(grey, "L").save(folders / "grey.png")
    result = _cli("--checkpoint", vae_checkpoint, "--images", folders / "in" / "d0.png",
                  "--out", folders / "out", "--device", "cpu",
                  *[a.format(tmp=folders) for a in extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and fragment in lines[0], lines
    assert not (folders / "out").exists()


@pytest.mark.parametrize("family", ["diffusion", "vae", "gan", "gpt"])
def test_every_shipped_family_edits_or_says_it_cannot(family):
    g = genkit.load(f"plugins/genkit_{family}/default", device="cpu")
    tasks = g.accepted_edit_tasks()
    task = tasks[-1] if tasks else "inpaint"
    fast = {"diffusion": {"steps": 2}, "vae": {"iterations": 1}, "gan": {"steps": 2}}
    try:
        out = g.edit(digits(2, size=16), task=task, masks=centre_mask(16) if task == "inpaint"
                     else None, **fast.get(family, {}))
    except GenkitError as exc:
        assert any(why in str(exc) for why in ("cannot edit", "no project()", "not supported")), exc
        assert "\n" not in str(exc)
        return
    assert [im.size for im in out] == [(16, 16)] * 2


def test_families_that_cannot_edit_say_so(toy_registry):
    toy = genkit.create("toy")
    with pytest.raises(SamplingError, match="'toy' cannot edit images .*no edit hook"):
        toy.edit(digits(1), task="img2img")
    gpt = genkit.load("plugins/genkit_gpt/default", device="cpu")
    with pytest.raises(SamplingError, match="'gpt' cannot edit images \\(it makes text\\)"):
        gpt.edit(digits(1), task="inpaint", masks=centre_mask())


# -------------------------------------------------------------------------- POST /v1/edit
def _b64(image) -> str:
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def served(vae_checkpoint):
    pytest.importorskip("starlette")
    httpx = pytest.importorskip("httpx")
    from genkit.serve.app import create_app, serve_in_thread
    from genkit.serve.models import ServedModel
    from genkit.serve.schema import Limits

    vae = genkit.load(vae_checkpoint, device="cpu")
    app = create_app({"vae": ServedModel("vae", vae, str(vae_checkpoint))}, Limits(max_n=8))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield vae, http


def test_served_edits_equal_python_edits(served):
    import base64
    import io

    vae, http = served
    images = digits(3)
    reply = http.post("/v1/edit", json={"task": "inpaint", "images": [_b64(i) for i in images],
                                        "masks": _b64(centre_mask()), "seed": 7,
                                        "options": {"iterations": 2}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    local = vae.edit(images, task="inpaint", masks=centre_mask(), seed=7, iterations=2)
    got = [Image.open(io.BytesIO(base64.b64decode(r["image"]))) for r in body["images"]]
    assert np.abs(pixels(got) - pixels(local)).max() <= 2
    assert [r["index"] for r in body["images"]] == [0, 1, 2] and body["notes"] == []


@pytest.mark.parametrize("body, fragment", [
    ({"images": ["AAAA"]}, "'task' is required"),
    ({"task": "reconstruct"}, "'images' is required"),
    ({"task": "reconstruct", "images": ["%%%"]}, "images[0] is not valid base64"),
    ({"task": "reconstruct", "images": ["aGVsbG8="]}, "images[0] is not a readable image"),
    ({"task": "reconstruct", "images": "IMG", "strength": 0.5}, "must be a non-empty list"),
    ({"task": "reconstruct", "images": ["IMG"], "strength": 0.5}, "take no --strength"),
    ({"task": "img2img", "images": ["IMG"]}, "does not do --task img2img"),
    ({"task": "inpaint", "images": ["IMG"], "masks": "GREY"}, "is not black and white"),
    ({"task": "inpaint", "images": ["IMG"], "masks": "BIG"}, "is 9x9 but its image"),
    ({"task": "reconstruct", "images": ["IMG"] * 9}, "more than this server's limit of 8"),
    ({"task": "reconstruct", "images": ["IMG"], "colour": 1}, "unknown field 'colour'"),
])
def test_bad_edit_requests_get_a_400_line(served, body, fragment):
    _, http = served
    grey = np.full((8, 8), 100, np.uint8)
    swap = {"IMG": _b64(digits(1)[0]), "GREY": _b64(Image.fromarray(grey, "L")),
            "BIG": _b64(centre_mask(9))}

    def fill(value):
        return [fill(v) for v in value] if isinstance(value, list) else swap.get(value, value)

    reply = http.post("/v1/edit", json={k: fill(v) for k, v in body.items()})
    assert reply.status_code == 400, reply.text
    message = reply.json()["error"]["message"]
    assert fragment in message and "\n" not in message
