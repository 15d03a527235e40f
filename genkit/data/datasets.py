"""Datasets for plugins: in-memory tensors gathered a batch at a time, and lazy image
sets decoded a batch at a time in DataLoader workers.

:func:`image_dataset` is what the image families call: in-memory data (digits, small
sets) becomes a :class:`TensorDictDataset`; lazy data (``folder:``, ``hf:``) becomes a
:class:`LazyImageDataset` with the same items, ``{"image": (C, S, S) in [-1, 1],
"label": int}``, resized and converted to the model's size and channels as they are read.
:func:`make_train_dataset` adds augmentation for training.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from genkit.data.augment import AugmentedDataset
from genkit.data.cache import DecodedCache
from genkit.data.decode import model_mode
from genkit.data.lazy import LazyImageData, decode_or_substitute
from genkit.data.stream import StreamingImageData, StreamingImageDataset
from genkit.data.types import ImageData
from genkit.errors import ConfigError, DataError
from genkit.imaging import uint8_to_tensor

SKIPPED_KEY = "_skipped"  # a worker's bad files, reported by the loader in the main process
MAX_LOADER_WORKERS = 4
MAX_HELD_OUT = 2048  # rows of a lazy split that .tensors (held-out evaluation) decodes


class TensorDictDataset(Dataset):
    """Named tensors of equal length; item i is ``{name: tensor[i]}``.

    The training engine fetches whole batches through ``__getitems__`` (one gather per
    tensor instead of one Python call per example and a collate), so data loading costs
    next to nothing beside the model. ``None`` values are left out, so
    ``TensorDictDataset(image=x, label=labels_or_none)`` serves labelled and unlabelled data.
    """

    batched = True  # the engine then skips the per-example collate
    default_workers = 0  # a gather in memory: worker processes would only add copies

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


def usable_cores() -> int:
    """CPU cores this process may run on (affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class LazyImageDataset(Dataset):
    """Image files (or a Hugging Face ``Dataset``) decoded on demand to the model's
    format. ``len()`` never decodes; ``__getitems__`` decodes one batch, in a DataLoader
    worker when there are workers (``default_workers`` is min(4, cores - 1)), reading
    and filling the decoded cache when the data asked for one (``--set cache=true``).

    A bad file is skipped: the next good row stands in for it (with that row's label),
    and the file is reported once (``Warning: skipped PATH: REASON``): directly in the
    main process, or from a worker through the batch's ``_skipped`` entry, which
    :func:`genkit.train.loader.make_loader` prints and removes. Picklable and small.
    """

    batched = True

    def __init__(self, data: LazyImageData, size: int, channels: int,
                 with_labels: bool) -> None:
        self.reader, self.size, self.channels = data.reader, int(size), int(channels)
        self.mode = model_mode(self.channels)
        self.labels = (torch.as_tensor(data.labels, dtype=torch.long)
                       if with_labels and data.labels is not None else None)
        self.name = data.name
        self.cache: DecodedCache | None = None
        if getattr(data, "cache", False) and hasattr(self.reader, "fingerprint"):
            self.cache = DecodedCache(self.reader.fingerprint(), len(self.reader), self.size,
                                      self.channels)
            self.cache.create()
        self.default_workers = min(MAX_LOADER_WORKERS, max(0, usable_cores() - 1))

    def __len__(self) -> int:
        return len(self.reader)

    def _row(self, index: int, report: list[tuple[str, str]] | None) -> tuple[np.ndarray, int]:
        if self.cache is not None and (row := self.cache.get(index)) is not None:
            return row, index
        row, used = decode_or_substitute(self.reader, index, self.size, self.mode, report)
        if self.cache is not None and used == index:
            self.cache.put(index, row)
        return row, used

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        report: list[tuple[str, str]] | None = [] if get_worker_info() is not None else None
        rows, used = zip(*(self._row(int(i), report) for i in indices))
        batch: dict[str, Any] = {"image": uint8_to_tensor(np.stack(rows))}  # (B, C, S, S)
        if self.labels is not None:
            batch["label"] = self.labels[torch.as_tensor(used, dtype=torch.long)]
        if report:
            batch[SKIPPED_KEY] = report
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row, used = self._row(int(index), None)
        item = {"image": uint8_to_tensor(row[None])[0]}
        if self.labels is not None:
            item["label"] = self.labels[used]
        return item

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """The set in memory, as ``TensorDictDataset.tensors``, for a plugin's held-out
        evaluation: at most ``MAX_HELD_OUT`` rows, evenly spaced over the split (so every
        class folder is represented) and fixed, so the figure is comparable across runs
        while a large held-out split costs neither minutes of decoding nor gigabytes."""
        n = len(self)
        rows = range(n) if n <= MAX_HELD_OUT else np.linspace(0, n - 1, MAX_HELD_OUT).round()
        return {k: v for k, v in self.__getitems__([int(i) for i in rows]).items()
                if k != SKIPPED_KEY}


def image_dataset(data: object, size: int, channels: int, num_classes: int,
                  family: str) -> Dataset:
    """``{"image": (C, S, S) in [-1, 1], "label": int}`` items from image data, with the
    checks every image family needs (images at all; labels for a conditional model).

    Args:
        data: loaded data (:class:`genkit.data.types.ImageData`; lazy data gives a
            :class:`LazyImageDataset`, in-memory data a :class:`TensorDictDataset`).
        size, channels: the model's image format (images are resized and converted).
        num_classes: > 0 for a class-conditional model (labels required), else 0.
        family: the generator's name, for messages.
    """
    if not isinstance(data, ImageData):
        raise DataError(f"{family} trains on images; use an image source such as 'digits' "
                        "or 'folder:PATH'")
    if isinstance(data, StreamingImageData):
        if num_classes and data.label_column is None:
            raise DataError(f"num_classes={num_classes} needs labelled data; {data.name} has "
                            "no label column (--set label_column=NAME, or --set num_classes=0)")
        if num_classes and data.num_classes > num_classes:
            raise ConfigError(f"the data has {data.num_classes} classes but num_classes="
                              f"{num_classes}; --set num_classes={data.num_classes}")
        return StreamingImageDataset(data, size, channels, with_labels=bool(num_classes))
    labels = _checked_labels(data, num_classes)
    if isinstance(data, LazyImageData) and data.lazy:
        return LazyImageDataset(data, size, channels, with_labels=labels is not None)
    images = images_to_tensor(data, size, channels)  # (N, C, S, S)
    return TensorDictDataset(image=images, label=labels)


def _checked_labels(data: ImageData, num_classes: int) -> torch.Tensor | None:
    if not num_classes:
        return None
    if data.labels is None:
        raise DataError(f"num_classes={num_classes} needs labelled data; this data has none "
                        "(use sub-folders as classes, --set label_column=NAME, or "
                        "--set num_classes=0)")
    found = max(data.num_classes, int(data.labels.max()) + 1)
    if found > num_classes:
        raise ConfigError(f"the data has {found} classes but num_classes={num_classes}; "
                          f"--set num_classes={found}")
    return torch.as_tensor(data.labels, dtype=torch.long)


def images_to_tensor(data: ImageData, size: int, channels: int) -> torch.Tensor:
    """Images as float ``(N, channels, size, size)`` in [-1, 1], resized with antialiasing."""
    return uint8_to_tensor(data.images, size, channels)


def make_train_dataset(dataset: Any, augment: bool, seed: int) -> Any:
    """The dataset training reads: ``dataset`` itself, or with ``augment`` an
    :class:`~genkit.data.augment.AugmentedDataset` whose randomness is a function of
    (seed, global batch, index). Only batched image datasets can be augmented."""
    if not augment:
        return dataset
    if isinstance(dataset, AugmentedDataset):
        return dataset
    is_images = isinstance(dataset, (LazyImageDataset, StreamingImageDataset)) or (
        isinstance(dataset, TensorDictDataset) and "image" in dataset.tensors)
    if not is_images and not getattr(dataset, "augmentable", False):
        raise ConfigError("--augment works on image data; this generator's dataset "
                          f"({type(dataset).__name__}) has no images to augment")
    if isinstance(dataset, StreamingImageDataset):  # augments as it decodes
        dataset.augment_seed = int(seed)
        return dataset
    return AugmentedDataset(dataset, seed)


def known_length(dataset: Any) -> int | None:
    """``len(dataset)``, or None for a stream whose length is unknown."""
    try:
        return len(dataset)
    except (TypeError, DataError):
        return None
