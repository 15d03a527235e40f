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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genkit.plugin import (
    Generator,
    HubModules,
    StepContext,
    TensorDictDataset,
    TrainArgs,
    check,
    image_dataset,
    sample_generators,
    sample_labels,
    tensor_to_images,
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
LOSSES = ("nonsaturating", "hinge")


@dataclasses.dataclass
class GANConfig:
    """Hyper-parameters of the GAN (``genkit.create("gan", **fields)`` or ``--set k=v``)."""

    arch: str = "conv"  # conv (DCGAN) | mlp (tiny images)
    image_size: int = 16  # conv: 8, 16, 32, ... ; mlp: 4..64
    channels: int = 1  # 1 grey, 3 RGB
    latent_dim: int = 64
    base_width: int = 64  # conv: channels of the widest-resolution layer; mlp: hidden / 4
    num_classes: int = 0  # > 0: class-conditional (label embedding in G, projection in D)
    loss: str = "nonsaturating"  # nonsaturating | hinge
    spectral_norm: bool = False  # spectral normalisation of D's layers
    adam_betas: tuple[float, float] = (0.5, 0.999)

    def __post_init__(self) -> None:
        check(self.arch in ARCHS, f"unknown arch {self.arch!r}; use one of {', '.join(ARCHS)}")
        check(self.loss in LOSSES, f"unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
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
    """Sampling options (CLI: ``--temperature 0.8``)."""

    temperature: float = 1.0  # scale of z; < 1 trades diversity for typicality

    def __post_init__(self) -> None:
        check(self.temperature > 0, f"temperature must be positive, got {self.temperature}")


# ------------------------------------------------------------------------------ losses
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       kind: str = "nonsaturating") -> torch.Tensor:
    """D's loss: real → 1, fake → 0 (BCE on logits), or the hinge loss."""
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """G's loss: non-saturating ``-log D(G(z))`` (BCE against 1), or hinge's ``-D(G(z))``."""
    if kind == "hinge":
        return -fake_logits.mean()
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def mean_pairwise_distance(images: torch.Tensor,
                           labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L2 distance between pairs of a batch ``(B, C, S, S)``: a spread figure. With
    ``labels``, only pairs of the same label count (the spread within classes)."""
    x = images.detach().float().flatten(1)  # (B, D)
    if labels is None:
        return torch.pdist(x).mean()
    distances = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # (B, B)
    same = labels[:, None] == labels[None, :]
    same &= ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return distances[same].mean() if bool(same.any()) else distances.new_zeros(())


def diversity_ratio(fake: torch.Tensor, real: torch.Tensor,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
    """Spread of generated images relative to real ones (a 0-d tensor): ~1 healthy, near 0
    mode collapse. With ``labels`` (the labels of both batches, row by row) the spread is
    measured within classes, where a conditional GAN collapses."""
    return (mean_pairwise_distance(fake, labels)
            / mean_pairwise_distance(real, labels).clamp_min(1e-8))


# ------------------------------------------------------------------------- data & images
class GANGenerator(HubModules, Generator):
    """A DCGAN-style GAN (see the module docstring for the training step and layout)."""

    Config = GANConfig
    SampleOptions = GANSampleOptions
    modality = "image"
    conditions = ("label",)
    module_names = ("generator", "discriminator")
    ema_modules = ("generator",)
    default_data = "digits"
    train_defaults = {"lr": 2e-4, "batch_size": 64, "steps": 5000, "ema_decay": 0.999}
    manual_optimization = True

    generator: nn.Module
    discriminator: nn.Module

    def accepted_conditions(self) -> tuple[str, ...]:
        return ("label",) if self.config.num_classes > 0 else ()

    def build(self) -> None:
        c = self.config
        if c.arch == "conv":
            self.generator = ConvGenerator(c.latent_dim, c.image_size, c.channels,
                                           c.base_width, c.num_classes)
            self.discriminator = ConvDiscriminator(c.image_size, c.channels, c.base_width,
                                                   c.num_classes, c.spectral_norm)
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
        """Two Adam optimizers (DCGAN's betas (0.5, 0.999) by default), one per network."""
        betas = tuple(self.config.adam_betas)
        return {name: torch.optim.Adam(module.parameters(), lr=args.lr, betas=betas)
                for name, module in self.modules().items()}

    def training_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, Any]:
        """One D step then one G step on the same generated batch (see the module docstring)."""
        real = batch["image"]  # (B, C, S, S)
        labels = batch.get("label") if self.config.num_classes else None
        G, D, kind = ctx.models["generator"], ctx.models["discriminator"], self.config.loss
        z = torch.randn(real.shape[0], self.config.latent_dim, generator=ctx.generator,
                        device=ctx.device)  # (B, Z)
        fake = G(z, labels)  # (B, C, S, S): the one generator forward of this step

        both_labels = None if labels is None else torch.cat([labels, labels])
        logits = D(torch.cat([real, fake.detach()]), both_labels)  # (2B,)
        real_logits, fake_logits = logits.chunk(2)
        d_loss = discriminator_loss(real_logits, fake_logits, kind)
        ctx.optimize("discriminator", d_loss)

        g_loss = generator_loss(D(fake, labels), kind)
        ctx.optimize("generator", g_loss)
        return {
            "loss": (d_loss + g_loss).detach(),
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
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
        from ``torch.Generator().manual_seed(seeds[i])``."""
        return tensor_to_images(self._generate_tensor(seeds, conditions, options.temperature))

    def _generate_tensor(self, seeds: list[int], conditions: list[dict[str, Any]],
                         temperature: float) -> torch.Tensor:
        gens = sample_generators(seeds, self.device)
        z = torch.stack([torch.randn(self.config.latent_dim, generator=g, device=self.device)
                         for g in gens]) * temperature  # (B, Z)
        labels = (sample_labels(conditions, gens, self.config.num_classes, self.device)
                  if self.config.num_classes else None)
        return self.generator(z, labels)  # (B, C, S, S)
