"""The vae plugin: the ELBO terms, training lowers the loss, saving, the Python API
(encode/decode/reconstruct/interpolate), the interpolation strip, conditioning, errors,
and the shipped default model judged by a classifier of real digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from genkit_vae.generator import (
    VAEGenerator,
    kl_nats,
    kl_weight,
    reconstruction_nats,
)
from genkit_vae.models import ConvDecoder, ConvEncoder
from PIL import Image

import genkit
from genkit.errors import ConfigError, SamplingError
from genkit.plugin import images_to_tensor
from genkit.seeding import sample_seed

TINY = {"image_size": 8, "latent_dim": 4, "base_width": 8}
CONFIDENT = 0.8  # top class probability that counts as "recognised"


def tiny(**config) -> VAEGenerator:
    torch.manual_seed(0)
    g = genkit.create("vae", **{**TINY, **config})
    assert isinstance(g, VAEGenerator)
    return g


@pytest.fixture(scope="module")
def digits():
    return genkit.load_data("digits", "test")


# ------------------------------------------------------------------------------- ELBO
def test_elbo_terms_match_torch_distributions():
    mean, logvar = torch.randn(3, 4), torch.randn(3, 4)
    prior = torch.distributions.Normal(0, 1)
    posterior = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    torch.testing.assert_close(kl_nats(mean, logvar),
                               torch.distributions.kl_divergence(posterior, prior).sum(1))
    assert torch.all(kl_nats(torch.zeros(2, 4), torch.zeros(2, 4)) == 0)

    x, out = torch.rand(3, 1, 4, 4) * 2 - 1, torch.randn(3, 1, 4, 4)
    target = (x + 1) / 2
    expected = -(target * torch.nn.functional.logsigmoid(out)
                 + (1 - target) * torch.nn.functional.logsigmoid(-out)).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nats(out, x, "bernoulli", 0.1), expected)
    gauss = -torch.distributions.Normal(out, 0.3).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nats(out, x, "gaussian", 0.3), gauss)


def test_kl_warmup_is_linear():
    assert kl_weight(2.0, 0, 0) == 2.0
    assert kl_weight(2.0, 100, 0) == pytest.approx(0.02)
    assert kl_weight(2.0, 100, 49) == pytest.approx(1.0)
    assert kl_weight(2.0, 100, 500) == 2.0


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_training_lowers_the_loss_and_records_nats(likelihood):
    g = tiny(likelihood=likelihood, kl_warmup_steps=10)
    report = g.train("digits", steps=40, batch_size=32, device="cpu", log_every=10,
                     progress=False, log_with="none", lr=3e-3)
    # the Bernoulli loss of soft targets has a large floor (the targets' entropy): 2 nats
    # per 8x8 image is a clear drop there; the Gaussian one drops by far more
    assert report.final_loss < report.first_loss - (2.0 if likelihood == "bernoulli" else 50.0)
    last = g.training_summary["last_metrics"]
    assert last["beta"] == 1.0 and last["kl"] > 0
    assert last["loss"] == pytest.approx(last["recon"] + last["kl"], rel=1e-4)
    held_out = g.training_summary["eval"]
    assert held_out["neg_elbo"] == pytest.approx(held_out["recon"] + held_out["kl"], rel=1e-5)
    if likelihood == "bernoulli":  # nats of 64 soft-Bernoulli pixels: between 0 and 64 ln 2
        assert 0 < held_out["recon"] < 64 * math.log(2)


# ------------------------------------------------------------------- the Python API
def test_encode_decode_reconstruct_interpolate_shapes(digits):
    g = tiny()
    x = images_to_tensor(digits, 8, 1)[:5]  # (5, 1, 8, 8)
    pil = [Image.fromarray(digits.images[i, ..., 0]) for i in range(3)]  # 8x8 "L" images
    assert g.encode(x).shape == (5, 4) and g.encode(pil).shape == (3, 4)
    assert g.encode(pil[0]).shape == (1, 4) and g.encode(x[0]).shape == (1, 4)
    torch.testing.assert_close(g.encode(pil), g.encode(x[:3]), atol=0.05, rtol=0)

    images = g.decode(torch.zeros(2, 4))
    assert len(images) == 2 and images[0].size == (8, 8) and images[0].mode == "L"
    recon = g.reconstruct(x, as_tensor=True)
    assert recon.shape == (5, 1, 8, 8) and recon.min() >= -1 and recon.max() <= 1
    assert len(g.reconstruct(pil)) == 3

    strip = g.interpolate(x[0], x[1], steps=6, as_tensor=True)
    assert strip.shape == (6, 1, 8, 8)
    ends = g.decode(g.encode(x[:2]), as_tensor=True)
    torch.testing.assert_close(strip[[0, -1]], ends)
    latents = g.interpolate(torch.zeros(4), torch.ones(4), steps=3, as_tensor=True)
    torch.testing.assert_close(latents[1], g.decode(torch.full((4,), 0.5), as_tensor=True)[0])


def test_write_extras_writes_an_interpolation_strip(tmp_path):
    g = tiny()
    assert g.write_extras(g.options({}), 0, tmp_path) == []
    files = g.write_extras(g.options({"interpolate": 5}), 7, tmp_path)
    assert files == [tmp_path / "interpolation.png"]
    with Image.open(files[0]) as im:
        assert im.size == (5 * 8, 8)
        first = np.asarray(im)
    g.write_extras(g.options({"interpolate": 5}), 7, tmp_path)  # same seed, same strip
    assert np.array_equal(np.asarray(Image.open(files[0])), first)


def test_cli_sample_interpolate_with_the_default_model(tmp_path):
    from genkit.cli import cli

    result = CliRunner().invoke(cli, ["sample", "--plugin", "vae", "-n", "4", "--device",
                                       "cpu", "--interpolate", "8", "--out", str(tmp_path),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "interpolation.png") as im:
        assert im.size == (8 * 16, 16)


def test_conditional_vae():
    g = tiny(num_classes=3)
    assert g.accepted_conditions() == ("label",)
    x = torch.zeros(2, 1, 8, 8)
    assert g.encode(x, labels=[0, 2]).shape == (2, 4)
    a, b = g.decode(torch.zeros(1, 4), labels=0, as_tensor=True), \
        g.decode(torch.zeros(1, 4), labels=2, as_tensor=True)
    assert not torch.equal(a, b)
    assert len(g.interpolate(torch.zeros(4), torch.ones(4), steps=3, label=1)) == 3
    z0 = torch.randn(4, generator=torch.Generator().manual_seed(sample_seed(0, 0)))
    assert np.array_equal(np.asarray(g.sample(3, seed=0, label=1)[0]),
                          np.asarray(g.decode(z0, labels=1)[0]))  # z from sample 0's own seed
    with pytest.raises(ConfigError, match="class-conditional"):
        g.decode(torch.zeros(1, 4))
    with pytest.raises(SamplingError, match="out of range"):
        g.decode(torch.zeros(1, 4), labels=3)
    with pytest.raises(ConfigError, match="unconditional"):
        tiny().decode(torch.zeros(1, 4), labels=1)


# ---------------------------------------------------------------------------- saving
def test_save_load_round_trip_and_from_pretrained(tmp_path, digits):
    g = tiny(num_classes=10, likelihood="gaussian")
    g.train("digits", steps=3, batch_size=16, device="cpu", progress=False, log_with="none")
    g.save(tmp_path / "ckpt")
    loaded = genkit.load(tmp_path / "ckpt", device="cpu")
    a, b = g.sample(4, seed=0), loaded.sample(4, seed=0)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))

    encoder = ConvEncoder.from_pretrained(tmp_path / "ckpt" / "encoder")  # no genkit
    decoder = ConvDecoder.from_pretrained(tmp_path / "ckpt" / "decoder")
    x, y = images_to_tensor(digits, 8, 1)[:3], torch.as_tensor(digits.labels[:3])
    with torch.no_grad():
        plain = decoder.to_image(decoder(encoder(x, y)[0], y))
    torch.testing.assert_close(plain, loaded.reconstruct(x, labels=y, as_tensor=True))
    assert decoder.likelihood == "gaussian"


@pytest.mark.parametrize("values, match", [
    ({"image_size": -8}, "image_size must be positive"),
    ({"latent_dim": 0}, "latent_dim must be positive"),
    ({"likelihood": "poisson"}, "bernoulli, gaussian"),
    ({"image_size": 12}, "8, 16, 32"),
    ({"beta": -1.0}, "beta"),
    ({"kl_warmup_steps": -5}, "kl_warmup_steps"),
    ({"sigma": 0.0}, "sigma"),
    ({"num_classes": -2}, "num_classes"),
])
def test_bad_config_values_are_clear_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        genkit.create("vae", **values)


def test_bad_sampling_options_and_inputs():
    g = tiny()
    with pytest.raises(ConfigError, match="interpolate"):
        g.options({"interpolate": 1})
    with pytest.raises(ConfigError, match=r"\(N, 1, 8, 8\)"):
        g.encode(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ConfigError, match=r"\(N, 4\)"):
        g.decode(torch.zeros(2, 5))


# --------------------------------------------------------------------- default model
def test_default_model_samples_and_reconstructions_are_recognised(digits_judge, digits):
    spec = next(s for s in genkit.generators() if s.name == "vae")
    g = genkit.load(spec.default_checkpoint_path(), device="cpu")
    free = digits_judge(g.sample(200, seed=0))
    asked = digits_judge(g.sample(100, seed=1, labels=list(range(10))),
                         labels=[i % 10 for i in range(100)])
    real = images_to_tensor(digits, 16, 1)[:100]
    recon = digits_judge(g.reconstruct(real, labels=digits.labels[:100]),
                         labels=digits.labels[:100])
    print(f"vae default: {free} | labelled: {asked} | reconstructions: {recon}")
    assert free["confident"] >= 0.8 and free["classes"] == 10
    assert asked["agree"] >= 0.8 and recon["agree"] >= 0.9
    assert free["class_diversity"] >= 0.6  # no collapse within classes either
