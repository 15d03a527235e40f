"""Layers for class-conditional GANs (plain torch; no genkit imports).

- :class:`ConditionalGroupNorm`: the generator's label-modulated normalisation. It plays
  the part of conditional batch norm (de Vries et al. 2017; Miyato & Koyama 2018; BigGAN)
  -- normalise, then scale and shift with *per-class* gamma and beta -- but normalises
  with GroupNorm, per sample, so a sample never depends on the batch it is drawn in (the
  reason genkit's generators use GroupNorm at all) and the EMA weights used for
  sampling need no running statistics. With ``num_classes=0`` it is a plain affine
  GroupNorm, so one generator class serves both cases.
- :class:`CondUpBlock`: the generator's 2x up-sampling step built on the conditional
  norm (:func:`up_conv` -> ConditionalGroupNorm -> ReLU), as in
  ``genkit_gan.models.ConvGenerator``'s blocks.
- :func:`up_conv`: a 2x up-sampling convolution, DCGAN's transposed 4x4 stride-2 one or
  nearest-neighbour up-sampling then a 3x3 convolution (no checkerboard artefacts,
  Odena et al. 2016).
- :class:`MinibatchStd`: the discriminator's minibatch standard-deviation channel.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def default_groups(num_channels: int, max_groups: int = 8) -> int:
    """Up to ``max_groups`` groups that divide ``num_channels`` (as models.group_norm)."""
    return math.gcd(num_channels, max_groups)


class ConditionalGroupNorm(nn.Module):
    """GroupNorm without affine parameters, then ``gamma[y] * x + beta[y]`` per class.

    ``x`` ``(B, C, ...)``, ``labels`` ``(B,)`` long. gamma starts at 1 and beta at 0 for
    every class, so at initialisation it equals a plain GroupNorm. With
    ``num_classes=0`` there is one shared gamma/beta (a plain affine GroupNorm) and
    ``labels`` must be None.
    """

    def __init__(self, num_channels: int, num_classes: int = 0, num_groups: int | None = None,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.num_channels, self.num_classes = num_channels, num_classes
        self.norm = nn.GroupNorm(num_groups or default_groups(num_channels), num_channels,
                                 eps=eps, affine=False)
        if num_classes:
            self.gamma = nn.Embedding(num_classes, num_channels)
            self.beta = nn.Embedding(num_classes, num_channels)
            nn.init.ones_(self.gamma.weight)
            nn.init.zeros_(self.beta.weight)
        else:
            self.weight = nn.Parameter(torch.ones(num_channels))
            self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x)
        shape = (x.shape[0], self.num_channels) + (1,) * (x.dim() - 2)
        if not self.num_classes:
            if labels is not None:
                raise ValueError("this norm is unconditional (num_classes=0): pass no labels")
            return h * self.weight.view(1, -1, *shape[2:]) + self.bias.view(1, -1, *shape[2:])
        if labels is None:
            raise ValueError("this norm is class-conditional: pass labels")
        return h * self.gamma(labels).view(shape) + self.beta(labels).view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, num_classes={self.num_classes}, groups={self.norm.num_groups}"


UPSAMPLING = ("transposed", "nearest")


def up_conv(in_channels: int, out_channels: int, mode: str, bias: bool) -> nn.Module:
    """A convolution that doubles the side: ``mode`` "transposed" (4x4, stride 2: DCGAN's,
    whose overlapping strides leave a checkerboard) or "nearest" (nearest-neighbour
    up-sampling, then 3x3)."""
    if mode == "transposed":
        return nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=bias)
    if mode == "nearest":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                             nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=bias))
    raise ValueError(f"unknown upsampling {mode!r}; use one of {', '.join(UPSAMPLING)}")


class MinibatchStd(nn.Module):
    """ProGAN's minibatch standard deviation (Karras et al. 2018), the discriminator's view
    of variety: one channel more, holding the standard deviation of the features across a
    group of ``group`` consecutive images, averaged over features and positions. A
    generator that draws too little variety makes that channel unlike a real batch's, so
    D can tell it apart and push G to spread out. Groups are consecutive, so images passed
    in separate calls (real and fake) never share one."""

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, C + 1, H, W)
        n, _, h, w = x.shape
        g = math.gcd(n, self.group)  # a batch that the group does not divide: smaller groups
        spread = x.reshape(n // g, g, *x.shape[1:]).var(dim=1, unbiased=False)  # (N/g, C, H, W)
        spread = spread.add(1e-8).sqrt().mean(dim=(1, 2, 3))  # (N/g,)
        channel = spread.repeat_interleave(g).view(n, 1, 1, 1).expand(n, 1, h, w)
        return torch.cat([x, channel], dim=1)


class CondUpBlock(nn.Module):
    """2x up-sampling: :func:`up_conv` -> :class:`ConditionalGroupNorm` -> ReLU.
    ``forward(x, labels)``: ``(B, C_in, S, S)`` -> ``(B, C_out, 2S, 2S)``."""

    def __init__(self, in_channels: int, out_channels: int, num_classes: int = 0,
                 upsample: str = "transposed") -> None:
        super().__init__()
        self.conv = up_conv(in_channels, out_channels, upsample, bias=False)
        self.norm = ConditionalGroupNorm(out_channels, num_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x), labels))
