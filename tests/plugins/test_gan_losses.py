"""genkit_gan's losses, regularisers, DiffAugment and conditional layers, checked directly:
loss signs and gradient directions, R1 and the gradient penalty against hand computations
on networks whose input gradient is known in closed form, DiffAugment's determinism
(resume) and differentiability, the conditional norm's per-class parameters and batch
independence, and the projection head.

Plain torch; no genkit fixtures needed (the modules import no genkit code)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from genkit_gan.augment import (
    TRANSFORMS,
    DiffAugment,
    diff_augment,
    parse_policy,
    rand_cutout,
    rand_translation,
)
from genkit_gan.layers import ConditionalGroupNorm, CondUpBlock
from genkit_gan.losses import (
    LOSSES,
    check_loss,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
    real_fake_scores,
)
from torch import nn


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class LinearD(nn.Module):
    """D(x) = w . flatten(x) + b: grad_x D = w for every x (closed form)."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim, generator=rng(seed)))
        self.b = nn.Parameter(torch.tensor(0.3))
        self.seen_labels = None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.seen_labels = labels
        return x.flatten(1) @ self.w + self.b


class QuadraticD(nn.Module):
    """D(x) = c/2 ||x||^2: grad_x D = c x (closed form, varies with x)."""

    def __init__(self, c: float = 1.5) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return 0.5 * self.c * x.flatten(1).pow(2).sum(1)


# ---------------------------------------------------------------------------- losses
@pytest.mark.parametrize("kind", LOSSES)
def test_discriminator_loss_prefers_real_high_fake_low(kind):
    high, low = torch.full((8,), 3.0), torch.full((8,), -3.0)
    assert discriminator_loss(high, low, kind) < discriminator_loss(low, high, kind)
    # gradient: descending the loss raises D on real, lowers it on fake
    real = torch.full((8,), 0.5, requires_grad=True)
    fake = torch.full((8,), 0.5, requires_grad=True)
    discriminator_loss(real, fake, kind).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()


@pytest.mark.parametrize("kind", LOSSES)
def test_generator_loss_pushes_d_of_fake_up(kind):
    high, low = torch.full((8,), 3.0), torch.full((8,), -3.0)
    assert generator_loss(high, kind) < generator_loss(low, kind)
    # where D rejects the fakes firmly, the gradient still pushes D(G(z)) up, strongly
    logits = torch.full((8,), -5.0, requires_grad=True)
    generator_loss(logits, kind).backward()
    assert (logits.grad < 0).all() and logits.grad.abs().sum() > 0.5


@pytest.mark.parametrize("kind", LOSSES)
def test_gradient_flows_through_networks(kind):
    """One SGD step of G on generator_loss raises D(G(z)) with D fixed; one step of D on
    discriminator_loss widens D(real) - D(fake). Gradients reach every parameter."""
    torch.manual_seed(0)
    G, D = nn.Linear(4, 6), nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
    z, real = torch.randn(32, 4), torch.randn(32, 6) + 2.0

    def d(x):
        return D(x).squeeze(1)

    before = d(G(z)).mean().item()
    opt_g = torch.optim.SGD(G.parameters(), lr=0.05)
    generator_loss(d(G(z)), kind).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    opt_g.step()
    assert d(G(z)).mean().item() > before

    fake = G(z).detach()
    gap = (d(real).mean() - d(fake).mean()).item()
    opt_d = torch.optim.SGD(D.parameters(), lr=0.05)
    D.zero_grad()
    discriminator_loss(d(real), d(fake), kind).backward()
    assert all(p.grad is not None for p in D.parameters())
    opt_d.step()
    assert (d(real).mean() - d(fake).mean()).item() > gap


def test_nonsaturating_matches_bce_and_known_values():
    real, fake = torch.randn(16), torch.randn(16)
    bce = (F.binary_cross_entropy_with_logits(real, torch.ones(16))
           + F.binary_cross_entropy_with_logits(fake, torch.zeros(16)))
    torch.testing.assert_close(discriminator_loss(real, fake), bce)
    torch.testing.assert_close(generator_loss(fake),
                               F.binary_cross_entropy_with_logits(fake, torch.ones(16)))
    zeros = torch.zeros(4)
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert discriminator_loss(zeros, zeros, "hinge").item() == pytest.approx(2.0)
    assert discriminator_loss(zeros, zeros, "lsgan").item() == pytest.approx(0.5)
    assert generator_loss(zeros, "lsgan").item() == pytest.approx(0.5)
    r, f = torch.tensor([2.0, 4.0]), torch.tensor([1.0, -1.0])
    assert discriminator_loss(r, f, "wgan-gp").item() == pytest.approx(0.0 - 3.0)
    assert generator_loss(f, "wgan-gp").item() == pytest.approx(0.0)


def test_no_extreme_logit_overflow():
    big = torch.tensor([1e4, -1e4])
    for kind in ("nonsaturating", "hinge"):
        assert torch.isfinite(discriminator_loss(big, -big, kind))
        assert torch.isfinite(generator_loss(big, kind))


def test_unknown_loss_is_one_clear_line():
    with pytest.raises(ValueError, match="unknown loss 'wgan'; use one of nonsaturating, "
                                         "hinge, lsgan, wgan-gp") as info:
        discriminator_loss(torch.zeros(2), torch.zeros(2), "wgan")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError):
        generator_loss(torch.zeros(2), "bce")
    assert check_loss("hinge") == "hinge"


def test_real_fake_scores():
    r, f = torch.tensor([0.0, 0.0]), torch.tensor([2.0, 2.0])
    s = real_fake_scores(r, f)
    assert s["d_real"].item() == pytest.approx(0.5)
    assert s["d_fake"].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert real_fake_scores(r, f, "hinge")["d_fake"].item() == pytest.approx(2.0)


# ------------------------------------------------------------------------ regularisers
@pytest.mark.parametrize("gamma,every", [(1.0, 1), (10.0, 1), (0.5, 16)])
def test_r1_on_linear_d_is_gamma_half_w_squared(gamma, every):
    D = LinearD(2 * 3 * 3)
    real = torch.randn(5, 2, 3, 3).requires_grad_(True)
    value = r1_penalty(D(real), real, gamma, every)
    expected = every * gamma / 2 * D.w.detach().pow(2).sum()
    torch.testing.assert_close(value, expected)
    # the penalty trains D: d/dw (every * gamma/2 ||w||^2) = every * gamma * w
    value.backward()
    torch.testing.assert_close(D.w.grad, every * gamma * D.w.detach())


def test_r1_on_quadratic_d_is_mean_squared_input_norm():
    c, gamma = 1.5, 2.0
    D = QuadraticD(c)
    real = torch.randn(7, 1, 4, 4).requires_grad_(True)
    value = r1_penalty(D(real), real, gamma)
    expected = gamma / 2 * (c * real.detach()).flatten(1).pow(2).sum(1).mean()
    torch.testing.assert_close(value, expected)
    value.backward()  # d/dc (gamma/2 c^2 mean||x||^2) = gamma c mean||x||^2
    torch.testing.assert_close(D.c.grad, gamma * c * real.detach().flatten(1).pow(2).sum(1).mean())


def test_r1_needs_grad_on_the_real_images():
    D, real = LinearD(4), torch.randn(3, 1, 2, 2)
    with pytest.raises(ValueError, match="requires_grad_"):
        r1_penalty(D(real), real)


def test_gradient_penalty_on_linear_d_is_norm_of_w_minus_one_squared():
    D = LinearD(1 * 4 * 4)
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    value = gradient_penalty(D, real, fake, rng(3), weight=10.0)
    expected = 10.0 * (D.w.detach().norm() - 1) ** 2
    torch.testing.assert_close(value, expected)


def test_gradient_penalty_on_quadratic_d_matches_hand_computation():
    c = 1.5
    D = QuadraticD(c)
    real, fake = torch.randn(6, 1, 3, 3), torch.randn(6, 1, 3, 3)
    labels = torch.arange(6)
    value = gradient_penalty(D, real, fake, rng(11), labels, weight=5.0)
    alpha = torch.rand(6, 1, 1, 1, generator=rng(11))  # the same draws, by hand
    x_hat = alpha * real + (1 - alpha) * fake
    expected = 5.0 * ((c * x_hat).flatten(1).norm(dim=1) - 1).pow(2).mean()
    torch.testing.assert_close(value, expected)
    # deterministic given the generator seed; different seeds, different interpolates
    assert gradient_penalty(D, real, fake, rng(11), labels, weight=5.0).item() == value.item()
    assert gradient_penalty(D, real, fake, rng(12), labels, weight=5.0).item() != value.item()


def test_gradient_penalty_passes_labels_and_trains_d_only():
    D = LinearD(4)
    real = torch.randn(3, 1, 2, 2)
    fake = torch.randn(3, 1, 2, 2, requires_grad=True)
    labels = torch.tensor([0, 1, 2])
    gradient_penalty(D, real, fake, rng(0), labels).backward()
    assert D.seen_labels is labels
    assert fake.grad is None and D.w.grad is not None
    gradient_penalty(D, real, fake, rng(0))
    assert D.seen_labels is None


# -------------------------------------------------------------------------- DiffAugment
def images(seed: int = 0, shape=(6, 3, 16, 16)) -> torch.Tensor:
    return torch.rand(shape, generator=rng(seed)) * 2 - 1


def test_diffaugment_is_deterministic_given_the_generator():
    x = images()
    a = diff_augment(x, rng(5))
    b = diff_augment(x, rng(5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, diff_augment(x, rng(6)))


def test_diffaugment_leaves_global_rng_alone():
    x = images()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = diff_augment(x, rng(5))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # a different global state must not change the result
    torch.testing.assert_close(diff_augment(x, rng(5)), first, rtol=0, atol=0)


def test_diffaugment_resume_is_exact():
    """A run whose step t draws from a generator seeded by (seed, t) gives the same
    augmentations when resumed at step t as when run straight through."""
    batches = [images(s) for s in range(5)]

    def run(start: int) -> list[torch.Tensor]:
        out = []
        for t in range(start, 5):
            g = rng(1000 + t)  # the step's seed
            real, fake = diff_augment(batches[t], g), diff_augment(-batches[t], g)
            out.append(torch.cat([real, fake]))
        return out

    full, resumed = run(0), run(3)
    for a, b in zip(full[3:], resumed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the real and fake batches of one step get independent draws
    g = rng(7)
    x = images()
    assert not torch.equal(diff_augment(x, g), diff_augment(x, g))


def test_diffaugment_is_differentiable():
    x = images(shape=(2, 1, 6, 6)).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: diff_augment(t, rng(3)), (x,))
    y = diff_augment(x, rng(3))
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_translation_moves_pixels_and_fills():
    x = images(shape=(8, 1, 8, 8))
    out = rand_translation(x, rng(2), ratio=0.25, fill=-7.0)
    for i in range(8):
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.full_like(x[i], -7.0)
                src = x[i, :, max(0, -dy):8 - max(0, dy), max(0, -dx):8 - max(0, dx)]
                shifted[:, max(0, dy):8 - max(0, -dy), max(0, dx):8 - max(0, -dx)] = src
                found |= torch.equal(out[i], shifted)
        assert found, f"image {i} is not a shift of its input by at most 2 pixels"


def test_cutout_blanks_a_square():
    x = torch.ones(16, 1, 8, 8)
    out = rand_cutout(x, rng(4), ratio=0.5, fill=0.0)
    blanked = (out == 0).flatten(1).sum(1)
    assert (blanked <= 16).all() and (blanked > 0).all()  # a 4x4 square, clipped at edges
    assert (blanked == 16).any()
    x.requires_grad_(True)
    rand_cutout(x, rng(4)).sum().backward()
    torch.testing.assert_close(x.grad, (out != 0).float())  # no gradient from the hole


def test_color_on_grey_keeps_shape_and_saturation_is_a_no_op():
    x = images(shape=(4, 1, 8, 8))
    out = diff_augment(x, rng(1), "color")
    assert out.shape == x.shape
    from genkit_gan.augment import rand_saturation
    torch.testing.assert_close(rand_saturation(x, rng(1)), x)


def test_policy_parsing():
    assert parse_policy("color,translation,cutout") == TRANSFORMS
    assert parse_policy("") == parse_policy(None) == parse_policy("none") == ()
    with pytest.raises(ValueError, match="unknown DiffAugment transform"):
        parse_policy("color,flip")
    x = images()
    assert diff_augment(x, rng(0), "") is x
    aug = DiffAugment("translation")
    torch.testing.assert_close(aug(x, rng(9)), diff_augment(x, rng(9), "translation"))


# -------------------------------------------------------------------- conditional layers
def test_conditional_group_norm_applies_per_class_parameters():
    norm = ConditionalGroupNorm(8, num_classes=3)
    with torch.no_grad():
        for k in range(3):
            norm.gamma.weight[k] = k + 1.0
            norm.beta.weight[k] = 10.0 * k
    x = torch.randn(6, 8, 4, 4)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    plain = F.group_norm(x, norm.norm.num_groups)
    out = norm(x, labels)
    for i, k in enumerate(labels.tolist()):
        torch.testing.assert_close(out[i], plain[i] * (k + 1.0) + 10.0 * k)
    # per-class parameters receive gradient only from their own class's samples
    norm.zero_grad()
    norm(x, torch.zeros(6, dtype=torch.long)).sum().backward()
    assert norm.gamma.weight.grad[1:].abs().sum() == 0 and norm.beta.weight.grad[0].abs().sum() > 0


def test_conditional_group_norm_is_batch_independent_and_starts_as_group_norm():
    norm = ConditionalGroupNorm(16, num_classes=10)
    x, labels = torch.randn(5, 16, 4, 4), torch.tensor([3, 1, 4, 1, 5])
    together = norm(x, labels)
    for i in range(5):
        torch.testing.assert_close(norm(x[i:i + 1], labels[i:i + 1])[0], together[i])
    torch.testing.assert_close(together, nn.GroupNorm(8, 16)(x))  # gamma 1, beta 0 at init


def test_unconditional_norm_is_affine_group_norm_and_labels_are_checked():
    norm = ConditionalGroupNorm(8)
    reference = nn.GroupNorm(8, 8)
    with torch.no_grad():
        norm.weight.uniform_()
        norm.bias.uniform_()
        reference.weight.copy_(norm.weight)
        reference.bias.copy_(norm.bias)
    x = torch.randn(3, 8, 2, 2)
    torch.testing.assert_close(norm(x), reference(x))
    with pytest.raises(ValueError, match="unconditional"):
        norm(x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="pass labels"):
        ConditionalGroupNorm(8, 2)(x)


def test_projection_head_by_hand():
    from genkit_gan.models import MLPDiscriminator

    D = MLPDiscriminator(image_size=4, hidden=5, num_classes=4)
    x, labels = torch.randn(3, 1, 4, 4), torch.tensor([0, 3, 3])
    h = D.features(x)  # (3, 5)
    expected = (h @ D.head.weight[0] + D.head.bias[0]
                + (D.label_projection.weight[labels] * h).sum(1))
    torch.testing.assert_close(D(x, labels), expected)
    # the class term alone changes with the label
    other = D(x, torch.tensor([1, 3, 3]))
    torch.testing.assert_close(D(x, labels)[0] - other[0],
                               ((D.label_projection.weight[0] - D.label_projection.weight[1])
                                * h[0]).sum())
    assert MLPDiscriminator(image_size=4, hidden=5)(x).shape == (3,)
    with pytest.raises(ValueError, match="pass labels"):
        D(x)


def test_projection_head_with_spectral_norm_and_up_block_shapes():
    from genkit_gan.models import MLPDiscriminator

    D = MLPDiscriminator(image_size=4, hidden=6, num_classes=3, spectral_norm=True)
    out = D(torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0]))
    assert out.shape == (4,) and torch.isfinite(out).all()
    block = CondUpBlock(8, 4, num_classes=3)
    y = block(torch.randn(2, 8, 4, 4), torch.tensor([0, 2]))
    assert y.shape == (2, 4, 8, 8) and (y >= 0).all()
