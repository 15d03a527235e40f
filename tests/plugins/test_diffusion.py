"""The diffusion plugin: training lowers the loss, every scheduler samples, per-sample
seeds, class conditions, the checkpoint is a plain diffusers pipeline, foreign pipeline
directories (a tiny text-to-image one built here), the trajectory, clear errors, and the
shipped default model judged by a classifier trained on the real digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from genkit_diffusion.generator import DiffusionGenerator
from genkit_diffusion.pipelines import PipelineGenerator, load_pipeline_dir
from genkit_diffusion.sampler import SCHEDULERS
from PIL import Image

import genkit
from genkit.errors import CheckpointError, ConfigError, SamplingError
from genkit.seeding import sample_seed
from genkit.store.checkpoint import load_checkpoint
from genkit.testing import check_generator

TINY = {"image_size": 8, "block_out_channels": (8, 16), "norm_num_groups": 4}
FAST = {"steps": 4}  # sampling steps for tests of plumbing, not quality
CONFIDENT = 0.8  # top class probability that counts as "recognised"


def tiny(**config) -> DiffusionGenerator:
    torch.manual_seed(0)
    g = genkit.create("diffusion", **{**TINY, **config})
    assert isinstance(g, DiffusionGenerator)
    return g


def pixels(images) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.float64) for im in images])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny class-conditional model trained a few steps, saved as a checkpoint."""
    out = tmp_path_factory.mktemp("diffusion_run")
    g = tiny(num_classes=10, prediction_type="epsilon", beta_schedule="linear")
    report = g.train("digits", steps=30, batch_size=32, lr=3e-3, device="cpu", out=str(out),
                     log_every=5, progress=False, log_with="none")
    return g, report, out / "model"


# --------------------------------------------------------------------------- training
def test_training_lowers_the_loss_and_reports_held_out_loss(trained):
    g, report, _ = trained
    assert report.steps == 30
    assert report.final_loss < 0.5 * report.first_loss
    assert 0 < g.training_summary["eval"]["val_loss"] < report.first_loss


def test_v_prediction_cosine_trains_too():  # the default schedule (the fixture: epsilon)
    g = tiny(prediction_type="v_prediction", beta_schedule="cosine", snr_gamma=None)
    report = g.train("digits", steps=20, batch_size=32, lr=3e-3, device="cpu", log_every=5,
                     progress=False, log_with="none")
    assert report.final_loss < 0.8 * report.first_loss
    assert g.noise_scheduler.config.beta_schedule == "squaredcos_cap_v2"
    assert g.noise_scheduler.config.prediction_type == "v_prediction"


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_match_the_formula_and_train(prediction_type):
    g = tiny(snr_gamma=5.0, prediction_type=prediction_type)
    t = torch.tensor([0, 10, 200, 999])
    abar = g.noise_scheduler.alphas_cumprod[t].double()
    snr = abar / (1 - abar)  # signal-to-noise ratio of each timestep
    expected = snr.clamp(max=5.0) / (snr + 1 if prediction_type == "v_prediction" else snr)
    torch.testing.assert_close(g._snr_weights(t).double(), expected, rtol=1e-5, atol=1e-7)
    assert expected[0] < expected[-1] or prediction_type == "v_prediction"  # easy steps weigh less
    report = g.train("digits", steps=40, batch_size=32, lr=3e-3, device="cpu", log_every=10,
                     progress=False, log_with="none")
    assert report.final_loss < report.first_loss
    with pytest.raises(ConfigError, match="snr_gamma"):
        tiny(snr_gamma=0)


def test_conformance_kit_passes():
    report = check_generator("diffusion", config=TINY, steps=3, sample_options=FAST,
                             bad_configs=[{"image_size": 7}, {"norm_num_groups": 3}])
    assert report is not None


# --------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_scheduler_samples_from_the_same_model(trained, scheduler):
    g, _, _ = trained
    images = g.sample(3, seed=1, scheduler=scheduler, steps=6)
    assert [im.size for im in images] == [(8, 8)] * 3 and {im.mode for im in images} == {"L"}
    array = pixels(images)
    assert array.std() > 1.0  # not blank
    other = pixels(g.sample(3, seed=1, scheduler="ddim" if scheduler != "ddim" else "euler",
                            steps=6))
    assert np.abs(array - other).mean() > 0.5  # the sampler is really swapped


def test_channels_last_gives_the_same_samples_and_saving_still_works(trained, tmp_path):
    g, _, _ = trained
    plain = pixels(g.sample(3, seed=2, **FAST))
    assert np.abs(pixels(g.sample(3, seed=2, channels_last=True, **FAST)) - plain).max() <= 2
    assert g.unet.conv_in.weight.is_contiguous()  # the memory format is restored
    g.save(tmp_path / "after")
    assert (tmp_path / "after" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "dpm++sde"])
def test_sample_i_does_not_depend_on_the_batch(trained, scheduler):
    g, _, _ = trained
    options = {"scheduler": scheduler, "steps": 8, "eta": 1.0 if scheduler == "ddim" else 0.0}
    batched = pixels(g.sample(4, seed=5, batch_size=4, **options))
    alone = pixels(g.sample(4, seed=5, batch_size=1, **options))
    assert np.abs(batched - alone).max() <= 2  # 2/255: batch effects of float math only
    again = pixels(g.sample(4, seed=5, batch_size=4, **options))
    assert np.array_equal(batched, again)
    assert np.abs(batched - pixels(g.sample(4, seed=6, batch_size=4, **options))).mean() > 1


def test_conditional_sampling_follows_labels(trained):
    g, _, _ = trained
    assert g.accepted_conditions() == ("label",)
    images = g.sample(6, seed=0, labels=[2, 7], **FAST)
    assert [im.info["label"] for im in images] == [2, 7, 2, 7, 2, 7]
    with g.sampling_weights():  # the EMA weights, as sample() uses
        same_seed = [g.generate([sample_seed(0, 0)], [{"label": lab}], g.options(FAST))[0]
                     for lab in (2, 7)]
    assert np.abs(pixels(images[:1]) - pixels(same_seed[:1])).max() <= 2
    assert np.abs(pixels(same_seed[:1]) - pixels(same_seed[1:])).mean() > 0.5  # label matters
    unlabelled = g.sample(40, seed=0, batch_size=40, **FAST)
    drawn = [im.info["label"] for im in unlabelled]
    assert len(set(drawn)) >= 8  # labels drawn from each sample's own seed
    assert drawn[:4] == [im.info["label"] for im in g.sample(4, seed=0, batch_size=1, **FAST)]
    guided = g.sample(2, seed=0, label=3, guidance_scale=3.0, **FAST)
    assert np.abs(pixels(guided) - pixels(g.sample(2, seed=0, label=3, **FAST))).mean() > 0.1


def test_unconditional_model_refuses_labels():
    g = tiny()
    assert g.accepted_conditions() == ()
    with pytest.raises(SamplingError, match="does not take a label"):
        g.sample(1, label=3, **FAST)
    with pytest.raises(SamplingError, match="unconditional"):
        g.generate([1], [{"label": 3}], g.options(FAST))
    with pytest.raises(ConfigError, match="guidance_scale needs a class-conditional model"):
        g.sample(1, guidance_scale=2.0, **FAST)


def test_trajectory_gif_and_png_strip(trained, tmp_path):
    g, _, _ = trained
    first = pixels(g.sample(1, seed=0, **FAST))[0]  # the trajectory ends at sample 0
    gif = g.write_extras(g.options({**FAST, "trajectory": str(tmp_path / "t.gif"),
                                    "trajectory_samples": 3}), 0, tmp_path)
    with Image.open(gif[0]) as im:
        assert im.n_frames == 5 and im.size == (3 * 64 + 2 * 2, 64)  # noise + 4 steps
        im.seek(im.n_frames - 1)
        last = np.asarray(im.convert("L"), dtype=np.float64)[::8, ::8][:, :8]
    assert np.abs(last - first).max() <= 2
    png = g.write_extras(g.options({"steps": 12, "trajectory": str(tmp_path / "t.png"),
                                    "trajectory_frames": 4, "trajectory_samples": 2}), 0, None)
    with Image.open(png[0]) as im:
        assert im.size == (4 * 64 + 3 * 2, 2 * 64 + 2)  # 4 steps across, 2 samples down
    assert g.write_extras(g.options(FAST), 0, tmp_path) == []


# ------------------------------------------------------------------------ checkpoints
def test_checkpoint_is_a_plain_diffusers_pipeline(tmp_path):
    from diffusers import DDPMPipeline

    tiny().save(tmp_path / "ckpt")  # random weights: equality is what is checked
    pipe = DDPMPipeline.from_pretrained(tmp_path / "ckpt", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    seeds = [sample_seed(0, i) for i in range(3)]
    theirs = pipe(batch_size=3, num_inference_steps=10, output_type="pil",
                  generator=[torch.Generator().manual_seed(s) for s in seeds]).images
    ours = genkit.load(tmp_path / "ckpt", device="cpu").sample(3, seed=0, scheduler="ddpm",
                                                               steps=10)
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1


def test_conditional_checkpoint_opens_with_diffusers_pieces(trained):
    from diffusers import DDIMScheduler, UNet2DModel

    g, _, path = trained
    unet = UNet2DModel.from_pretrained(path, subfolder="unet", use_safetensors=True)
    scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler")
    scheduler.set_timesteps(6)
    labels = torch.tensor([4, 9])
    gens = [torch.Generator().manual_seed(sample_seed(0, i)) for i in range(2)]
    x = torch.cat([torch.randn(1, 1, 8, 8, generator=gen) for gen in gens])
    with torch.inference_mode():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t, class_labels=labels).sample, t, x).prev_sample
    theirs = ((x.clamp(-1, 1) + 1) * 127.5).round().squeeze(1).numpy()
    ours = pixels(genkit.load(path, device="cpu").sample(2, seed=0, labels=[4, 9],
                                                        scheduler="ddim", steps=6))
    assert np.abs(ours - theirs).max() <= 1


def test_fp16_checkpoint_reloads_close(trained, tmp_path):
    from genkit.store.checkpoint import save_checkpoint

    g, _, path = trained
    save_checkpoint(g, tmp_path / "half", weights_dtype="float16")
    half = genkit.load(tmp_path / "half", device="cpu")
    full = genkit.load(path, device="cpu")
    assert half.unet.dtype == torch.float32
    diff = np.abs(pixels(half.sample(4, seed=0, **FAST)) - pixels(full.sample(4, seed=0, **FAST)))
    assert diff.mean() < 2


def test_missing_or_mismatched_checkpoint_files(trained, tmp_path):
    import shutil

    _, _, path = trained
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    (broken / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(CheckpointError, match="scheduler_config.json"):
        genkit.load(broken, device="cpu")
    mixed = tmp_path / "mixed"
    shutil.copytree(path, mixed)
    manifest = json.loads((mixed / "genkit.json").read_text())
    manifest["config"]["num_classes"] = 0
    (mixed / "genkit.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="num_class_embeds"):
        genkit.load(mixed, device="cpu")


# ------------------------------------------------------------------- foreign pipelines
def _tiny_text_to_image(directory):
    """A Stable Diffusion pipeline with tiny random parts and a 40-token CLIP vocabulary."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["<|startoftext|>", "<|endoftext|>", "!"] + letters + [f"{c}</w>" for c in letters]
    files = directory / "vocab"
    files.mkdir()
    (files / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (files / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(files / "vocab.json"), str(files / "merges.txt"),
                              model_max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
        pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4, cross_attention_dim=8, attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), sample_size=8)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=DDIMScheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(directory / "sd", safe_serialization=True)
    return directory / "sd"


def test_foreign_text_to_image_pipeline_samples_with_prompts(tmp_path):
    path = _tiny_text_to_image(tmp_path)
    g = load_checkpoint(path, device="cpu", plugin="diffusion")  # the route the CLI takes
    assert isinstance(g, PipelineGenerator) and g.accepted_conditions() == ("prompt",)
    cat = g.sample(2, seed=0, batch_size=2, prompt="a cat", steps=3)
    assert [im.size for im in cat] == [(8, 8)] * 2 and cat[0].mode == "RGB"
    alone = g.sample(2, seed=0, batch_size=1, prompt="a cat", steps=3)
    assert np.abs(pixels(cat) - pixels(alone)).max() <= 2
    dog = g.sample(2, seed=0, batch_size=2, prompt="dogs bark", steps=3)
    assert np.abs(pixels(cat) - pixels(dog)).max() > 0  # the prompt reaches the UNet
    assert g.sample(1, seed=0, prompt="a cat", steps=3, scheduler="euler")[0].size == (8, 8)


def test_foreign_unconditional_pipeline_and_refusals(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path / "ddpm")
    g = DiffusionGenerator.from_foreign_dir(tmp_path / "ddpm", "cpu")
    assert g.accepted_conditions() == ()
    images = g.sample(3, seed=0, steps=4, scheduler="ddim")
    assert [im.mode for im in images] == ["RGB"] * 3
    assert np.array_equal(pixels(images), pixels(g.sample(3, seed=0, steps=4, scheduler="ddim")))
    with pytest.raises(SamplingError, match="does not take a prompt"):
        g.sample(1, prompt="a cat", steps=2)

    index = json.loads((tmp_path / "ddpm" / "model_index.json").read_text())
    (tmp_path / "ddpm" / "model_index.json").write_text(json.dumps(
        {**index, "_class_name": "MyPipeline"}))
    with pytest.raises(CheckpointError, match="custom pipeline code is never run"):
        load_pipeline_dir(tmp_path / "ddpm", "cpu")
    (tmp_path / "ddpm" / "model_index.json").write_text(json.dumps(
        {**index, "unet": ["my_module", "MyUNet"]}))
    with pytest.raises(CheckpointError, match="only diffusers and transformers"):
        load_pipeline_dir(tmp_path / "ddpm", "cpu")
    with pytest.raises(CheckpointError, match="neither a genkit checkpoint"):
        load_pipeline_dir(tmp_path, "cpu")


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("options", "message"), [
    ({"scheduler": "heun"}, "unknown scheduler 'heun'; use one of ddpm, ddim, dpm\\+\\+, euler"),
    ({"steps": 0}, "steps must be a positive number"),
    ({"eta": 2.0}, "eta must be in"),
])
def test_bad_sampling_options_are_clear_errors(options, message):
    g = tiny()
    with pytest.raises(ConfigError, match=message):
        g.sample(1, **options)


@pytest.mark.parametrize(("config", "message"), [
    ({"image_size": 10, "block_out_channels": (8, 16, 16)}, "divisible by 4"),
    ({"norm_num_groups": 3}, "must divide every block width"),
    ({"channels": 2}, "channels must be 1"),
    ({"prediction_type": "sample"}, "must be one of epsilon, v_prediction"),
    ({"beta_schedule": "sigmoid"}, "must be one of linear, cosine"),
])
def test_bad_configs_are_clear_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        genkit.create("diffusion", **{**TINY, **config})


def test_label_out_of_range_and_unlabelled_data(trained):
    g, _, _ = trained
    with pytest.raises(SamplingError, match="out of range"):
        g.sample(1, label=10, **FAST)
    with pytest.raises(SamplingError, match="out of range"):  # one error class, both ways
        g.generate([1], [{"label": 12}], g.options(FAST))
    unlabelled = genkit.load_data("digits")
    unlabelled.labels = None
    with pytest.raises(genkit.DataError, match="needs labelled data"):
        tiny(num_classes=10).make_dataset(unlabelled, "train")


# ------------------------------------------------------------------- the default model
def test_default_model_draws_recognisable_digits_of_every_class():
    from genkit_diffusion.digits_check import recognise

    from genkit.discovery.registry import get_registry

    path = get_registry().generator("diffusion").default_checkpoint_path()
    files = sum(f.stat().st_size for f in __import__("pathlib").Path(path).rglob("*")
                if f.is_file())
    assert files <= 3 * 1024 * 1024
    g = genkit.load(path, device="cpu")
    images = g.sample(100, seed=0, batch_size=100, scheduler="ddim", steps=25)
    assert images[0].size == (16, 16)
    result = recognise(images, [im.info["label"] for im in images], threshold=CONFIDENT)
    assert result.real_accuracy > 0.95  # the judge itself knows real digits
    assert result.confident >= 0.8, result.as_dict()
    assert result.agree >= 0.8, result.as_dict()  # the class asked for is the one drawn
    assert result.classes == 10, result.as_dict()

