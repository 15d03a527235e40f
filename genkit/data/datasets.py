"""In-memory datasets for plugins: tensors indexed together, gathered a batch at a time."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from genkit.data.types import ImageData
from genkit.errors import ConfigError, DataError
from genkit.imaging import uint8_to_tensor


class TensorDictDataset(Dataset):
    """Named tensors of equal length; item i is ``{name: tensor[i]}``.

    The training engine fetches whole batches through ``__getitems__`` (one gather per
    tensor instead of one Python call per example and a collate), so data loading costs
    next to nothing beside the model. ``None`` values are left out, so
    ``TensorDictDataset(image=x, label=labels_or_none)`` serves labelled and unlabelled data.
    """

    batched = True  # the engine then skips the per-example collate

    def __init__(self, **tensors: torch.Tensor | None) -> None:
        self.tensors = {k: v for k, v in tensors.items() if v is not None}
        lengths = {int(v.shape[0]) for v in self.tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"tensors must be non-empty and of one length, got {sorted(lengths)}")
        self.length = lengths.pop()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {k: v.index_select(0, idx) for k, v in self.tensors.items()}


def image_dataset(data: object, size: int, channels: int, num_classes: int,
                  family: str) -> TensorDictDataset:
    """``{"image": (C, S, S) in [-1, 1], "label": int}`` items from image data, with the
    checks every image family needs (images at all; labels for a conditional model).

    Args:
        data: loaded data (:class:`genkit.data.types.ImageData`).
        size, channels: the model's image format (images are resized and converted).
        num_classes: > 0 for a class-conditional model (labels required), else 0.
        family: the generator's name, for messages.
    """
    if not isinstance(data, ImageData):
        raise DataError(f"{family} trains on images; use an image source such as 'digits' "
                        "or 'folder:PATH'")
    images = images_to_tensor(data, size, channels)  # (N, C, S, S)
    if not num_classes:
        return TensorDictDataset(image=images)
    if data.labels is None:
        raise DataError(f"num_classes={num_classes} needs labelled data; this data has none "
                        "(use sub-folders as classes, or --set num_classes=0)")
    found = max(data.num_classes, int(data.labels.max()) + 1)
    if found > num_classes:
        raise ConfigError(f"the data has {found} classes but num_classes={num_classes}; "
                          f"--set num_classes={found}")
    return TensorDictDataset(image=images, label=torch.as_tensor(data.labels, dtype=torch.long))


def images_to_tensor(data: ImageData, size: int, channels: int) -> torch.Tensor:
    """Images as float ``(N, channels, size, size)`` in [-1, 1], resized with antialiasing."""
    return uint8_to_tensor(data.images, size, channels)
