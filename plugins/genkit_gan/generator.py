"""The ``gan`` generator: a DCGAN-style GAN under genkit's training engine.

Training (one engine step, :meth:`GANGenerator.training_step`):

1. z ~ N(0, I) from the step's seeded RNG; ``fake = G(z)``: ONE generator forward per step.
2. Discriminator step on ``[real, fake.detach()]`` (one forward), BCE-with-logits (or
   hinge) loss, its own Adam optimizer. The detach keeps this step out of G's graph.
3. Generator step on ``D(fake)`` with the non-saturating loss ``-log D(G(z))`` (or hinge's
   ``-D(G(z))``), its own Adam optimizer.

The engine keeps an EMA of the generator (``ema_modules``); sampling and saving use it.
A diversity figure (mean pairwise distance of the generated batch over that of the real
batch, within classes for a conditional GAN; near 0 means mode collapse) is logged every
step and lands in the training summary.

Checkpoint layout (Hugging Face's ``PyTorchModelHubMixin``)::

    generator/config.json, generator/model.safetensors          (EMA weights)
    discriminator/config.json, discriminator/model.safetensors

so ``ConvGenerator.from_pretrained("DIR/generator")`` works without genkit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genkit.plugin import (
    Generator,
    HubModules,
    SamplingError,
    StepContext,
    TensorDictDataset,
    TrainArgs,
    check,
    image_dataset,
    pil_to_tensor,
    sample_generators,
    sample_labels,
    sample_seed,
    save_png,
    strip,
    tensor_to_images,
)
from genkit_gan.augment import diff_augment, parse_policy
from genkit_gan.editing import GANEditing
from genkit_gan.layers import UPSAMPLING
from genkit_gan.losses import (
    LOSSES,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
    real_fake_scores,
)
from genkit_gan.models import (
    CONV_SIZES,
    MLP_SIZE_RANGE,
    ConvDiscriminator,
    ConvGenerator,
    MLPDiscriminator,
    MLPGenerator,
)

ARCHS = ("conv", "mlp")
CONDITIONING = ("norm", "concat")


@dataclasses.dataclass
class GANConfig:
    """Hyper-parameters of the GAN (``genkit.create("gan", **fields)`` or ``--set k=v``)."""

    arch: str = "conv"  # conv (DCGAN) | mlp (tiny images)
    image_size: int = 16  # conv: 8, 16, 32, ... ; mlp: 4..64
    channels: int = 1  # 1 grey, 3 RGB
    latent_dim: int = 64
    base_width: int = 64  # conv: channels of the widest-resolution layer; mlp: hidden / 4
    num_classes: int = 0  # > 0: class-conditional (see conditioning; projection in D)
    conditioning: str = "norm"  # norm (label-modulated GroupNorm in G) | concat (0.1.0's way)
    upsample: str = "transposed"  # conv G: transposed (DCGAN) | nearest (+ 3x3: no checkerboard)
    loss: str = "nonsaturating"  # nonsaturating | hinge | lsgan | wgan-gp (see genkit_gan.losses)
    r1_gamma: float = 0.0  # R1 penalty on real data (0: off); 1 suits small data sets
    r1_every: int = 4  # lazy R1: every k discriminator steps, scaled by k
    gp_weight: float = 10.0  # wgan-gp: weight of the gradient penalty
    n_critic: int = 1  # discriminator steps per generator step (5 for wgan-gp)
    d_lr_ratio: float = 1.0  # the discriminator's learning rate over the generator's (TTUR)
    diffaugment: str = ""  # DiffAugment policy on D's inputs: "color,translation,cutout"
    spectral_norm: bool = False  # spectral normalisation of D's layers
    d_depth: int = 1  # conv D: convolutions per resolution (1: DCGAN; 2 adds a 3x3 each)
    d_width: int = 0  # conv D: channels of its widest-resolution layer (0: base_width)
    minibatch_std: int = 0  # conv D: group size of a minibatch-std channel (ProGAN: 4; 0 off)
    adam_betas: tuple[float, float] = (0.5, 0.999)

    def __post_init__(self) -> None:
        check(self.arch in ARCHS, f"unknown arch {self.arch!r}; use one of {', '.join(ARCHS)}")
        check(self.loss in LOSSES, f"unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        check(self.upsample in UPSAMPLING, f"unknown upsample {self.upsample!r}; use one of "
              f"{', '.join(UPSAMPLING)}")
        check(self.conditioning in CONDITIONING, f"unknown conditioning {self.conditioning!r}; "
              f"use one of {', '.join(CONDITIONING)}")
        check(self.n_critic >= 1, f"n_critic must be at least 1, got {self.n_critic}")
        check(self.d_depth >= 1, f"d_depth must be at least 1, got {self.d_depth}")
        check(self.d_width >= 0, f"d_width must be 0 (base_width) or more, got {self.d_width}")
        check(self.minibatch_std >= 0, "minibatch_std must be 0 (off) or a group size, got "
                                       f"{self.minibatch_std}")
        check(not self.minibatch_std or self.arch == "conv", "minibatch_std is for arch=conv; "
              "drop it for arch=mlp")
        check(self.r1_every >= 1, f"r1_every must be at least 1, got {self.r1_every}")
        check(self.r1_gamma >= 0 and self.gp_weight >= 0, "r1_gamma and gp_weight must be >= 0")
        check(self.d_lr_ratio > 0, f"d_lr_ratio must be positive, got {self.d_lr_ratio}")
        try:
            parse_policy(self.diffaugment)
        except ValueError as exc:
            check(False, f"diffaugment: {exc}")
        check(self.channels in (1, 3), f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        for key in ("image_size", "channels", "latent_dim", "base_width"):
            check(getattr(self, key) > 0, f"{key} must be positive, got {getattr(self, key)}")
        check(self.num_classes >= 0, f"num_classes must be 0 (unconditional) or more, "
                                     f"got {self.num_classes}")
        if self.arch == "conv":
            check(self.image_size in CONV_SIZES,
                  f"arch 'conv' supports image_size {', '.join(map(str, CONV_SIZES))}; got "
                  f"{self.image_size} (use one of these, or arch=mlp for 4..64)")
        else:
            low, high = MLP_SIZE_RANGE
            check(low <= self.image_size <= high,
                  f"arch 'mlp' supports image_size {low}..{high}; got {self.image_size}")
        check(len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
              f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")


@dataclasses.dataclass
class GANSampleOptions:
    """Sampling options (CLI: ``--truncation 0.7``)."""

    temperature: float = 1.0  # scale of z (the conv G's first norm undoes it: use truncation)
    truncation: float = 1.0  # truncation trick: G's first features pulled to their mean, psi in (0, 1]
    interpolate: int = 0  # > 1: also write OUT/interpolation.png, a spherical walk of N frames

    def __post_init__(self) -> None:
        check(self.temperature > 0, f"temperature must be positive, got {self.temperature}")
        check(0 < self.truncation <= 1, f"truncation must be in (0, 1], got {self.truncation}")
        check(self.interpolate == 0 or self.interpolate >= 2,
              f"interpolate must be 0 (off) or at least 2 frames, got {self.interpolate}")


# --------------------------------------------------------------------------- diversity
def mean_pairwise_distance(images: torch.Tensor,
                           labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L2 distance between pairs of a batch ``(B, C, S, S)``: a spread figure. With
    ``labels``, only pairs of the same label count (the spread within classes)."""
    x = images.detach().float().flatten(1)  # (B, D)
    distances = torch.pdist(x)  # (B * (B - 1) / 2,): each pair once, exact (no matmul trick)
    if labels is None:
        return distances.mean()
    first, second = torch.triu_indices(len(x), len(x), 1, device=x.device)
    same = labels[first] == labels[second]
    return distances[same].mean() if bool(same.any()) else distances.new_zeros(())


def diversity_ratio(fake: torch.Tensor, real: torch.Tensor,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
    """Spread of generated images relative to real ones (a 0-d tensor): ~1 healthy, near 0
    mode collapse. With ``labels`` (the labels of both batches, row by row) the spread is
    measured within classes, where a conditional GAN collapses."""
    return (mean_pairwise_distance(fake, labels)
            / mean_pairwise_distance(real, labels).clamp_min(1e-8))


# ------------------------------------------------------------------------- data & images
class GANGenerator(GANEditing, HubModules, Generator):
    """A DCGAN-style GAN (see the module docstring for the training step and layout)."""

    Config = GANConfig
    SampleOptions = GANSampleOptions
    modality = "image"
    conditions = ("label",)
    module_names = ("generator", "discriminator")
    ema_modules = ("generator",)
    default_data = "digits"
    train_defaults = {"lr": 2e-4, "batch_size": 64, "steps": 5000, "ema_decay": 0.999}
    # checkpoints saved before label-modulated norms existed concatenated the label to z
    legacy_config = {"conditioning": "concat"}
    manual_optimization = True

    generator: nn.Module
    discriminator: nn.Module

    def accepted_conditions(self) -> tuple[str, ...]:
        return ("label",) if self.config.num_classes > 0 else ()

    def build(self) -> None:
        c = self.config
        if c.arch == "conv":
            self.generator = ConvGenerator(c.latent_dim, c.image_size, c.channels,
                                           c.base_width, c.num_classes, c.conditioning,
                                           c.upsample)
            self.discriminator = ConvDiscriminator(c.image_size, c.channels,
                                                   c.d_width or c.base_width, c.num_classes,
                                                   c.spectral_norm, c.d_depth,
                                                   c.minibatch_std)
        else:
            hidden = c.base_width * 4
            self.generator = MLPGenerator(c.latent_dim, c.image_size, c.channels, hidden,
                                          c.num_classes)
            self.discriminator = MLPDiscriminator(c.image_size, c.channels, hidden,
                                                  c.num_classes, c.spectral_norm)

    def make_dataset(self, data: Any, split: str) -> TensorDictDataset:
        c = self.config
        return image_dataset(data, c.image_size, c.channels, c.num_classes, "gan")

    def configure_optimizers(self, args: TrainArgs) -> dict[str, torch.optim.Optimizer]:
        """Two Adam optimizers (DCGAN's betas (0.5, 0.999) by default), one per network;
        the discriminator's learning rate is ``d_lr_ratio`` times the generator's (TTUR)."""
        betas = tuple(self.config.adam_betas)
        scale = {"generator": 1.0, "discriminator": self.config.d_lr_ratio}
        return {name: torch.optim.Adam(module.parameters(), lr=args.lr * scale[name], betas=betas)
                for name, module in self.modules().items()}

    def training_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, Any]:
        """``n_critic`` D steps, then one G step (see the module docstring). DiffAugment
        runs on every image D sees, real and fake alike; all randomness comes from
        ``ctx.generator``, so a resumed run repeats an uninterrupted one."""
        c = self.config
        real = batch["image"]  # (B, C, S, S)
        labels = batch.get("label") if c.num_classes else None
        G, D, rng = ctx.models["generator"], ctx.models["discriminator"], ctx.generator
        policy = parse_policy(c.diffaugment)

        def seen(x: torch.Tensor) -> torch.Tensor:  # what D sees
            return diff_augment(x, rng, policy) if policy else x

        def latents() -> torch.Tensor:
            return torch.randn(real.shape[0], c.latent_dim, generator=rng, device=ctx.device)

        fake = G(latents(), labels)  # (B, C, S, S)
        for k in range(c.n_critic):
            if k:
                with torch.no_grad():
                    fake_d = G(latents(), labels)
            else:
                fake_d = fake.detach()
            lazy_r1 = c.r1_gamma > 0 and (ctx.step * c.n_critic + k) % c.r1_every == 0
            real_in = real.detach().requires_grad_(lazy_r1)
            if c.minibatch_std and real.shape[0] % c.minibatch_std:
                # D pools over groups of consecutive images: one would hold real and fake
                real_logits, fake_logits = D(seen(real_in), labels), D(seen(fake_d), labels)
            else:  # one forward for both (minibatch-std groups stay within each half)
                both_labels = None if labels is None else torch.cat([labels, labels])
                logits = D(torch.cat([seen(real_in), seen(fake_d)]), both_labels)  # (2B,)
                real_logits, fake_logits = logits.chunk(2)
            d_loss = discriminator_loss(real_logits, fake_logits, c.loss)
            if lazy_r1:
                d_loss = d_loss + r1_penalty(real_logits, real_in, c.r1_gamma, c.r1_every)
            if c.loss == "wgan-gp":
                d_loss = d_loss + gradient_penalty(D, seen(real), seen(fake_d), rng, labels,
                                                   c.gp_weight)
            ctx.optimize("discriminator", d_loss)

        g_loss = generator_loss(D(seen(fake), labels), c.loss)
        ctx.optimize("generator", g_loss)
        return {
            "loss": (d_loss + g_loss).detach(),
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            **real_fake_scores(real_logits, fake_logits, c.loss),
            "diversity": diversity_ratio(fake, real, labels),
        }

    def evaluate(self, data: Any) -> dict[str, float]:
        """Held-out figures: the diversity ratio of up to 256 samples against the held-out
        images (within classes for a conditional model), and the discriminator's mean
        score of real and generated images."""
        c = self.config
        held_out = image_dataset(data, c.image_size, c.channels, c.num_classes, "gan").tensors
        images, labels = held_out["image"], held_out.get("label")
        n = min(256, images.shape[0])
        real = images[:n].to(self.device)
        conditions = [{"label": int(y)} for y in labels[:n]] if labels is not None else [{}] * n
        fake = self._generate_tensor(list(range(n)), conditions, 1.0)
        y = None if labels is None else labels[:n].to(self.device)
        d_real = torch.sigmoid(self.discriminator(real, y)).mean()
        d_fake = torch.sigmoid(self.discriminator(fake, y)).mean()
        return {"diversity": float(diversity_ratio(fake, real, y)), "d_real": float(d_real),
                "d_fake": float(d_fake)}

    # ------------------------------------------------------------------------ sampling
    def generate(self, seeds: list[int], conditions: list[dict[str, Any]], options: Any,
                 stream: Callable[[str], None] | None = None) -> list[Any]:
        """One image per seed: z (then a label, for a conditional model given none) drawn
        from ``torch.Generator().manual_seed(seeds[i])``, scaled by ``temperature``, and
        ``truncation`` applied by the generator network (towards its mean latent)."""
        return tensor_to_images(self._generate_tensor(
            seeds, conditions, options.temperature, options.truncation))

    def _generate_tensor(self, seeds: list[int], conditions: list[dict[str, Any]],
                         scale: float, truncation: float = 1.0) -> torch.Tensor:
        gens = sample_generators(seeds, self.device)
        z = torch.stack([torch.randn(self.config.latent_dim, generator=g, device=self.device)
                         for g in gens]) * scale  # (B, Z)
        labels = self._labels_for(conditions, gens)
        return self.generator(z, labels, truncation=truncation)  # (B, C, S, S)

    def _labels_for(self, conditions: list[dict[str, Any]],
                    gens: list[torch.Generator]) -> torch.Tensor | None:
        if not self.config.num_classes:
            if any(c.get("label") is not None for c in conditions):
                raise SamplingError("this gan is unconditional: drop --label (train with "
                                    "--set num_classes=N for a conditional model)")
            return None
        return sample_labels(conditions, gens, self.config.num_classes, self.device)

    # -------------------------------------------------------------------- latent tools
    def write_extras(self, options: Any, seed: int, out: Path | None) -> list[Path]:
        """With ``interpolate = N``: ``OUT/interpolation.png``, N frames along the great
        circle between the latents of samples 0 and 1 of ``seed`` (a conditional model
        walks across labels from one end's label to the other's)."""
        if not options.interpolate:
            return []
        if out is None:
            raise SamplingError("--interpolate writes DIR/interpolation.png: give --out DIR")
        gens = sample_generators([sample_seed(seed, 0), sample_seed(seed, 1)], self.device)
        ends = torch.stack([torch.randn(self.config.latent_dim, generator=g, device=self.device)
                            for g in gens]) * options.temperature  # (2, Z)
        t = torch.linspace(0, 1, options.interpolate, device=self.device)
        z = slerp(ends[0], ends[1], t)  # (N, Z)
        labels = self._labels_for([{}, {}], gens)
        if labels is not None:  # the label switches half way
            labels = torch.where(t < 0.5, labels[0], labels[1])
        with self.inference():
            frames = tensor_to_images(self.generator(z, labels, truncation=options.truncation))
        return [save_png(strip(frames), Path(out) / "interpolation.png")]

    def project(self, images: Any, steps: int = 200, seed: int = 0,
                labels: Any = None, lr: float = 0.05) -> torch.Tensor:
        """The latents ``(N, Z)`` whose generated images come closest (pixel MSE) to
        ``images`` (PIL images or a tensor ``(N, C, S, S)`` in [-1, 1]): Adam on z from a
        start drawn from ``seed``, with a pull towards the prior (z stays typical)."""
        c = self.config
        x = images.to(self.device) if isinstance(images, torch.Tensor) else \
            pil_to_tensor(list(images), c.image_size, c.channels).to(self.device)
        gens = sample_generators([sample_seed(seed, i) for i in range(len(x))], self.device)
        y = None
        if c.num_classes:
            given = labels if labels is not None else [None] * len(x)
            given = [given] * len(x) if isinstance(given, int) else list(given)
            y = sample_labels([{"label": lab} for lab in given], gens, c.num_classes, self.device)
        z = torch.stack([torch.randn(c.latent_dim, generator=g, device=self.device)
                         for g in gens]).requires_grad_(True)  # (N, Z)
        opt = torch.optim.Adam([z], lr=lr)
        G = self.generator
        with self.sampling_weights(), torch.enable_grad():
            was = G.training
            G.eval()
            for p in G.parameters():
                p.requires_grad_(False)
            try:
                for _ in range(steps):
                    loss = F.mse_loss(G(z, y), x) + 1e-3 * z.pow(2).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            finally:
                for p in G.parameters():
                    p.requires_grad_(True)
                G.train(was)
        return z.detach()


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents ``a``, ``b`` ``(Z,)`` at ``t`` ``(N,)``:
    ``(N, Z)``; it keeps the norm typical of N(0, I) along the way, where a straight line
    passes through improbable short latents."""
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-8)
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    t = t[:, None]
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
