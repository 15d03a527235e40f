"""The GAN's networks: plain ``torch.nn.Module`` s that also save and load the Hugging Face
way (``huggingface_hub.PyTorchModelHubMixin``), so a checkpoint's ``generator/`` folder
opens without genkit::

    from genkit_gan.models import ConvGenerator
    G = ConvGenerator.from_pretrained("runs/gan/generator")  # config.json + model.safetensors
    images = G(torch.randn(16, G.latent_dim))                 # (16, C, S, S) in [-1, 1]

Two architectures:

- ``conv`` (DCGAN, Radford et al. 2016): the generator projects z to a 4x4 map and doubles
  it with stride-2 transposed convolutions (or, ``upsample="nearest"``, nearest-neighbour
  up-sampling and a 3x3 convolution); the discriminator halves with stride-2
  convolutions and LeakyReLU. Image sizes 8, 16, 32, ... (4 * 2**k).
- ``mlp``: two hidden layers each side, for tiny images (4..64 pixels).

The generator normalises with GroupNorm instead of DCGAN's BatchNorm: a sample must not
depend on the batch it is drawn in, and the EMA weights used for sampling would not match
BatchNorm's running statistics. The discriminator has no normalisation layer (optional
spectral normalisation instead, Miyato et al. 2018) so real and generated images can
share one forward pass. Class conditioning: a label embedding concatenated to z in the
generator, a projection term in the discriminator (Miyato & Koyama 2018).
"""

from __future__ import annotations

import math

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from genkit.plugin import hub_mixin_options
from genkit_gan.layers import ConditionalGroupNorm, CondUpBlock, MinibatchStd, up_conv

CONV_SIZES = tuple(4 * 2**k for k in range(1, 7))  # 8 .. 256
MLP_SIZE_RANGE = (4, 64)


def conv_levels(image_size: int) -> int:
    """Number of 2x resolution steps between 4x4 and ``image_size`` (a conv arch)."""
    return int(math.log2(image_size // 4))


def group_norm(width: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (batch-independent, EMA-safe)."""
    return nn.GroupNorm(math.gcd(width, 8), width)


def maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    """``module`` with spectral normalisation of its weight when ``enabled``."""
    return _spectral_norm(module) if enabled else module


class _Generator(nn.Module):
    """Shared parts: the label embedding concatenated to z."""

    latent_dim: int
    num_classes: int

    def _init_condition(self, latent_dim: int, num_classes: int) -> int:
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.label_embedding = nn.Embedding(num_classes, latent_dim) if num_classes else None
        return latent_dim * (2 if num_classes else 1)

    def _condition(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.label_embedding is None:
            return z  # (B, Z)
        if labels is None:
            raise ValueError("this generator is class-conditional: pass labels")
        return torch.cat([z, self.label_embedding(labels)], dim=1)  # (B, 2Z)


class _Discriminator(nn.Module):
    """Shared parts: the projection discriminator's output (Miyato & Koyama 2018),
    ``logit = w . h + b + <embed(y), h>`` on D's features ``h``. The inner product with a
    class embedding makes D judge "a real image *of class y*", which is what keeps a
    conditional generator from ignoring its label or collapsing within a class."""

    def _init_head(self, feature_dim: int, num_classes: int, spectral_norm: bool) -> None:
        self.num_classes = num_classes
        self.head = maybe_sn(nn.Linear(feature_dim, 1), spectral_norm)
        self.label_projection = None
        if num_classes:
            projection = nn.Embedding(num_classes, feature_dim)
            # small init (as SNGAN): nn.Embedding's N(0, 1) would make the class term
            # ~sqrt(F) times larger than the real/fake head and swamp it from step one
            nn.init.xavier_uniform_(projection.weight)
            self.label_projection = maybe_sn(projection, spectral_norm)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Real-vs-fake logits ``(B,)`` of ``images`` ``(B, C, S, S)``."""
        h = self.features(images)  # (B, F)
        logits = self.head(h).squeeze(1)  # (B,)
        if self.label_projection is not None:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            logits = logits + (self.label_projection(labels) * h).sum(dim=1)  # (B,)
        return logits


class ConvGenerator(_Generator, PyTorchModelHubMixin,
                    **hub_mixin_options("gan", __name__, "ConvGenerator")):
    """DCGAN generator: z ``(B, latent_dim)`` → images ``(B, channels, S, S)`` in [-1, 1].

    A class-conditional generator takes the label through ``conditioning``: ``"norm"``
    (every GroupNorm's scale and shift chosen by the label, :class:`ConditionalGroupNorm`:
    the conditional-batch-norm idea without the batch, so a sample never depends on the
    batch it is drawn in), or ``"concat"`` (a label embedding concatenated to z, genkit
    0.1.0's way, which collapsed to one image per class in every setting tried).
    ``upsample`` is :func:`genkit_gan.layers.up_conv`'s mode (the default is the one
    checkpoints saved before the option existed were built with).
    """

    def __init__(self, latent_dim: int = 64, image_size: int = 16, channels: int = 1,
                 base_width: int = 64, num_classes: int = 0,
                 conditioning: str = "concat", upsample: str = "transposed") -> None:
        super().__init__()
        by_norm = bool(num_classes) and conditioning == "norm"
        in_dim = self._init_condition(latent_dim, 0 if by_norm else num_classes)
        self.num_classes = num_classes
        levels = conv_levels(image_size)
        widths = [base_width * 2 ** (levels - 1 - i) for i in range(levels)]  # at 4, 8, .., S/2
        self.start_width = widths[0]
        self.project = nn.Linear(in_dim, widths[0] * 16, bias=False)
        self.by_norm = by_norm
        if by_norm:
            self.start_norm = ConditionalGroupNorm(widths[0], num_classes)
            self.up = nn.ModuleList(CondUpBlock(a, b, num_classes, upsample)
                                    for a, b in zip(widths[:-1], widths[1:]))
            self.out = up_conv(widths[-1], channels, upsample, bias=True)
            return
        self.start = nn.Sequential(group_norm(widths[0]), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            blocks += [up_conv(w_in, w_out, upsample, bias=False), group_norm(w_out),
                       nn.ReLU(inplace=True)]
        blocks += [up_conv(widths[-1], channels, upsample, bias=True), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                truncation: float = 1.0) -> torch.Tensor:
        """Images for latents ``z`` (B, Z); ``truncation`` psi < 1 pulls the first
        normalised features towards their mean over z (see :meth:`_mean_first`)."""
        h = self._first(z, labels)  # (B, W0, 4, 4)
        if truncation != 1.0:
            mean = self._mean_first(labels, z)  # (B, W0, 4, 4)
            h = mean + truncation * (h - mean)
        h = torch.relu(h)
        if self.by_norm:
            for block in self.up:
                h = block(h, labels)  # doubles the side
            return torch.tanh(self.out(h))  # (B, C, S, S)
        return self.blocks(h)  # (B, C, S, S)

    def _first(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The first features, normalised, before their ReLU: (B, W0, 4, 4)."""
        if self.by_norm:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            h = self.project(z).view(-1, self.start_width, 4, 4)
            return self.start_norm(h, labels)
        h = self.project(self._condition(z, labels)).view(-1, self.start_width, 4, 4)
        return self.start[0](h)  # the GroupNorm (start[1] is the ReLU)

    @torch.no_grad()
    def _mean_first(self, labels: torch.Tensor | None, like: torch.Tensor,
                    draws: int = 1024) -> torch.Tensor:
        """The mean of the first normalised features over ``draws`` fixed latents, for each
        row's label: the "mean latent" of the truncation trick. Scaling z itself would do
        nothing here: the first GroupNorm removes the scale of ``project(z)``."""
        gen = torch.Generator(device=like.device).manual_seed(0)
        z = torch.randn(draws, self.latent_dim, generator=gen, device=like.device,
                        dtype=like.dtype)  # (N, Z)
        if labels is None:
            return self._first(z, None).mean(0, keepdim=True).expand(len(like), -1, -1, -1)
        means = {int(y): self._first(z, torch.full((draws,), int(y), device=like.device,
                                                   dtype=torch.long)).mean(0)
                 for y in labels.unique()}
        return torch.stack([means[int(y)] for y in labels])  # (B, W0, 4, 4)


class ConvDiscriminator(_Discriminator, PyTorchModelHubMixin,
                        **hub_mixin_options("gan", __name__, "ConvDiscriminator")):
    """DCGAN discriminator: images ``(B, channels, S, S)`` → logits ``(B,)``; ``depth``
    convolutions per resolution (DCGAN's 1: the stride-2 one; more add 3x3 ones);
    ``minibatch_std`` > 0: a :class:`~genkit_gan.layers.MinibatchStd` channel over groups of
    that many images before the last (8x8 to 4x4) convolution, so a batch's logits depend
    on each other within a group: real and generated images must not share one (separate
    calls, or one batch whose halves split into whole groups)."""

    def __init__(self, image_size: int = 16, channels: int = 1, base_width: int = 64,
                 num_classes: int = 0, spectral_norm: bool = False, depth: int = 1,
                 minibatch_std: int = 0) -> None:
        super().__init__()
        levels = conv_levels(image_size)
        widths = [base_width * 2**i for i in range(levels)]  # at S/2, S/4, .., 4
        layers: list[nn.Module] = []
        for level, (w_in, w_out) in enumerate(zip([channels, *widths[:-1]], widths)):
            if minibatch_std and level == levels - 1:
                layers.append(MinibatchStd(minibatch_std))
                w_in += 1
            layers += [maybe_sn(nn.Conv2d(w_in, w_out, 4, 2, 1), spectral_norm),
                       nn.LeakyReLU(0.2, inplace=True)]
            for _ in range(depth - 1):  # more 3x3 convolutions at this resolution
                layers += [maybe_sn(nn.Conv2d(w_out, w_out, 3, 1, 1), spectral_norm),
                           nn.LeakyReLU(0.2, inplace=True)]
        self.body = nn.Sequential(*layers, nn.Flatten())
        self._init_head(widths[-1] * 16, num_classes, spectral_norm)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)  # (B, W * 4 * 4)


class MLPGenerator(_Generator, PyTorchModelHubMixin,
                   **hub_mixin_options("gan", __name__, "MLPGenerator")):
    """MLP generator for tiny images: z → images ``(B, channels, S, S)`` in [-1, 1]."""

    def __init__(self, latent_dim: int = 64, image_size: int = 8, channels: int = 1,
                 hidden: int = 256, num_classes: int = 0) -> None:
        super().__init__()
        in_dim = self._init_condition(latent_dim, num_classes)
        self.shape = (channels, image_size, image_size)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, channels * image_size * image_size), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None,
                truncation: float = 1.0) -> torch.Tensor:
        """Images for latents ``z``; ``truncation`` psi < 1 pulls z towards the mean
        latent, 0 (no normalisation layer undoes that here)."""
        x = self.net(self._condition(z * truncation, labels))  # (B, C * S * S)
        return x.view(-1, *self.shape)  # (B, C, S, S)


class MLPDiscriminator(_Discriminator, PyTorchModelHubMixin,
                       **hub_mixin_options("gan", __name__, "MLPDiscriminator")):
    """MLP discriminator: images ``(B, channels, S, S)`` → logits ``(B,)``."""

    def __init__(self, image_size: int = 8, channels: int = 1, hidden: int = 256,
                 num_classes: int = 0, spectral_norm: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            maybe_sn(nn.Linear(channels * image_size * image_size, hidden), spectral_norm),
            nn.LeakyReLU(0.2, inplace=True),
            maybe_sn(nn.Linear(hidden, hidden), spectral_norm), nn.LeakyReLU(0.2, inplace=True))
        self._init_head(hidden, num_classes, spectral_norm)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)  # (B, hidden)
