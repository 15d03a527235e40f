"""Image data that is listed, not decoded: :class:`LazyImageData` and its readers.

A million-image folder must cost a file list before step 1, not a decoded array, so
``folder:`` and ``hf:`` return :class:`LazyImageData`: a reader (file paths, or a
Hugging Face ``Dataset``), the labels (cheap, from the listing) and captions. Images are
decoded one at a time where they are used: in DataLoader workers
(:class:`genkit.data.datasets.LazyImageDataset`), or all at once by :func:`materialise`
for code that wants an array (evaluation, small sets).

``LazyImageData`` is an :class:`ImageData`, so code written for in-memory data keeps
working: ``len()`` never decodes; the ``images`` property decodes the whole split on
first use (to ``size`` when given, else the first image's size and mode) and keeps it.
Both readers pickle small (paths as one numpy bytes array; a memory-mapped ``Dataset``
as its file names), so worker processes start fast and share pages after ``fork``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from genkit.data.decode import BadImage, decode, native_format, pil_warnings, warn_skipped
from genkit.data.types import ImageData
from genkit.errors import DataError


class FileReader:
    """Image files under ``root``, by relative path (sorted, fixed at listing).

    The paths live in one byte buffer with an offsets array, not a list of str: no
    per-object refcounts (forked workers do not copy the pages), a few bytes a file,
    and pickling is two buffers.
    """

    def __init__(self, root: str, relpaths: Sequence[str],
                 stamps: Any = None) -> None:
        self.root = str(root)
        encoded = [p.encode("utf-8") for p in relpaths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        # (bytes, mtime_ns) of each file at listing, when the decoded cache needs a key.
        self.stamps = (np.zeros((len(encoded), 2), np.int64) if stamps is None
                       else np.asarray(stamps, dtype=np.int64).reshape(-1, 2))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def relpath(self, index: int) -> str:
        return self.blob[self.offsets[index]:self.offsets[index + 1]].tobytes().decode("utf-8")

    def describe(self, index: int) -> str:
        return os.path.join(self.root, self.relpath(index))

    def fingerprint(self) -> bytes:
        """What the decoded cache is keyed by: the file list, sizes and mtimes."""
        return (self.root.encode() + b"\0" + self.blob.tobytes() + self.offsets.tobytes()
                + self.stamps.tobytes())

    def decode(self, index: int, size: int, mode: str) -> np.ndarray:
        path = self.describe(index)
        try:
            return decode(path, size, mode)
        except BadImage:
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                raise BadImage("empty file (0 bytes)") from None
            raise

    def native(self, index: int) -> tuple[tuple[int, int], int]:
        return native_format(self.describe(index))

    def subset(self, index: np.ndarray) -> FileReader:
        """Rows ``index`` (gathered from the byte buffer without making strings)."""
        index = np.asarray(index, dtype=np.int64)
        lengths = np.diff(self.offsets)[index]
        out = FileReader(self.root, [], self.stamps[index])
        out.offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=out.offsets[1:])
        gather = np.repeat(self.offsets[:-1][index] - out.offsets[:-1], lengths)
        out.blob = self.blob[gather + np.arange(out.offsets[-1], dtype=np.int64)]
        return out


class DatasetReader:
    """The image column of a Hugging Face ``datasets.Dataset`` (Arrow, memory-mapped)."""

    def __init__(self, dataset: Any, column: str, name: str) -> None:
        self.dataset = dataset.select_columns([column])
        self.column, self.name = column, name

    def __len__(self) -> int:
        return len(self.dataset)

    def describe(self, index: int) -> str:
        return f"{self.name} row {index}"

    def fingerprint(self) -> bytes:
        """The decoded cache's key: ``datasets``' own content fingerprint of the table."""
        return f"{self.name}\0{getattr(self.dataset, '_fingerprint', '')}".encode()

    def _image(self, index: int) -> Any:
        from PIL import Image

        try:
            with pil_warnings():
                value = self.dataset[int(index)][self.column]
        except Exception as exc:  # the Image feature decodes on access: bad bytes raise here
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise BadImage(f"cannot decode ({text})") from None
        if isinstance(value, np.ndarray) or isinstance(value, list):
            value = Image.fromarray(np.asarray(value, dtype=np.uint8).squeeze())
        if not hasattr(value, "convert"):
            raise BadImage(f"column {self.column!r} holds {type(value).__name__}, not an image")
        return value

    def decode(self, index: int, size: int, mode: str) -> np.ndarray:
        return decode(self._image(index), size, mode)

    def native(self, index: int) -> tuple[tuple[int, int], int]:
        return native_format(self._image(index))

    def subset(self, index: np.ndarray) -> DatasetReader:
        out = DatasetReader.__new__(DatasetReader)
        out.dataset = self.dataset.select(index.tolist())
        out.column, out.name = self.column, self.name
        return out


class LazyImageData(ImageData):
    """Image data read on demand (see the module docstring). ``images`` decodes."""

    def __init__(self, reader: Any = None, labels: np.ndarray | None = None,
                 num_classes: int = 0, class_names: list[str] | None = None, name: str = "",
                 captions: list[str] | None = None, size: int | None = None, *,
                 cache: bool = False, images: np.ndarray | None = None) -> None:
        # ``images=`` lets dataclasses.replace(data, images=..., labels=...) (used by
        # evaluation to take subsets) produce an in-memory copy of a lazy set.
        self.reader, self.labels, self.num_classes = reader, labels, num_classes
        self.class_names, self.name, self.captions = class_names, name, captions
        self.size, self.cache = size, cache  # cache: decoded cache wanted (--set cache=true)
        self._images = images

    modality = "image"

    @property
    def lazy(self) -> bool:
        """True while the images live in files, not in memory."""
        return self._images is None and self.reader is not None

    @property
    def images(self) -> np.ndarray:  # type: ignore[override]
        if self._images is None:
            self._images = decode_all(self, np.arange(len(self.reader)))
        return self._images

    @images.setter
    def images(self, value: np.ndarray) -> None:
        self._images = value

    def __len__(self) -> int:
        return int(self._images.shape[0]) if self._images is not None else len(self.reader)

    def __repr__(self) -> str:
        state = "lazy" if self.lazy else "decoded"
        return f"LazyImageData({self.name!r}, {len(self)} images, {state})"

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__

    def subset(self, index: np.ndarray) -> LazyImageData:
        """The rows ``index`` (a split), still lazy."""
        index = np.asarray(index, dtype=np.int64)
        return LazyImageData(
            self.reader.subset(index), None if self.labels is None else self.labels[index],
            self.num_classes, self.class_names, self.name,
            None if self.captions is None else [self.captions[i] for i in index], self.size,
            cache=self.cache)

    def target_format(self) -> tuple[int | tuple[int, int], int]:
        """(size, channels) for a whole-set decode: ``size`` (square) or the first
        readable image's ``(width, height)``, and its channels (grey or RGB)."""
        for i in range(len(self.reader)):
            try:
                (w, h), channels = self.reader.native(i)
            except BadImage as exc:
                warn_skipped(self.reader.describe(i), str(exc))
                continue
            return (self.size or (w, h)), channels
        raise DataError(f"{self.name}: no image could be decoded")


def decode_all(data: LazyImageData, index: np.ndarray, size: int | tuple[int, int] | None = None,
               channels: int | None = None) -> np.ndarray:
    """uint8 ``(len(index), H, W, C)``: rows ``index`` decoded in the main process; a
    bad file is skipped with its warning and replaced by the next good row, so the
    array keeps its length and row i stays a function of i."""
    if size is None or channels is None:
        found_size, found = data.target_format()
        size, channels = size or found_size, channels or found
    mode = "L" if channels == 1 else "RGB"
    width, height = (size, size) if isinstance(size, int) else size
    out = np.empty((len(index), height, width, channels), dtype=np.uint8)
    for k, i in enumerate(index):
        out[k] = decode_or_substitute(data.reader, int(i), size, mode)[0]
    return out


def decode_or_substitute(reader: Any, index: int, size: int, mode: str,
                         report: list[tuple[str, str]] | None = None) -> tuple[np.ndarray, int]:
    """Row ``index`` decoded, or, when it is bad, the next row that decodes (``index+1``,
    ``index+2``, ... wrapping): a deterministic stand-in, so batches keep their size and
    the data position stays a function of the step. Bad rows go to ``report`` (workers:
    the main process prints them) or straight to :func:`warn_skipped`."""
    n = len(reader)
    for k in range(n):
        j = (index + k) % n
        try:
            return reader.decode(j, size, mode), j
        except BadImage as exc:
            if report is None:
                warn_skipped(reader.describe(j), str(exc))
            else:
                report.append((reader.describe(j), str(exc)))
    raise DataError(f"no image of the {n} in this data set could be decoded")


def materialise(data: Any, max_n: int | None = None, seed: int = 0, size: int | None = None,
                channels: int | None = None) -> Any:
    """In-memory :class:`ImageData` for code that needs an array (evaluation): lazy data
    is decoded (at most ``max_n`` rows, a fixed seeded subset in file order; a stream's
    first ``max_n``) at ``size`` and ``channels`` (default: ``--set size`` or the first
    image's, and its channels); in-memory data passes through (cut to ``max_n`` the same
    way). Anything else (text) is returned as is.
    """
    if not isinstance(data, ImageData):
        return data
    if getattr(data, "streaming", False):  # genkit.data.stream: the first rows
        return data.take(max_n, size or data.size, channels)
    n = len(data)
    index = np.arange(n)
    if max_n is not None and n > max_n:
        index = np.sort(np.random.default_rng(seed).permutation(n)[:max_n])
    labels = None if data.labels is None else data.labels[index]
    captions = None if data.captions is None else [data.captions[i] for i in index]
    if isinstance(data, LazyImageData) and data.lazy:
        images = decode_all(data, index, size or data.size, channels)
    else:
        images = data.images if len(index) == n else data.images[index]
    return ImageData(images, labels, data.num_classes, data.class_names, data.name, captions)
