"""Streaming ``hf:`` data (``--set streaming=true``): training on sets too large to prepare.

A stream has no random access, so the seeded order cannot be a permutation of indices.
Instead epoch e reads the stream shuffled by ``datasets`` with the seed (seed, e) and a
fixed buffer; global batch b is the b-th run of ``batch_size`` examples after that (the
last, partial batch of an epoch is dropped), and process r takes its r-th slice. The
position of step s is therefore still a function of s: a resume skips ``b * batch_size``
examples of the epoch's stream (their image bytes are not decoded) and goes on from
there. Images are decoded in a background thread of the main process (one reader, so
the order is fixed), converted and resized like every lazy image
(:func:`genkit.data.decode.decode`); a bad image is skipped with one warning and the next
example takes its place. ``len()`` is the split's size when the data set records it.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from genkit.data.augment import augment_batch, augment_seed
from genkit.data.columns import find_columns
from genkit.data.decode import BadImage, decode, model_mode, open_image, warn_skipped
from genkit.data.types import DataOptions, ImageData
from genkit.errors import DataError
from genkit.imaging import uint8_to_tensor
from genkit.seeding import derive_seed

SHUFFLE_BUFFER = 1000
MAX_STREAM_TENSORS = 2048  # .tensors of a stream (held-out evaluation): its first rows
PREFETCH_BATCHES = 4


class StreamingImageData(ImageData):
    """An image stream (``datasets.IterableDataset``) with its columns and class names."""

    streaming = True
    lazy = True
    modality = "image"

    def __init__(self, stream: Any, image_column: str, label_column: str | None,
                 num_classes: int, class_names: list[str] | None, name: str,
                 num_examples: int | None, size: int | None = None) -> None:
        self.stream = stream.decode(False)  # image bytes; decoded where they are used
        self.image_column, self.label_column = image_column, label_column
        self.num_classes, self.class_names, self.name = num_classes, class_names, name
        self.num_examples, self.size = num_examples, size
        self.labels, self.captions, self.cache = None, None, False
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        if self.num_examples is None:
            raise DataError(f"{self.name} is a stream whose length the data set does not "
                            "record; stream a set that records it, or drop streaming=true")
        return self.num_examples

    def __repr__(self) -> str:
        return f"StreamingImageData({self.name!r}, {self.num_examples or '?'} examples)"

    @property
    def images(self) -> np.ndarray:  # type: ignore[override]
        if self._images is None:
            self._images = self.take(None).images
        return self._images

    def take(self, max_n: int | None, size: int | tuple[int, int] | None = None,
             channels: int | None = None) -> ImageData:
        """The first ``max_n`` examples (all when None) in memory, at ``size`` (default:
        ``--set size`` or the first image's) and ``channels`` (default: the first's)."""
        rows, labels = [], []
        mode = None if channels is None else model_mode(channels)
        for k, example in enumerate(self.stream):
            if max_n is not None and len(rows) >= max_n:
                break
            try:
                image = _open(example[self.image_column])
                if mode is None or size is None:
                    size = size or self.size or image.size
                    mode = mode or ("L" if image.mode in ("L", "1", "I", "I;16") else "RGB")
                rows.append(decode(image, size, mode))
            except BadImage as exc:
                warn_skipped(f"{self.name} example {k}", str(exc))
                continue
            if self.label_column:
                labels.append(int(example[self.label_column]))
        if not rows:
            raise DataError(f"{self.name} holds no image that decodes")
        return ImageData(np.stack(rows), np.asarray(labels, np.int64) if labels else None,
                         self.num_classes, self.class_names, self.name)


def _open(value: Any) -> Any:
    """A stream's undecoded image value (``{"bytes", "path"}``) opened with PIL."""
    if hasattr(value, "convert"):
        return value
    if isinstance(value, dict) and value.get("bytes"):
        return open_image(io.BytesIO(value["bytes"]))
    if isinstance(value, dict) and value.get("path"):
        return open_image(value["path"])
    raise BadImage("no image bytes")


def streaming_data(stream: Any, opts: DataOptions, name: str,
                   num_examples: int | None = None) -> StreamingImageData:
    """Check a stream's columns (from its features, else its first example) and wrap it."""
    import datasets

    try:
        first = next(iter(stream))
    except StopIteration:
        raise DataError(f"{name} is empty") from None
    except Exception as exc:
        raise DataError(f"{name} cannot be read ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split()[:30])})") from None
    features = stream.features
    image, _, label, _ = find_columns(features, list(first), opts, datasets)
    if image is None:
        raise DataError(f"{name}: streaming is for image data; columns: {', '.join(first)} "
                        "(choose with --set image_column=NAME)")
    num_classes, names = 0, None
    if label is not None:
        feature = (features or {}).get(label)
        if isinstance(feature, datasets.ClassLabel):
            num_classes, names = len(feature.names), list(feature.names)
        elif not isinstance(first[label], (int, np.integer)):
            raise DataError(f"{name}: a streamed label column must hold integers or be a "
                            f"ClassLabel; {label!r} holds {type(first[label]).__name__}")
    if num_examples is None:
        splits = getattr(stream.info, "splits", None) or {}
        split_name = str(getattr(stream, "split", "") or "")
        known = splits.get(split_name) if split_name else None
        num_examples = getattr(known, "num_examples", None) or None
    return StreamingImageData(stream, image, label, num_classes, names, name, num_examples,
                              opts.size)


class StreamingImageDataset(IterableDataset):
    """The training side of a stream: ``batches(...)`` yields this process's share of
    each global batch, ``{"image": (B, C, S, S), "label": (B,)}``, from a given global
    batch on (see the module docstring). ``augment_seed`` (set by
    :func:`genkit.data.datasets.make_train_dataset`) turns on augmentation."""

    batched = True
    streaming = True
    default_workers = 0

    def __init__(self, data: StreamingImageData, size: int, channels: int,
                 with_labels: bool) -> None:
        self.data, self.size, self.mode = data, int(size), model_mode(channels)
        self.with_labels = with_labels and data.label_column is not None
        self.augment_seed: int | None = None

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        raise TypeError("a stream is read a batch at a time: use batches(batch_size, seed, "
                        "rank, world, start) (genkit.train.loader.make_loader does)")

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """The first rows in memory (at most ``MAX_STREAM_TENSORS``): held-out figures."""
        held = self.data.take(MAX_STREAM_TENSORS, self.size, 1 if self.mode == "L" else 3)
        out = {"image": uint8_to_tensor(held.images)}
        if self.with_labels and held.labels is not None:
            out["label"] = torch.as_tensor(held.labels)
        return out

    def _epoch(self, seed: int, epoch: int) -> Any:
        return self.data.stream.shuffle(seed=derive_seed("epoch", seed, epoch) % 2**32,
                                        buffer_size=SHUFFLE_BUFFER)

    def batches(self, batch_size: int, seed: int, rank: int, world: int,
                start: int) -> Iterator[dict[str, Any]]:
        """This process's batches from global batch ``start`` on, prefetched in a thread."""
        return _prefetch(self._batches(batch_size, seed, rank, world, start))

    def _batches(self, batch_size: int, seed: int, rank: int, world: int,
                 start: int) -> Iterator[dict[str, Any]]:
        per = batch_size // world
        epoch, b, skip = 0, 0, 0  # b: the global batch number at the stream's position
        n = self.data.num_examples
        if n is not None:  # jump to the epoch of batch ``start`` and skip to it undecoded
            per_epoch = n // batch_size
            if per_epoch == 0:
                raise DataError(f"{self.data.name} has {n} examples, fewer than a batch")
            epoch = start // per_epoch
            b = epoch * per_epoch
            skip = (start - b) * batch_size
        while True:
            stream = self._epoch(seed, epoch)
            if skip:
                stream, b, skip = stream.skip(skip), b + skip // batch_size, 0
            pending: list[dict[str, Any]] = []
            full = 0
            for example in stream:
                pending.append(example)
                if len(pending) < batch_size:
                    continue
                if b >= start:
                    yield self._decode(pending[rank * per:(rank + 1) * per], seed, b, rank * per)
                b, full, pending = b + 1, full + 1, []
            if full == 0:  # an epoch without one whole batch would loop for ever
                raise DataError(f"{self.data.name} has fewer examples than a batch")
            epoch += 1

    def _decode(self, examples: list[dict[str, Any]], seed: int, batch: int,
                offset: int) -> dict[str, Any]:
        rows, labels = [], []
        for k in range(len(examples)):
            row, used = self._decode_one(examples, k, batch, offset)
            rows.append(row)
            if self.with_labels:
                labels.append(int(examples[used][self.data.label_column]))
        images = uint8_to_tensor(np.stack(rows))
        if self.augment_seed is not None:
            images = augment_batch(images, [augment_seed(self.augment_seed, batch, offset + k)
                                            for k in range(len(rows))])
        out: dict[str, Any] = {"image": images}
        if self.with_labels:
            out["label"] = torch.as_tensor(labels, dtype=torch.long)
        return out

    def _decode_one(self, examples: list[dict[str, Any]], k: int, batch: int,
                    offset: int) -> tuple[np.ndarray, int]:
        for j in [*range(k, len(examples)), *range(k)]:
            try:
                return decode(_open(examples[j][self.data.image_column]), self.size,
                              self.mode), j
            except BadImage as exc:
                warn_skipped(f"{self.data.name} batch {batch} example {offset + j}", str(exc))
        raise DataError(f"{self.data.name}: no image of batch {batch} decodes")


def _prefetch(batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Run ``batches`` in a daemon thread, ``PREFETCH_BATCHES`` ahead; its errors are
    raised here, in order."""
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(PREFETCH_BATCHES)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        slots.put(("batch", batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer
            slots.put(("error", exc))

    thread = threading.Thread(target=produce, daemon=True, name="genkit-stream")
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
