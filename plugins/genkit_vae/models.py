"""The VAE's networks: plain ``torch.nn.Module`` s that also save and load the Hugging Face
way (``huggingface_hub.PyTorchModelHubMixin``), so a checkpoint's folders open without
genkit::

    from genkit_vae.models import ConvDecoder
    decoder = ConvDecoder.from_pretrained("runs/vae/decoder")   # config.json + model.safetensors
    images = decoder.to_image(decoder(torch.randn(16, decoder.latent_dim)))  # (16, C, S, S)

The encoder halves the resolution with stride-2 convolutions down to 4x4 (widths doubling
per level from ``base_width``, capped at ``max_width``; ``blocks_per_level`` extra 3x3
convolutions at each resolution) and maps the features to the posterior's mean and
log-variance; the decoder mirrors it with stride-2 transposed convolutions. Image sizes
8, 16, 32, ... (4 * 2**k). Class conditioning (CVAE):
a label embedding joins the features in the encoder and z in the decoder.
"""

from __future__ import annotations

import math

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from genkit.plugin import hub_mixin_options

CONV_SIZES = tuple(4 * 2**k for k in range(1, 7))  # 8 .. 256
LIKELIHOODS = ("bernoulli", "gaussian")


def conv_levels(image_size: int) -> int:
    """Number of 2x resolution steps between 4x4 and ``image_size``."""
    return int(math.log2(image_size // 4))


def level_widths(image_size: int, base_width: int, max_width: int = 0) -> list[int]:
    """Encoder widths from the first level (S/2) down to 4x4: ``base_width`` doubling per
    level, capped at ``max_width`` (0: no cap). The decoder runs them in reverse."""
    widths = [base_width * 2**i for i in range(conv_levels(image_size))]
    return [min(w, max_width) for w in widths] if max_width else widths


def refine(width: int, blocks: int) -> list[nn.Module]:
    """``blocks`` shape-keeping 3x3 convolutions (with SiLU) at one resolution."""
    layers: list[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Conv2d(width, width, 3, 1, 1), nn.SiLU()]
    return layers


class ConvEncoder(nn.Module, PyTorchModelHubMixin,
                  **hub_mixin_options("vae", __name__, "ConvEncoder")):
    """q(z | x[, y]): images ``(B, C, S, S)`` in [-1, 1] → mean and log-variance ``(B, Z)``."""

    def __init__(self, image_size: int = 16, channels: int = 1, base_width: int = 32,
                 latent_dim: int = 16, num_classes: int = 0, max_width: int = 0,
                 blocks_per_level: int = 0) -> None:
        super().__init__()
        widths = level_widths(image_size, base_width, max_width)  # at S/2 .. 4
        layers: list[nn.Module] = []
        for w_in, w_out in zip([channels, *widths[:-1]], widths):
            layers += [nn.Conv2d(w_in, w_out, 4, 2, 1), nn.SiLU(),
                       *refine(w_out, blocks_per_level)]
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.label_embedding = nn.Embedding(num_classes, latent_dim) if num_classes else None
        features = widths[-1] * 16 + (latent_dim if num_classes else 0)
        self.head = nn.Linear(features, 2 * latent_dim)

    def forward(self, images: torch.Tensor,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(images)  # (B, W * 4 * 4)
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError("this encoder is class-conditional: pass labels")
            h = torch.cat([h, self.label_embedding(labels)], dim=1)  # (B, F + Z)
        mean, logvar = self.head(h).chunk(2, dim=1)  # (B, Z) each
        return mean, logvar.clamp(-30.0, 20.0)


class ConvDecoder(nn.Module, PyTorchModelHubMixin,
                  **hub_mixin_options("vae", __name__, "ConvDecoder")):
    """p(x | z[, y]): latents ``(B, Z)`` → the likelihood's parameter ``(B, C, S, S)``:
    Bernoulli logits, or the Gaussian mean in [-1, 1] units. :meth:`to_image` maps it to
    an image in [-1, 1]."""

    def __init__(self, latent_dim: int = 16, image_size: int = 16, channels: int = 1,
                 base_width: int = 32, num_classes: int = 0,
                 likelihood: str = "bernoulli", max_width: int = 0,
                 blocks_per_level: int = 0) -> None:
        super().__init__()
        self.latent_dim, self.likelihood = latent_dim, likelihood
        widths = level_widths(image_size, base_width, max_width)[::-1]  # at 4 .. S/2
        self.start_width = widths[0]
        self.label_embedding = nn.Embedding(num_classes, latent_dim) if num_classes else None
        in_dim = latent_dim * (2 if num_classes else 1)
        self.project = nn.Sequential(nn.Linear(in_dim, widths[0] * 16), nn.SiLU())
        blocks: list[nn.Module] = refine(widths[0], blocks_per_level)  # at 4x4
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            blocks += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1), nn.SiLU(),
                       *refine(w_out, blocks_per_level)]
        blocks.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError("this decoder is class-conditional: pass labels")
            z = torch.cat([z, self.label_embedding(labels)], dim=1)  # (B, 2Z)
        h = self.project(z).view(-1, self.start_width, 4, 4)  # (B, W0, 4, 4)
        return self.blocks(h)  # (B, C, S, S)

    def to_image(self, output: torch.Tensor) -> torch.Tensor:
        """The decoder's output as the mean image in [-1, 1] ``(B, C, S, S)``."""
        if self.likelihood == "bernoulli":
            return torch.sigmoid(output) * 2 - 1
        return output.clamp(-1, 1)
