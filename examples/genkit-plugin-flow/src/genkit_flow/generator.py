"""The ``flow`` generator: a RealNVP trained by maximum likelihood on dequantised images.

Training maximises the exact log-likelihood of the data. Pixels are integers 0..255, so
they are *dequantised* first: ``x = (pixel + u) / 256`` with ``u ~ U(0, 1)``, which makes
the continuous density a lower bound on the discrete likelihood. A logit transform maps
``x`` from (0, 1) to the real line before the flow; its log-determinant is part of the
likelihood. The loss is reported in bits per dimension (lower is better; 8 bits/dim is a
uniform guess over 256 values).

Sampling draws ``z`` from the prior (times ``temperature``), inverts the flow and the
logit, and quantises back to pixels. All randomness of sample i comes from its own seed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from genkit.plugin import (
    DataError,
    Generator,
    ImageData,
    SamplingError,
    check,
    images_to_tensor,
    sample_generators,
)

from genkit_flow.model import RealNVP

#: bits/dim of a uniform distribution over 256 pixel values: the "knows nothing" figure
UNIFORM_BITS_PER_DIM = 8.0


@dataclasses.dataclass
class FlowConfig:
    """Hyper-parameters of the flow (``genkit.create("flow", **fields)`` or ``--set k=v``)."""

    image_size: int = 8  # side of the square images (digits are 8x8)
    channels: int = 1  # 1 grey, 3 RGB
    hidden: int = 32  # width of the convolutional nets inside each coupling
    num_blocks: int = 1  # residual blocks per coupling net
    num_scales: int = 2  # multi-scale levels; image_size must halve (num_scales - 1) times
    num_classes: int = 0  # > 0: class-conditional prior (one Gaussian per label)
    logit_alpha: float = 0.05  # x -> logit(alpha + (1 - 2 alpha) x) keeps away from 0 and 1

    def __post_init__(self) -> None:
        check(self.channels in (1, 3), f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        check(self.hidden >= 1, f"hidden must be at least 1, got {self.hidden}")
        check(self.num_blocks >= 0, f"num_blocks must be >= 0, got {self.num_blocks}")
        check(self.num_scales >= 1, f"num_scales must be at least 1, got {self.num_scales}")
        factor = 2 ** (self.num_scales - 1)
        check(self.image_size >= 2 * factor and self.image_size % factor == 0,
              f"image_size {self.image_size} must be a multiple of {factor} and at least "
              f"{2 * factor} for num_scales={self.num_scales}; lower num_scales or change "
              "image_size")
        check(self.num_classes >= 0, f"num_classes must be 0 (unconditional) or more, got "
                                     f"{self.num_classes}")
        check(0.0 < self.logit_alpha < 0.5, f"logit_alpha must be in (0, 0.5), got "
                                            f"{self.logit_alpha}")


@dataclasses.dataclass
class FlowSampleOptions:
    """Sampling options (CLI: ``--temperature 0.7``)."""

    temperature: float = 0.8  # scale of z; < 1 trades diversity for cleaner images

    def __post_init__(self) -> None:
        check(self.temperature > 0 and math.isfinite(self.temperature),
              f"temperature must be a positive number, got {self.temperature}")


class PixelDataset(torch.utils.data.Dataset):
    """Integer pixels ``(N, C, S, S)`` uint8 and labels; dequantisation happens per step
    (with the step's seeded generator), so every epoch sees fresh noise."""

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.pixels, self.labels = pixels, labels

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"pixels": self.pixels[index]}
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item


class FlowGenerator(Generator):
    """A RealNVP normalising flow on images, with exact log-likelihood."""

    Config = FlowConfig
    SampleOptions = FlowSampleOptions
    modality: ClassVar[str] = "image"
    conditions: ClassVar[tuple[str, ...]] = ("label",)
    module_names: ClassVar[tuple[str, ...]] = ("flow",)
    ema_modules: ClassVar[tuple[str, ...]] = ("flow",)
    default_data: ClassVar[str | None] = "digits"
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 64, "steps": 2000,
                                                "ema_decay": 0.999, "clip_grad": 100.0}

    config: FlowConfig
    flow: RealNVP

    def build(self) -> None:
        c = self.config
        self.flow = RealNVP(c.channels, c.image_size, c.hidden, c.num_blocks, c.num_scales,
                            c.num_classes)

    def accepted_conditions(self) -> tuple[str, ...]:
        return ("label",) if self.config.num_classes > 0 else ()

    # ------------------------------------------------------------------ likelihood
    def _to_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` in (0, 1) ``(B, C, S, S)`` -> (logits, log|det d logits / dx| ``(B,)``)."""
        a = self.config.logit_alpha
        p = a + (1 - 2 * a) * x
        y = torch.log(p) - torch.log1p(-p)
        logdet = (math.log(1 - 2 * a) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        return y, logdet

    def _from_logits(self, y: torch.Tensor) -> torch.Tensor:
        a = self.config.logit_alpha
        return ((torch.sigmoid(y) - a) / (1 - 2 * a)).clamp(0.0, 1.0)

    def bits_per_dim(self, pixels: torch.Tensor, labels: torch.Tensor | None,
                     noise: torch.Tensor, flow: torch.nn.Module | None = None) -> torch.Tensor:
        """Negative log-likelihood of integer ``pixels`` ``(B, C, S, S)`` in bits per
        dimension ``(B,)``, dequantised with ``noise`` ~ U(0, 1) of the same shape.

        This is an upper bound on the exact discrete NLL (the dequantisation bound).
        """
        flow = flow if flow is not None else self.flow
        x = (pixels.float() + noise) / 256.0  # (B, C, S, S) in (0, 1)
        y, logit_logdet = self._to_logits(x)
        z, log_py = flow(y, labels)  # (B, D), (B,)
        dim = z.shape[1]
        log_px = log_py + logit_logdet - dim * math.log(256.0)
        return -log_px / (dim * math.log(2.0))

    # ------------------------------------------------------------------ training
    def make_dataset(self, data: Any, split: str) -> PixelDataset:
        """Pixels 0..255 at ``image_size``; labels when the model is class-conditional."""
        if not isinstance(data, ImageData):
            raise DataError("flow trains on images: use an image source such as 'digits' "
                            "or 'folder:PATH'")
        scaled = images_to_tensor(data, self.config.image_size, self.config.channels)
        pixels = ((scaled + 1.0) * 127.5).round().to(torch.uint8)  # (N, C, S, S)
        labels = None
        if self.config.num_classes > 0:
            if data.labels is None:
                raise DataError("num_classes > 0 needs labelled images (digits, or a folder "
                                "with one sub-folder per class); or set num_classes=0")
            labels = torch.as_tensor(data.labels, dtype=torch.long)
            if int(labels.max()) >= self.config.num_classes:
                raise DataError(f"the data has {int(labels.max()) + 1} classes but "
                                f"num_classes={self.config.num_classes}; set num_classes to "
                                "match")
        return PixelDataset(pixels, labels)

    def training_step(self, batch: dict[str, torch.Tensor], ctx: Any) -> dict[str, Any]:
        pixels = batch["pixels"]  # (B, C, S, S) uint8
        noise = torch.rand(pixels.shape, generator=ctx.generator, device=pixels.device)
        bpd = self.bits_per_dim(pixels, batch.get("label"), noise, flow=ctx.models["flow"])
        return {"loss": bpd.mean()}

    @torch.no_grad()
    def evaluate(self, data: Any) -> dict[str, float]:
        """Held-out bits/dim, with fixed dequantisation noise (comparable across runs)."""
        dataset = self.make_dataset(data, "test")
        gen = torch.Generator().manual_seed(0)
        total, count = 0.0, 0
        for start in range(0, len(dataset), 256):
            pixels = dataset.pixels[start:start + 256]
            labels = dataset.labels[start:start + 256] if dataset.labels is not None else None
            noise = torch.rand(pixels.shape, generator=gen).to(self.device)
            bpd = self.bits_per_dim(pixels.to(self.device), None if labels is None else
                                    labels.to(self.device), noise)
            total += float(bpd.sum())
            count += len(pixels)
        return {"bits_per_dim": total / count}

    # ------------------------------------------------------------------ sampling
    def generate(self, seeds: list[int], conditions: list[dict[str, Any]], options: Any,
                 stream: Any = None) -> list[Any]:
        """One image per seed: ``z`` ~ prior (times temperature), then the inverse flow."""
        gens = sample_generators(seeds, self.device)
        dim = self.flow.dim
        eps = torch.stack([torch.randn(dim, generator=g, device=self.device)
                           for g in gens])  # (B, D)
        labels = self._labels(gens, conditions)
        mean, log_scale = self.flow.prior(labels, len(seeds), self.device)
        z = mean + torch.exp(log_scale) * eps * options.temperature  # (B, D)
        x = self._from_logits(self.flow.inverse(z))  # (B, C, S, S) in [0, 1]
        pixels = (x * 256.0).floor().clamp(0, 255).to(torch.uint8).cpu()
        return [_to_pil(p) for p in pixels]

    def _labels(self, gens: list[torch.Generator], conditions: list[dict[str, Any]]
                ) -> torch.Tensor | None:
        """The label of each sample: asked for, or drawn from the sample's own generator."""
        k = self.config.num_classes
        if k == 0:
            return None
        labels = []
        for gen, cond in zip(gens, conditions):
            label = cond.get("label")
            if label is None:
                label = int(torch.randint(k, (1,), generator=gen, device=self.device))
            if not 0 <= int(label) < k:
                raise SamplingError(f"label {label} is out of range 0..{k - 1}")
            labels.append(int(label))
        return torch.tensor(labels, device=self.device)


def _to_pil(pixels: torch.Tensor) -> Any:
    """``(C, S, S)`` uint8 -> a PIL image (mode L or RGB)."""
    from PIL import Image

    array = pixels.permute(1, 2, 0).numpy()  # (S, S, C)
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0], mode="L")
    return Image.fromarray(array, mode="RGB")
