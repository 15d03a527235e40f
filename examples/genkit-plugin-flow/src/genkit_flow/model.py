"""RealNVP (Dinh et al., 2017): an invertible network made of affine coupling layers.

A coupling layer keeps part of its input ``x_a`` as it is and transforms the rest
``x_b`` with a scale and shift predicted from ``x_a``::

    y_a = x_a
    y_b = x_b * exp(s(x_a)) + t(x_a)        log|det J| = sum(s(x_a))

so the inverse and the log-determinant are exact and cheap. ``x_a`` is picked by a
checkerboard mask over pixels or by splitting the channels in two, alternating which part
is kept. The multi-scale architecture squeezes space into channels (``(C, S, S)`` ->
``(4C, S/2, S/2)``) and factors half of the variables out at each scale::

    scale k < K-1:  3 checkerboard couplings, squeeze, 3 channel couplings, factor out half
    scale K-1:      4 checkerboard couplings

:class:`RealNVP` maps an image ``(B, C, S, S)`` to a latent ``(B, C*S*S)`` and back.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def checkerboard(size: int, parity: int) -> torch.Tensor:
    """A ``(1, 1, size, size)`` mask: 1 where ``(row + col) % 2 == parity`` (kept pixels)."""
    rows = torch.arange(size).view(-1, 1)
    cols = torch.arange(size).view(1, -1)
    return ((rows + cols) % 2 == parity).float().view(1, 1, size, size)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, S, S)`` -> ``(B, 4C, S/2, S/2)``: each 2x2 block of pixels becomes channels."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2)  # (B, C, H/2, 2, W/2, 2)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze`."""
    b, c, h, w = x.shape
    x = x.view(b, c // 4, 2, 2, h, w)  # (B, C/4, 2, 2, H, W)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, h * 2, w * 2)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` at constant width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class ScaleShiftNet(nn.Module):
    """Predicts a log-scale ``s`` and a shift ``t`` (each ``(B, out, S, S)``) from its input.

    The last convolution starts at zero, so every coupling starts as the identity: a deep
    flow then trains stably from the first step.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, blocks: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.out = nn.Conv2d(width, 2 * out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.s_scale = nn.Parameter(torch.ones(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.out(torch.relu(self.blocks(self.inp(x))))  # (B, 2*out, S, S)
        s, t = h.chunk(2, dim=1)
        return self.s_scale * torch.tanh(s), t  # tanh bounds the log-scale: no blow-ups


class CheckerboardCoupling(nn.Module):
    """Affine coupling that keeps the pixels of one checkerboard colour."""

    def __init__(self, channels: int, size: int, parity: int, width: int, blocks: int) -> None:
        super().__init__()
        self.register_buffer("mask", checkerboard(size, parity), persistent=False)
        self.net = ScaleShiftNet(channels + 1, channels, width, blocks)  # +1: the mask itself

    def _scale_shift(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.mask.expand(kept.shape[0], 1, -1, -1)  # (B, 1, S, S)
        s, t = self.net(torch.cat([kept, mask], dim=1))
        free = 1.0 - self.mask
        return s * free, t * free  # only the free pixels change

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, S, S)`` -> ``(y, log|det J| (B,))``."""
        s, t = self._scale_shift(x * self.mask)
        return x * torch.exp(s) + t, s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        s, t = self._scale_shift(y * self.mask)  # the kept pixels are unchanged by forward
        return (y - t) * torch.exp(-s)


class ChannelCoupling(nn.Module):
    """Affine coupling that keeps one half of the channels and transforms the other."""

    def __init__(self, channels: int, parity: int, width: int, blocks: int) -> None:
        super().__init__()
        self.parity = parity
        self.half = channels // 2
        self.net = ScaleShiftNet(self.half, channels - self.half, width, blocks)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x[:, :self.half], x[:, self.half:]
        return (a, b) if self.parity == 0 else (b, a)

    def _join(self, kept: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        return torch.cat([kept, changed] if self.parity == 0 else [changed, kept], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, free = self._split(x)
        s, t = self.net(kept)
        return self._join(kept, free * torch.exp(s) + t), s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        kept, free = self._split(y)
        s, t = self.net(kept)
        return self._join(kept, (free - t) * torch.exp(-s))


class Scale(nn.Module):
    """One scale of the multi-scale architecture (see the module docstring)."""

    def __init__(self, channels: int, size: int, last: bool, width: int, blocks: int) -> None:
        super().__init__()
        self.last = last
        count = 4 if last else 3
        self.checkers = nn.ModuleList(
            CheckerboardCoupling(channels, size, i % 2, width, blocks) for i in range(count))
        self.channels = nn.ModuleList(
            () if last else (ChannelCoupling(4 * channels, i % 2, width, blocks)
                             for i in range(3)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``x`` -> (what goes on to the next scale, what is factored out, log|det J|)."""
        logdet = x.new_zeros(x.shape[0])
        for layer in self.checkers:
            x, ld = layer(x)
            logdet = logdet + ld
        if self.last:
            return x, None, logdet
        x = squeeze(x)  # (B, 4C, S/2, S/2)
        for layer in self.channels:
            x, ld = layer(x)
            logdet = logdet + ld
        half = x.shape[1] // 2
        return x[:, :half], x[:, half:], logdet

    def inverse(self, x: torch.Tensor, factored: torch.Tensor | None) -> torch.Tensor:
        if not self.last:
            x = torch.cat([x, factored], dim=1)  # (B, 4C, S/2, S/2)
            for layer in reversed(self.channels):
                x = layer.inverse(x)
            x = unsqueeze(x)
        for layer in reversed(self.checkers):
            x = layer.inverse(x)
        return x


class RealNVP(nn.Module):
    """A multi-scale RealNVP with a standard normal prior (class-conditional when
    ``num_classes > 0``: each class has a learned mean and log-scale)."""

    def __init__(self, channels: int, size: int, width: int, blocks: int, num_scales: int,
                 num_classes: int = 0) -> None:
        super().__init__()
        self.channels, self.size = channels, size
        self.dim = channels * size * size
        self.scales = nn.ModuleList()
        self.factored_shapes: list[tuple[int, int, int]] = []  # (C, S, S) factored per scale
        c, s = channels, size
        for k in range(num_scales):
            last = k == num_scales - 1
            self.scales.append(Scale(c, s, last, width, blocks))
            if not last:
                c, s = 2 * c, s // 2
                self.factored_shapes.append((c, s, s))
        self.final_shape = (c, s, s)
        self.num_classes = num_classes
        if num_classes > 0:
            self.prior_mean = nn.Parameter(torch.zeros(num_classes, self.dim))
            self.prior_log_scale = nn.Parameter(torch.zeros(num_classes, self.dim))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, S, S)`` -> ``(z (B, D), log p(x) (B,))``: the exact log-density of
        ``x`` under the flow (prior log-density of ``z`` plus the log-determinant)."""
        z, logdet = self.encode(x)
        return z, self.prior_log_prob(z, labels) + logdet

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, S, S)`` -> ``(z (B, D), log|det dz/dx| (B,))``."""
        parts = []
        logdet = x.new_zeros(x.shape[0])
        for scale in self.scales:
            x, factored, ld = scale(x)
            logdet = logdet + ld
            if factored is not None:
                parts.append(factored.flatten(1))
        parts.append(x.flatten(1))
        return torch.cat(parts, dim=1), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """``z (B, D)`` -> ``x (B, C, S, S)``, exactly undoing :meth:`forward`."""
        sizes = [math.prod(shape) for shape in (*self.factored_shapes, self.final_shape)]
        parts = list(z.split(sizes, dim=1))
        x = parts.pop().view(-1, *self.final_shape)
        for scale in reversed(self.scales):
            factored = None
            if not scale.last:
                factored = parts.pop().view(-1, *self.factored_shapes[len(parts)])
            x = scale.inverse(x, factored)
        return x

    def prior(self, labels: torch.Tensor | None, batch: int, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-scale ``(B, D)`` of the Gaussian prior for ``labels``."""
        if self.num_classes > 0 and labels is not None:
            return self.prior_mean[labels], self.prior_log_scale[labels]
        zeros = torch.zeros(batch, self.dim, device=device)
        return zeros, zeros

    def prior_log_prob(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``log N(z; mean, exp(log_scale)^2)`` summed over dimensions: ``(B,)``."""
        mean, log_scale = self.prior(labels, z.shape[0], z.device)
        eps = (z - mean) * torch.exp(-log_scale)
        return (-0.5 * (eps ** 2 + math.log(2 * math.pi)) - log_scale).sum(1)
