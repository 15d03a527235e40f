"""The flow plugin: exact invertibility and log-determinants, likelihood training,
conditional sampling, the genkit conformance kit, and the genkit CLI."""

from __future__ import annotations

import math

import genkit
import pytest
import torch
from genkit.plugin import SamplingError
from genkit.testing import CliRunner, check_generator

from genkit_flow.generator import UNIFORM_BITS_PER_DIM, FlowGenerator
from genkit_flow.model import RealNVP, squeeze, unsqueeze

TINY = {"hidden": 8, "num_blocks": 1}


def _random_flow(num_classes: int = 0) -> RealNVP:
    """A small flow in float64 with every weight random (no identity couplings)."""
    torch.manual_seed(0)
    flow = RealNVP(channels=1, size=4, width=8, blocks=1, num_scales=2,
                   num_classes=num_classes).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return flow


def test_squeeze_is_a_permutation():
    x = torch.arange(2 * 3 * 4 * 4.0).view(2, 3, 4, 4)  # (B, C, S, S)
    y = squeeze(x)
    assert y.shape == (2, 12, 2, 2)
    assert torch.equal(unsqueeze(y), x)
    assert sorted(y.flatten().tolist()) == sorted(x.flatten().tolist())


def test_inverse_undoes_the_flow_and_logdet_is_the_exact_jacobian():
    flow = _random_flow()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    z, logdet = flow.encode(x)  # (3, 16), (3,)
    assert torch.allclose(flow.inverse(z), x, atol=1e-10)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(
            lambda v: flow.encode(v.view(1, 1, 4, 4))[0].view(-1), x[i].view(-1))  # (16, 16)
        assert torch.allclose(torch.linalg.slogdet(jac).logabsdet, logdet[i], atol=1e-9)


def test_bits_per_dim_includes_the_logit_and_dequantisation_terms():
    g = genkit.create("flow", image_size=4, **TINY).to("cpu")
    g.flow = g.flow.double()
    pixels = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    noise = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    bpd = g.bits_per_dim(pixels, None, noise)  # (2,)
    x = ((pixels.double() + noise) / 256).view(2, -1)
    for i in range(2):  # log p(x) from the full Jacobian of x -> z (logit, then flow)
        def to_z(v):
            return g.flow.encode(g._to_logits(v.view(1, 1, 4, 4))[0])[0].view(-1)

        z = to_z(x[i])
        jac = torch.autograd.functional.jacobian(to_z, x[i])  # (16, 16)
        log_pz = (-0.5 * (z ** 2 + math.log(2 * math.pi))).sum()
        log_px = log_pz + torch.linalg.slogdet(jac).logabsdet - 16 * math.log(256)
        assert bpd[i].item() == pytest.approx((-log_px / (16 * math.log(2))).item(), abs=1e-6)


def test_training_lowers_held_out_bits_per_dim_and_digits_beat_noise():
    torch.manual_seed(0)
    g = genkit.create("flow", **TINY)
    data = genkit.load_data("digits", split="test")
    before = g.evaluate(data)["bits_per_dim"]
    g.train("digits", steps=40, batch_size=32, lr=3e-3, device="cpu", log_with="none",
            progress=False)
    after = g.evaluate(data)["bits_per_dim"]
    assert after < before - 2.0, (before, after)
    noise = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad(), g.sampling_weights():
        noise_bpd = g.bits_per_dim(noise, None, torch.rand(noise.shape)).mean().item()
    assert after < UNIFORM_BITS_PER_DIM < noise_bpd


def test_conditional_flow_conforms_and_takes_labels():
    report = check_generator("flow", config={**TINY, "num_classes": 10}, steps=4,
                             batch_size=16, sample_options={"labels": [0, 3, 7]})
    assert report.modality == "image" and len(report.checks) == 6
    g = genkit.create("flow", **TINY, num_classes=10)
    assert [im.size for im in g.sample(2, label=3)] == [(8, 8), (8, 8)]
    with pytest.raises(SamplingError, match="out of range"):
        g.sample(1, label=10)
    with pytest.raises(SamplingError, match="does not take a label"):
        genkit.create("flow", **TINY).sample(1, label=3)


def test_bad_config_is_a_config_error_that_says_what_to_do():
    with pytest.raises(genkit.ConfigError, match="lower num_scales or change image_size"):
        FlowGenerator(image_size=6, num_scales=3)


def test_cli_trains_and_samples_with_the_flow(tmp_path):
    runner = CliRunner()
    run, out = tmp_path / "run", tmp_path / "samples"
    result = runner.invoke(["train", "--plugin", "flow", "--out", str(run), "--steps", "3",
                            "--batch-size", "16", "--set", "hidden=8", "--log-with", "none",
                            "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (run / "model" / "flow.safetensors").is_file()
    result = runner.invoke(["sample", "--plugin", "flow", "--checkpoint", str(run), "-n", "4",
                            "--out", str(out), "--temperature", "0.7", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == [
        "000000.png", "000001.png", "000002.png", "000003.png", "grid.png"]
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 4
    result = runner.invoke(["sample", "--plugin", "flow", "-n", "1"])
    assert result.exit_code == 2 and "ships no default model" in result.stderr
