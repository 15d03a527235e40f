"""The gan plugin: loss signs, the detach, two optimizers, saving, conditioning, errors,
and the shipped default model's samples judged by a classifier of real digits."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from genkit_gan.generator import (
    GANGenerator,
    discriminator_loss,
    diversity_ratio,
    generator_loss,
)
from genkit_gan.models import ConvDiscriminator, ConvGenerator, MLPGenerator

import genkit
from genkit.errors import ConfigError, SamplingError
from genkit.plugin import images_to_tensor

TINY = {"image_size": 8, "latent_dim": 8, "base_width": 8}
CONFIDENT = 0.8  # top class probability that counts as "recognised"
CONFIDENT_SHARE = 0.75  # share of the default model's samples that must be recognised


def tiny(**config) -> GANGenerator:
    torch.manual_seed(0)
    g = genkit.create("gan", **{**TINY, **config})
    assert isinstance(g, GANGenerator)
    return g


def digits_batch(n: int = 32, size: int = 8, labels: bool = False) -> dict[str, torch.Tensor]:
    data = genkit.load_data("digits")
    batch = {"image": images_to_tensor(data, size, 1)[:n]}
    if labels:
        batch["label"] = torch.as_tensor(data.labels[:n]) % 3
    return batch


def adam_ctx(g: GANGenerator, spy=None, lr: float = 2e-4) -> SimpleNamespace:
    """A stand-in for the engine's StepContext: plain modules, seeded RNG, real optimizers."""
    opts = g.configure_optimizers(SimpleNamespace(lr=lr, weight_decay=0.0))

    def optimize(name: str, loss: torch.Tensor) -> None:
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()
        if spy is not None:
            spy(name)

    return SimpleNamespace(models=g.modules(), generator=torch.Generator().manual_seed(0),
                           device=torch.device("cpu"), optimize=optimize, step=0,
                           optimizers=opts)


# ------------------------------------------------------------------------- objective
@pytest.mark.parametrize("kind", ["nonsaturating", "hinge"])
def test_loss_signs(kind):
    sure, wrong = torch.full((8,), 5.0), torch.full((8,), -5.0)
    # D is rewarded for high logits on real and low on fake
    assert discriminator_loss(sure, wrong, kind) < discriminator_loss(wrong, sure, kind)
    # G is rewarded when D scores its samples as real
    assert generator_loss(sure, kind) < generator_loss(wrong, kind)
    # the non-saturating loss keeps a strong gradient where D rejects the fakes
    logits = wrong.clone().requires_grad_(True)
    generator_loss(logits, kind).backward()
    assert (logits.grad < 0).all() and logits.grad.abs().sum() > 0.5


def test_discriminator_step_is_detached_from_the_generator():
    """In training_step, D's optimizer step leaves G's weights and grads untouched; the
    G step then changes G."""
    g = tiny()
    before = {k: v.clone() for k, v in g.generator.state_dict().items()}
    seen = {}

    def spy(name: str) -> None:
        if name == "discriminator":
            seen["g_grads"] = [p.grad for p in g.generator.parameters()]
            seen["g_same"] = all(torch.equal(before[k], v)
                                 for k, v in g.generator.state_dict().items())

    out = g.training_step(digits_batch(), adam_ctx(g, spy))
    assert seen["g_same"] and all(grad is None for grad in seen["g_grads"])
    assert not all(torch.equal(before[k], v) for k, v in g.generator.state_dict().items())
    assert {"loss", "d_loss", "g_loss", "d_real", "d_fake", "diversity"} <= set(out)


def test_discriminator_alone_learns_real_from_fake():
    g = tiny()
    ctx, real = adam_ctx(g, lr=1e-3), digits_batch(64)["image"]
    with torch.no_grad():
        fake = g.generator(torch.randn(64, 8, generator=torch.Generator().manual_seed(1)))
    losses = []
    for _ in range(40):
        loss = discriminator_loss(g.discriminator(real), g.discriminator(fake))
        ctx.optimize("discriminator", loss)
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.75 * losses[0]
    with torch.no_grad():
        assert g.discriminator(real).mean() > g.discriminator(fake).mean()


def test_generator_step_raises_the_discriminator_score_of_its_samples():
    g = tiny()
    ctx = adam_ctx(g, lr=1e-3)
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        start = g.discriminator(g.generator(z)).mean()
    for _ in range(10):
        ctx.optimize("generator", generator_loss(g.discriminator(g.generator(z))))
    with torch.no_grad():
        assert g.discriminator(g.generator(z)).mean() > start + 0.05


def test_two_adam_optimizers_with_dcgan_betas():
    opts = tiny().configure_optimizers(SimpleNamespace(lr=2e-4, weight_decay=0.0))
    assert set(opts) == {"generator", "discriminator"}
    for opt in opts.values():
        assert isinstance(opt, torch.optim.Adam)
        assert opt.param_groups[0]["betas"] == (0.5, 0.999) and opt.param_groups[0]["lr"] == 2e-4


def test_diversity_ratio_sees_mode_collapse():
    real = digits_batch(32)["image"]
    collapsed = real[:1].expand(32, -1, -1, -1)
    assert float(diversity_ratio(collapsed, real)) == pytest.approx(0.0, abs=1e-6)
    assert float(diversity_ratio(real, real)) == pytest.approx(1.0)
    # a conditional GAN that draws one image per class: spread across classes hides it,
    # the spread within classes shows it
    labels = torch.arange(32) % 4
    per_class = real[:4][labels]  # (32, 1, 8, 8): four distinct images, one per label
    assert float(diversity_ratio(per_class, real)) > 0.5
    assert float(diversity_ratio(per_class, real, labels)) == pytest.approx(0.0, abs=1e-6)


def test_engine_run_logs_diversity_into_the_summary():
    g = tiny(arch="mlp", spectral_norm=True, loss="hinge")
    report = g.train("digits", steps=6, batch_size=16, device="cpu", log_every=3,
                     progress=False, log_with="none", ema_decay=0.9)
    summary = g.training_summary
    assert report.steps == 6 and g.ema is not None
    assert 0 < summary["last_metrics"]["diversity"] and 0 < summary["eval"]["diversity"]


# ---------------------------------------------------------------- sampling and saving
def test_samples_depend_only_on_their_seed():
    g = tiny()
    whole = g.sample(6, seed=3, batch_size=6)
    parts = g.sample(6, seed=3, batch_size=2)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(whole, parts))
    assert whole[0].size == (8, 8) and whole[0].mode == "L"
    assert not np.array_equal(np.asarray(whole[0]), np.asarray(whole[1]))


def test_save_load_round_trip_and_from_pretrained(tmp_path):
    g = tiny(num_classes=3, spectral_norm=True)
    g.training_step(digits_batch(labels=True), adam_ctx(g))  # move off the init
    g.save(tmp_path / "ckpt")
    loaded = genkit.load(tmp_path / "ckpt", device="cpu")
    a, b = g.sample(4, seed=0, label=1), loaded.sample(4, seed=0, label=1)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))

    plain = ConvGenerator.from_pretrained(tmp_path / "ckpt" / "generator")  # no genkit
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 1])
    g.generator.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(z, y), g.generator(z, y))
    critic = ConvDiscriminator.from_pretrained(tmp_path / "ckpt" / "discriminator")
    images = digits_batch(4)["image"]
    g.discriminator.eval()
    with torch.no_grad():  # spectral-normalised layers reload too
        torch.testing.assert_close(critic(images, y), g.discriminator(images, y))


def test_mlp_round_trip_through_from_pretrained(tmp_path):
    g = tiny(arch="mlp", image_size=6)
    g.save(tmp_path / "m")
    plain = MLPGenerator.from_pretrained(tmp_path / "m" / "generator")
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert plain(z).shape == (2, 1, 6, 6)
        torch.testing.assert_close(plain(z), g.generator.eval()(z))


def test_conditional_sampling():
    g = tiny(num_classes=3)
    assert g.accepted_conditions() == ("label",)
    with torch.no_grad():  # per-class scales start equal (1); a trained model's differ
        for module in g.generator.modules():
            if hasattr(module, "gamma"):
                module.gamma.weight.normal_(1.0, 0.5)
    zero, two = g.sample(2, seed=0, label=0), g.sample(2, seed=0, label=2)
    assert not np.array_equal(np.asarray(zero[0]), np.asarray(two[0]))  # label changes it
    labelled = g.generate([5, 6], [{"label": 1}, {"label": 2}], g.options({}))
    assert len(labelled) == 2
    with pytest.raises(SamplingError, match="0..2"):
        g.generate([1], [{"label": 3}], g.options({}))
    assert tiny().accepted_conditions() == ()


@pytest.mark.parametrize("values, match", [
    ({"image_size": -16}, "image_size must be positive"),
    ({"latent_dim": 0}, "latent_dim must be positive"),
    ({"loss": "wasserstein"}, "nonsaturating, hinge"),
    ({"arch": "resnet"}, "conv, mlp"),
    ({"image_size": 12}, "8, 16, 32"),
    ({"arch": "mlp", "image_size": 128}, "4..64"),
    ({"num_classes": -1}, "num_classes"),
    ({"adam_betas": (0.5,)}, "adam_betas"),
])
def test_bad_config_values_are_clear_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        genkit.create("gan", **values)


def test_bad_sampling_option():
    with pytest.raises(ConfigError, match="temperature"):
        tiny().options({"temperature": 0})


# --------------------------------------------------------------------- default model
def test_default_model_samples_are_recognised_digits_of_every_class(digits_judge):
    """The shipped model (class-conditional, see scripts/train_default_gan.py): most samples
    are confidently recognised digits, all ten classes appear, samples follow the label
    asked for, and within each class they spread like real digits do (no mode collapse)."""
    spec = next(s for s in genkit.generators() if s.name == "gan")
    g = genkit.load(spec.default_checkpoint_path(), device="cpu")
    free = digits_judge(g.sample(200, seed=0))
    print(f"gan default: {free}")
    assert free["confident"] >= CONFIDENT_SHARE and free["classes"] == 10
    assert free["class_diversity"] >= 0.7
    if g.config.num_classes:
        asked = [i % 10 for i in range(200)]
        labelled = digits_judge(g.sample(200, seed=1, labels=list(range(10))), asked)
        print(f"gan default, labels asked: {labelled}")
        assert labelled["agree"] >= 0.9


def test_a_conditional_checkpoint_from_before_norm_conditioning_loads_as_concat(tmp_path):
    """0.1.0 concatenated the label to z and saved no ``conditioning``: such a checkpoint
    loads as ``concat`` (its weights fit) where the new default, ``norm``, would not."""
    g = genkit.create("gan", image_size=8, latent_dim=8, base_width=8, num_classes=3,
                      conditioning="concat")
    g.save(tmp_path / "old")
    manifest_path = tmp_path / "old" / "genkit.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["config"]["conditioning"]  # as 0.1.0 wrote it
    manifest_path.write_text(json.dumps(manifest))
    loaded = genkit.load(tmp_path / "old", device="cpu")
    assert loaded.config.conditioning == "concat"
    assert loaded.sample(1, seed=0, label=2)[0].tobytes() == g.sample(1, seed=0, label=2)[0].tobytes()
