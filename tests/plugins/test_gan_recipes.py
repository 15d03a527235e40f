"""The GAN's recipes and latent tools through genkit: every loss and regulariser trains,
DiffAugment and R1 keep resume exact, bad settings are one clear error, and truncation,
interpolation and projection behave."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from genkit_gan.generator import slerp
from genkit_gan.layers import MinibatchStd

import genkit
from genkit.errors import ConfigError, SamplingError

TINY = {"image_size": 8, "latent_dim": 8, "base_width": 8}
QUIET = {"progress": False, "log_with": "none", "device": "cpu", "batch_size": 16}


@pytest.mark.parametrize("recipe", [
    {"loss": "nonsaturating", "r1_gamma": 1.0, "r1_every": 2, "diffaugment": "color,translation,cutout"},
    {"loss": "hinge", "spectral_norm": True, "num_classes": 10},
    {"loss": "lsgan", "d_lr_ratio": 2.0},
    {"loss": "wgan-gp", "n_critic": 2, "num_classes": 10, "conditioning": "concat"},
    {"upsample": "nearest", "d_depth": 2, "num_classes": 10},
    {"minibatch_std": 4, "num_classes": 10, "r1_gamma": 1.0, "r1_every": 1},
    {"upsample": "nearest", "num_classes": 10, "conditioning": "concat"},
])
def test_every_recipe_trains_with_finite_losses(recipe):
    g = genkit.create("gan", **TINY, **recipe)
    report = g.train("digits", steps=4, **QUIET)
    assert all(np.isfinite(r["loss"]) for r in report.history)
    labels = {"label": 3} if recipe.get("num_classes") else {}
    assert len(g.sample(2, seed=0, **labels)) == 2


def test_diffaugment_and_r1_keep_resume_exact(tmp_path):
    recipe = {**TINY, "num_classes": 10, "r1_gamma": 1.0, "r1_every": 2,
              "diffaugment": "color,translation,cutout"}
    straight = genkit.create("gan", **recipe)
    straight.train("digits", steps=6, out=tmp_path / "a", **QUIET)
    resumed = genkit.create("gan", **recipe)
    resumed.train("digits", steps=3, out=tmp_path / "b", checkpoint_every=3, **QUIET)
    resumed = genkit.create("gan", **recipe)
    resumed.train("digits", steps=6, out=tmp_path / "b", resume=True, **QUIET)
    for name in ("generator", "discriminator"):
        for (k, a), b in zip(straight.modules()[name].state_dict().items(),
                             resumed.modules()[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"


@pytest.mark.parametrize("config, message", [
    ({"loss": "wasserstein"}, "unknown loss 'wasserstein'"),
    ({"n_critic": 0}, "n_critic must be at least 1"),
    ({"conditioning": "film"}, "unknown conditioning"),
    ({"diffaugment": "rotate"}, "diffaugment"),
    ({"upsample": "bilinear"}, "unknown upsample 'bilinear'; use one of transposed, nearest"),
    ({"d_depth": 0}, "d_depth must be at least 1"),
    ({"d_width": -8}, r"d_width must be 0 \(base_width\) or more"),
    ({"minibatch_std": -1}, r"minibatch_std must be 0 \(off\) or a group size"),
    ({"minibatch_std": 4, "arch": "mlp"}, "minibatch_std is for arch=conv"),
])
def test_bad_recipes_are_one_clear_error(config, message):
    with pytest.raises(ConfigError, match=message):
        genkit.create("gan", **TINY, **config)


def test_nearest_upsampling_and_a_deeper_wider_critic_reload_without_genkit(tmp_path):
    from genkit_gan.models import ConvDiscriminator, ConvGenerator

    g = genkit.create("gan", **TINY, num_classes=3, upsample="nearest", d_depth=2, d_width=12,
                      minibatch_std=2)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.generator.modules())
    convs = [m for m in g.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.stride[0] for m in convs] == [2, 1]  # 8 px: one level, its 3x3 added
    assert [m.out_channels for m in convs] == [12, 12]  # D's own width, G's is 8
    g.save(tmp_path / "ckpt")
    z, y = torch.randn(2, TINY["latent_dim"]), torch.tensor([0, 2])
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        plain_g = ConvGenerator.from_pretrained(tmp_path / "ckpt" / "generator").eval()
        torch.testing.assert_close(plain_g(z, y), g.generator.eval()(z, y))
        plain_d = ConvDiscriminator.from_pretrained(tmp_path / "ckpt" / "discriminator")
        torch.testing.assert_close(plain_d(images, y), g.discriminator(images, y))
    assert genkit.load(tmp_path / "ckpt", device="cpu").config.upsample == "nearest"


def test_the_minibatch_std_channel_lets_d_see_variety_within_a_group_only():
    g = genkit.create("gan", **TINY, minibatch_std=2)
    D = g.discriminator
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        before = D(images)
        partner, stranger = images.clone(), images.clone()
        partner[1] += 0.5  # in image 0's group of 2
        stranger[2] += 0.5  # in the next group
        assert not torch.allclose(D(partner)[0], before[0])
        assert torch.equal(D(stranger)[:2], before[:2])
        same = images[:1].expand(2, -1, -1, -1)  # a group of one image twice: no spread
        varied = torch.cat([images[:1], -images[:1]])
        spread = [D.body[0](x)[:, -1].mean().item() for x in (same, varied)]
    assert spread[0] < 1e-3 < spread[1]
    plain = genkit.create("gan", **TINY).discriminator
    with torch.no_grad():
        assert torch.equal(plain(stranger)[:2], plain(images)[:2])


@pytest.mark.parametrize("batch_size, d_calls", [(8, [16, 8]), (6, [6, 6, 6])])
def test_real_and_fake_never_share_a_minibatch_std_group(batch_size, d_calls):
    # groups are consecutive images: real and fake go through D together only when the
    # batch splits into whole groups, else in separate calls (then G's step)
    g = genkit.create("gan", **TINY, minibatch_std=4, r1_gamma=1.0, r1_every=1)
    layer = next(m for m in g.discriminator.modules() if isinstance(m, MinibatchStd))
    seen = []
    layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    g.train("digits", steps=1, **{**QUIET, "batch_size": batch_size})
    assert seen[:len(d_calls)] == d_calls  # the training step's calls; evaluation follows


def test_bad_sampling_requests_are_one_clear_error():
    g = genkit.create("gan", **TINY)
    for truncation in (0, 1.5):
        with pytest.raises(ConfigError, match=r"truncation must be in \(0, 1\]"):
            g.sample(1, truncation=truncation)
    with pytest.raises(SamplingError, match="does not take a label"):
        g.sample(1, label=3)
    with pytest.raises(SamplingError, match="unconditional"):
        g.generate([1], [{"label": 3}], g.options({}))


@pytest.mark.parametrize("config", [{}, {"num_classes": 3}, {"arch": "mlp"}])
def test_truncation_shrinks_the_spread_of_samples(config):
    g = genkit.create("gan", **TINY, **config)
    project = getattr(g.generator, "project", None)
    if project is not None:  # a trained scale: scaling z, the old way, did nothing at all
        with torch.no_grad():
            project.weight.mul_(1000)
    label = {"label": 1} if config.get("num_classes") else {}

    def samples(psi: float) -> np.ndarray:
        return np.stack([np.asarray(im, float)
                         for im in g.sample(16, seed=0, truncation=psi, **label)])

    full, tight = samples(1.0), samples(0.25)
    assert tight.std(axis=0).mean() < 0.6 * full.std(axis=0).mean()
    assert np.array_equal(tight, samples(0.25))  # deterministic
    assert g.sample(1, seed=4, truncation=0.5, **label)[0].tobytes() == \
        g.sample(1, seed=4, truncation=0.5, batch_size=1, **label)[0].tobytes()


def test_interpolation_is_a_strip_between_two_seeds(tmp_path):
    g = genkit.create("gan", **TINY, num_classes=10)
    g.sample_to(tmp_path / "out", n=2, seed=3, interpolate=5, progress=False)
    from genkit.sample.plan import write_extras

    files = write_extras(g, g.options({"interpolate": 5}), 3, tmp_path / "out")
    from PIL import Image

    strip = Image.open(files[0])
    assert strip.size == (5 * 8, 8)
    a, b = torch.randn(8), torch.randn(8)
    path = slerp(a, b, torch.linspace(0, 1, 7))  # (7, Z)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)


def test_projection_finds_latents_that_reproduce_an_image():
    g = genkit.create("gan", **TINY)
    g.train("digits", steps=20, **QUIET)
    target = g.sample(2, seed=11)  # images the generator can make
    z = g.project(target, steps=150, seed=0)
    again = g.project(target, steps=150, seed=0)
    assert z.shape == (2, 8) and torch.equal(z, again)  # deterministic per seed
    with torch.no_grad():
        made = g.generator.eval()(z)
    x = torch.stack([torch.as_tensor(np.asarray(im, np.float32))[None] / 127.5 - 1
                     for im in target])
    start = g.generator.eval()(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)))
    assert torch.mean((made - x) ** 2) < 0.5 * torch.mean((start.detach() - x) ** 2)
