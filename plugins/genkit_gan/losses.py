"""GAN losses and discriminator regularisers (plain torch; no genkit imports).

Every loss takes the discriminator's raw outputs ("logits" or critic scores, shape
``(B,)``) and returns a 0-d tensor to *minimise*:

=================  ==========================================  ==============================
kind               discriminator loss                          generator loss
=================  ==========================================  ==============================
``nonsaturating``  ``softplus(-D(x)) + softplus(D(G(z)))``      ``softplus(-D(G(z)))``
                   (BCE: real -> 1, fake -> 0)                 (``-log sigmoid D(G(z))``)
``hinge``          ``relu(1 - D(x)) + relu(1 + D(G(z)))``      ``-D(G(z))``
``lsgan``          ``((D(x) - 1)^2 + D(G(z))^2) / 2``           ``(D(G(z)) - 1)^2 / 2``
``wgan-gp``        ``D(G(z)) - D(x)`` (+ :func:`gradient_      ``-D(G(z))``
                   penalty`, added by the caller)
=================  ==========================================  ==============================

When to use which:

- ``nonsaturating`` (Goodfellow et al. 2014; the default): the standard choice. With a
  discriminator regulariser (R1, :func:`r1_penalty`) and DiffAugment it is the StyleGAN2
  (-ADA) recipe, the strongest on small data sets. Without any regulariser the
  discriminator overfits a small data set and samples degrade.
- ``hinge`` (Lim & Ye 2017; SNGAN/BigGAN): pairs with spectral normalisation of D and a
  projection discriminator for class-conditional models; the margin stops D pushing
  confident scores further, which keeps its gradients useful.
- ``lsgan`` (Mao et al. 2017): least squares; smooth, non-vanishing gradients for fakes
  far from the decision boundary. A reasonable alternative when non-saturating training
  oscillates; rarely better than NS + R1.
- ``wgan-gp`` (Gulrajani et al. 2017): the Wasserstein critic with a gradient penalty
  (weight 10) on random interpolates of real and fake; needs several critic steps per
  generator step (``n_critic`` 5 in the paper) and Adam betas (0, 0.9) or (0.5, 0.9).
  Its D loss tracks sample quality, but it is slower (the penalty costs an extra
  backward pass and ``n_critic`` D steps per G step). The critic must not use batch norm.

Regularisers:

- :func:`r1_penalty` (Mescheder et al. 2018): ``gamma/2 * E_real ||grad_x D(x)||^2`` on
  real data only; it penalises D for being steep at the data, the regulariser that makes
  non-saturating GANs converge. Lazy regularisation (StyleGAN2): compute it every ``k``
  D steps and multiply by ``k`` (``every=k``), which keeps the expected strength.
  Typical gamma: 0.1-1 for small, low-resolution data sets; 10 for FFHQ-sized images.
- :func:`gradient_penalty` (WGAN-GP): ``weight * E (||grad D(x_hat)|| - 1)^2`` on
  interpolates ``x_hat = a x + (1 - a) G(z)``, ``a ~ U(0, 1)`` per sample from a passed
  ``torch.Generator`` (so a resumed run draws the same interpolates).
- Spectral normalisation (Miyato et al. 2018) is a layer wrapper, not a loss:
  ``genkit_gan.models.maybe_sn``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("nonsaturating", "hinge", "lsgan", "wgan-gp")
DEFAULT_LOSS = "nonsaturating"


def check_loss(kind: str) -> str:
    """``kind`` itself when it is a known loss name, else a one-line ``ValueError``."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; use one of {', '.join(LOSSES)}")
    return kind


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       kind: str = DEFAULT_LOSS) -> torch.Tensor:
    """The discriminator's (critic's) loss on its raw outputs for real ``(B,)`` and
    generated ``(B',)`` images; lower when it scores real high and fake low.

    ``wgan-gp`` returns only the Wasserstein term; add :func:`gradient_penalty`.
    """
    check_loss(kind)
    if kind == "nonsaturating":  # BCE with logits, real -> 1, fake -> 0 (stable softplus form)
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "lsgan":
        return 0.5 * ((real_logits - 1) ** 2).mean() + 0.5 * (fake_logits ** 2).mean()
    return fake_logits.mean() - real_logits.mean()  # wgan-gp


def generator_loss(fake_logits: torch.Tensor, kind: str = DEFAULT_LOSS) -> torch.Tensor:
    """The generator's loss on the discriminator's raw outputs for generated images
    ``(B,)``; lower when D scores them higher (each loss's gradient pushes D(G(z)) up)."""
    check_loss(kind)
    if kind == "nonsaturating":  # -log sigmoid(D(G(z))): strong gradients early on
        return F.softplus(-fake_logits).mean()
    if kind == "lsgan":
        return 0.5 * ((fake_logits - 1) ** 2).mean()
    return -fake_logits.mean()  # hinge, wgan-gp


def real_fake_scores(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                     kind: str = DEFAULT_LOSS) -> dict[str, torch.Tensor]:
    """Figures to log: ``d_real``/``d_fake``, D's mean probability "real" for the
    sigmoid-based losses (nonsaturating), else the mean raw score (hinge, lsgan, wgan-gp;
    for wgan-gp ``d_real - d_fake`` estimates the Wasserstein distance)."""
    check_loss(kind)
    if kind == "nonsaturating":
        return {"d_real": torch.sigmoid(real_logits.detach()).mean(),
                "d_fake": torch.sigmoid(fake_logits.detach()).mean()}
    return {"d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}


def r1_penalty(d_out_real: torch.Tensor, real_images: torch.Tensor, gamma: float = 1.0,
               every: int = 1) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ``every * gamma / 2 * mean_i ||grad_x D(x_i)||^2``.

    Args:
        d_out_real: D's raw outputs ``(B,)`` on ``real_images``, computed in a graph
            where ``real_images`` requires grad (``real.detach().requires_grad_(True)``
            *before* any augmentation and the D forward).
        real_images: the leaf tensor ``(B, C, H, W)`` the gradient is taken against.
        gamma: penalty weight.
        every: lazy regularisation interval k: call this every k-th D step and it is
            scaled by k, so its expected strength matches penalising every step.

    Returns a 0-d tensor to add to D's loss (it carries a graph: ``create_graph``).
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty: real_images must require grad before the D forward "
                         "(real = real.detach().requires_grad_(True))")
    (grad,) = torch.autograd.grad(d_out_real.sum(), real_images, create_graph=True)
    squared_norm = grad.pow(2).flatten(1).sum(1)  # (B,)
    return squared_norm.mean() * (gamma / 2) * every


def gradient_penalty(D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator_rng: torch.Generator, labels: torch.Tensor | None = None,
                     weight: float = 10.0, target: float = 1.0) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``weight * mean_i (||grad D(x_hat_i)|| - target)^2``
    with ``x_hat_i = a_i real_i + (1 - a_i) fake_i`` and ``a_i ~ U(0, 1)`` drawn from
    ``generator_rng`` (on its device; moved to the images' device), so the same generator
    state gives the same penalty.

    ``D(x, labels)`` is called when ``labels`` is given, else ``D(x)``. ``fake`` is
    detached (the penalty trains D only). Returns a 0-d tensor with a graph.
    """
    b = real.shape[0]
    alpha = torch.rand(b, *([1] * (real.dim() - 1)), generator=generator_rng,
                       device=generator_rng.device).to(real.device, real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = D(x_hat) if labels is None else D(x_hat, labels)  # (B,)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norm = (grad.pow(2).flatten(1).sum(1) + 1e-12).sqrt()  # (B,); eps: finite grad at 0
    return weight * ((norm - target) ** 2).mean()
