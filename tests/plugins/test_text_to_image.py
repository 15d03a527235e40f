"""Text-to-image fine-tuning of a small Stable Diffusion pipeline built here from scratch
(``genkit_diffusion.testing.tiny_text_to_image``) on captioned images (imagefolder
``metadata.jsonl``): held-out loss falls, samples follow ``--prompt`` and depend only on the
seed; full checkpoints open as plain pipelines, LoRA adapters with ``load_lora_weights``,
and ``export --merge`` gives a plain pipeline with the same samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from genkit_diffusion.testing import tiny_text_to_image
from PIL import Image

import genkit
from genkit.cli import cli
from genkit.errors import ConfigError, DataError
from genkit.seeding import sample_seed

TRAIN = dict(batch_size=16, device="cpu", progress=False, log_with="none", ema_decay=0.0,
             lr_schedule="constant")
SAMPLE = dict(steps=12, guidance_scale=7.5, scheduler="ddim")  # the pipelines' own
COLOURS = {"red": 0, "blue": 2}


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)


def pixels(images):
    return np.stack([np.asarray(im, dtype=np.float64) for im in images])


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    """64 8x8 images, half red and half blue, captioned "red" / "blue" in metadata.jsonl."""
    folder = tmp_path_factory.mktemp("captioned")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(64):
        name = "red" if i % 2 == 0 else "blue"
        array = np.zeros((8, 8, 3), np.uint8)
        array[..., COLOURS[name]] = 255 - rng.integers(0, 2, (8, 8), dtype=np.uint8)
        Image.fromarray(array).save(folder / f"{i:02d}.png")
        rows.append({"file_name": f"{i:02d}.png", "text": name})
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_text_to_image(tmp_path_factory.mktemp("sd"), widths=(16, 32), text_width=16)


@pytest.fixture(scope="module")
def full(base, captioned, tmp_path_factory):
    """The whole UNet fine-tuned on the captioned images (caption dropout 0.2)."""
    out = tmp_path_factory.mktemp("t2i-full")
    g = genkit.create("diffusion", base=str(base), caption_dropout=0.2)
    with g.inference():
        before = g.evaluate(genkit.load_data(f"folder:{captioned}", split="test"))["val_loss"]
    report = g.train(f"folder:{captioned}", steps=240, lr=2e-3, out=out, **TRAIN)
    return g, before, report, out


def references(g) -> dict[str, np.ndarray]:
    """Each colour as the pipeline's own VAE returns it (encoded, decoded): (8, 8, 3)."""
    refs = {}
    for name, channel in COLOURS.items():
        x = -torch.ones(1, 3, 8, 8)
        x[:, channel] = 1.0
        with torch.no_grad():
            decoded = g.pipe.vae.decode(g.pipe.vae.encode(x).latent_dist.mean).sample
        refs[name] = ((decoded.clamp(-1, 1) + 1) * 127.5)[0].permute(1, 2, 0).numpy()
    return refs


def test_fine_tuning_lowers_held_out_loss_and_samples_follow_the_prompt(full, tmp_path):
    g, before, report, out = full
    assert report.eval["val_loss"] < 0.6 * before
    assert (out / "model" / "model_index.json").is_file()  # a whole pipeline
    refs = references(g)
    drawn = {}
    for prompt in COLOURS:
        result = run("sample", "--checkpoint", out, "--prompt", prompt, "-n", 8, "--steps", 12,
                     "--guidance-scale", 7.5, "--out", tmp_path / prompt, "--no-progress")
        assert result.exit_code == 0, result.output
        drawn[prompt] = pixels(Image.open(p) for p in sorted((tmp_path / prompt).glob("0*.png")))
    # where each sample lies between the two colours (+1 red, -1 blue), seed by seed
    middle, axis = (refs["red"] + refs["blue"]) / 2, (refs["red"] - refs["blue"]) / 2
    score = {p: ((im - middle) * axis).sum((1, 2, 3)) / (axis * axis).sum()
             for p, im in drawn.items()}
    assert score["red"].mean() > 0.2 and score["blue"].mean() < -0.2, score
    assert (score["red"] > score["blue"]).all(), score  # same seed, the prompt moves it
    again = run("sample", "--checkpoint", out, "--prompt", "red", "-n", 8, "--steps", 12,
                "--guidance-scale", 7.5, "--out", tmp_path / "again", "--no-progress")
    assert again.exit_code == 0
    for a, b in zip(sorted((tmp_path / "red").glob("0*.png")),
                    sorted((tmp_path / "again").glob("0*.png"))):
        assert a.read_bytes() == b.read_bytes()  # deterministic per seed
    assert np.abs(drawn["red"][:4] - drawn["red"][4:]).mean() > 0  # seeds differ


def test_a_full_checkpoint_is_a_plain_pipeline_with_genkit_samples(full):
    from diffusers import StableDiffusionPipeline

    _, _, _, out = full
    pipe = StableDiffusionPipeline.from_pretrained(out / "model", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt=["blue"] * 3, num_inference_steps=12, guidance_scale=7.5,
                  generator=[torch.Generator().manual_seed(sample_seed(5, i)) for i in range(3)])
    ours = genkit.load(out, device="cpu").sample(3, seed=5, prompt="blue", **SAMPLE)
    assert np.abs(pixels(ours) - pixels(theirs.images)).max() <= 1
    alone = genkit.load(out, device="cpu").sample(3, seed=5, prompt="blue", batch_size=1, **SAMPLE)
    assert np.abs(pixels(ours) - pixels(alone)).max() <= 2  # not the batch's


@pytest.fixture(scope="module")
def lora(base, captioned, tmp_path_factory):
    out = tmp_path_factory.mktemp("t2i-lora")
    g = genkit.create("diffusion", base=str(base), lora_rank=4, caption_dropout=0.2)
    with g.inference():
        before = g.evaluate(genkit.load_data(f"folder:{captioned}", split="test"))["val_loss"]
    report = g.train(f"folder:{captioned}", steps=40, lr=1e-2, out=out, **TRAIN)
    return g, before, report, out


def test_a_lora_adapter_loads_with_diffusers_load_lora_weights(lora, base):
    from diffusers import StableDiffusionPipeline

    g, before, report, out = lora
    model = out / "model"
    assert sorted(p.name for p in model.iterdir()) == [
        "README.md", "genkit.json", "pytorch_lora_weights.safetensors"]
    assert report.eval["val_loss"] < before
    trainable = [n for n, p in g.unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable) and g.ema is None
    loaded = genkit.load(out, device="cpu")
    ours = loaded.sample(3, seed=2, prompt="red", **SAMPLE)
    pipe = StableDiffusionPipeline.from_pretrained(base, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    generators = [torch.Generator().manual_seed(sample_seed(2, i)) for i in range(3)]
    plain = pipe(prompt=["red"] * 3, num_inference_steps=12, guidance_scale=7.5,
                 generator=generators).images
    pipe.load_lora_weights(model)
    generators = [torch.Generator().manual_seed(sample_seed(2, i)) for i in range(3)]
    theirs = pipe(prompt=["red"] * 3, num_inference_steps=12, guidance_scale=7.5,
                  generator=generators).images
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1
    assert np.abs(pixels(ours) - pixels(plain)).max() > 2  # the adapter acts
    unscaled = loaded.sample(3, seed=2, prompt="red", lora_scale=0.0, **SAMPLE)
    assert np.abs(pixels(unscaled) - pixels(plain)).max() <= 1
    card = (model / "README.md").read_text()
    assert "pipe.load_lora_weights" in card and "pipeline_tag: text-to-image" in card


def test_the_merged_lora_export_is_a_plain_pipeline(lora, tmp_path):
    from diffusers import StableDiffusionPipeline

    _, _, _, out = lora
    ours = genkit.load(out, device="cpu").sample(2, seed=4, prompt="blue", **SAMPLE)
    assert run("export", "--merge", out, tmp_path / "merged").exit_code == 0
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "merged", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt=["blue"] * 2, num_inference_steps=12, guidance_scale=7.5,
                  generator=[torch.Generator().manual_seed(sample_seed(4, i)) for i in range(2)])
    assert np.abs(pixels(ours) - pixels(theirs.images)).max() <= 2


def test_text_to_image_bad_input(base, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)).save(folder / f"{i}.png")
    result = run("train", "--plugin", "diffusion", "--out", tmp_path / "r", "--data",
                 f"folder:{folder}", "--set", f"base={base}", "--steps", "1")
    assert result.exit_code == 2 and "needs captioned images" in result.output, result.output
    g = genkit.create("diffusion", base=str(base))
    assert g.accepted_conditions() == ("prompt",)
    with pytest.raises(ConfigError, match="trajectory"):
        g.sample(1, prompt="red", trajectory=str(tmp_path / "t.gif"), steps=2)
    with pytest.raises(DataError, match="needs captioned images"):
        g.make_dataset(genkit.load_data("digits"), "train")
    assert Path(base, "model_index.json").is_file()


def test_a_resumed_lora_run_ends_with_the_same_adapter(captioned, tmp_path):
    from safetensors.torch import load_file

    small = tiny_text_to_image(tmp_path)  # the default, smaller UNet: this is about resume
    settings = dict(base=str(small), lora_rank=4)
    train = dict(TRAIN, lr=1e-2, batch_size=8)
    data = f"folder:{captioned}"
    genkit.create("diffusion", **settings).train(data, steps=4, out=tmp_path / "whole", **train)
    genkit.create("diffusion", **settings).train(data, steps=2, out=tmp_path / "parts",
                                                 checkpoint_every=2, **train)
    genkit.create("diffusion", **settings).train(data, steps=4, out=tmp_path / "parts",
                                                 resume=True, **train)
    name = "model/pytorch_lora_weights.safetensors"
    whole, parts = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "parts" / name))
    assert whole.keys() == parts.keys() and all(torch.equal(whole[k], parts[k]) for k in whole)
