"""Training-time augmentation whose randomness is a function of (seed, batch, index).

``--augment`` applies, to every training image independently: a horizontal flip (half
the time), a random resized crop (80-100% of the area, aspect 3:4 to 4:3, resized back),
and a small colour jitter (brightness, contrast and, for RGB, saturation, each by a
factor within +-10%). These keep the look of the data set (no rotations or large crops
that would teach a generator to draw them).

Exact resume needs every random draw to be a function of the step: sample ``index`` of
global batch ``b`` is augmented with a generator seeded by ``derive_seed("augment",
seed, b, index)``. The batch sampler (:mod:`genkit.train.loader`) hands the dataset
``(index, b)`` pairs when the dataset asks for them (``takes_batch_number``), so the
pixels do not depend on worker processes, prefetching, or where a run was resumed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from genkit.seeding import derive_seed

CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.1


def augment_seed(seed: int, batch: int, index: int) -> int:
    return derive_seed("augment", seed, batch, index)


def augment_image(image: torch.Tensor, seed: int) -> torch.Tensor:
    """One ``(C, S, S)`` image in [-1, 1], augmented with the generator of ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    draws = torch.rand(8, generator=gen, dtype=torch.float64).tolist()
    channels, height, width = image.shape
    x = image
    if draws[0] < 0.5:
        x = x.flip(-1)
    # random resized crop: area fraction and log-aspect uniform, position uniform
    area = height * width * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * draws[1])
    log_ratio = math.log(CROP_RATIO[0]) + (math.log(CROP_RATIO[1]) - math.log(CROP_RATIO[0])) * draws[2]
    ratio = math.exp(log_ratio)
    w = min(width, max(1, round(math.sqrt(area * ratio))))
    h = min(height, max(1, round(math.sqrt(area / ratio))))
    top = int(draws[3] * (height - h + 1))
    left = int(draws[4] * (width - w + 1))
    if (h, w) != (height, width):
        crop = x[:, top:top + h, left:left + w][None]  # (1, C, h, w)
        x = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)[0]
    # colour jitter in [0, 1]
    y = (x + 1) * 0.5
    y = y * (1 + JITTER * (2 * draws[5] - 1))  # brightness
    mean = y.mean()
    y = (y - mean) * (1 + JITTER * (2 * draws[6] - 1)) + mean  # contrast
    if channels == 3:
        grey = (0.299 * y[0] + 0.587 * y[1] + 0.114 * y[2])[None]  # (1, S, S)
        y = (y - grey) * (1 + JITTER * (2 * draws[7] - 1)) + grey  # saturation
    return (y.clamp(0, 1) * 2 - 1).contiguous()


def augment_batch(images: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
    """``(B, C, S, S)`` images, image i augmented with ``seeds[i]``."""
    return torch.stack([augment_image(img, s) for img, s in zip(images, seeds)])


class AugmentedDataset:
    """A batched image dataset (``{"image": (B, C, S, S), ...}`` from ``__getitems__``)
    whose training images are augmented. It takes ``(index, batch)`` pairs from the
    batch sampler; everything else (labels, captions) passes through unchanged.
    Picklable when the wrapped dataset is (it holds nothing else but the seed)."""

    batched = True
    takes_batch_number = True

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # tensors, default_workers, ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitems__(self, keys: list[tuple[int, int]]) -> dict[str, Any]:
        indices = [int(i) for i, _ in keys]
        batch = dict(self.dataset.__getitems__(indices))
        seeds = [augment_seed(self.seed, int(b), i) for i, b in keys]
        batch["image"] = augment_batch(batch["image"], seeds)
        return batch

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        batch = self.__getitems__([key])
        return {k: v[0] for k, v in batch.items()}
