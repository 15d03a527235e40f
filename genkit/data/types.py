"""The data genkit trains on, as loaded: images with labels, or a text corpus, and the
typed options a data source takes.

A source spec is ``scheme`` or ``scheme:argument`` (``digits``, ``folder:PATH``); every
source has the splits ``train``, ``test`` (held out, fixed) and ``all``.

Data options arrive as strings from ``--set key=value``; :class:`DataOptions` types and
checks them (``--set size=abc`` is one ConfigError line, not a TypeError deep in a loader).
This module stays light (no numpy or torch at import): the CLI reads :data:`DATA_OPTIONS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from genkit.config import build_config, check
from genkit.errors import DataError

if TYPE_CHECKING:
    import numpy as np

SPLITS = ("train", "test", "all")
_SPLIT_ALIASES = {"val": "test", "validation": "test", "valid": "test"}


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """Options of genkit's own data sources (``--set KEY=VALUE`` on ``genkit train``)."""

    split: str | None = None  # hf: the data set's own split to train on (default: train)
    config: str | None = None  # hf: the data set's configuration (subset) name
    revision: str | None = None  # hf: a Hub id's revision (branch, tag or commit)
    image_column: str | None = None  # hf: the image column (default: the first Image feature)
    label_column: str | None = None  # hf:/folder metadata: the class column (default: ClassLabel)
    caption_column: str | None = None  # hf:/folder metadata: the caption column (default: text)
    column: str | None = None  # hf: the image or text column (older name of image_column)
    size: int | None = None  # folder:/hf: side of .images when decoded whole (default: first image's)
    streaming: bool = False  # hf: stream the data set instead of preparing it (large sets)
    cache: bool = False  # folder: keep decoded images in genkit's cache (memory-mapped .npy)

    def __post_init__(self) -> None:
        check(self.size is None or 1 <= self.size <= 4096,
              f"data option size must be 1..4096 pixels, got {self.size}")
        for name in ("split", "config", "revision", "image_column", "label_column",
                     "caption_column", "column"):
            value = getattr(self, name)
            check(value is None or value.strip() != "", f"data option {name} must not be empty")


DATA_OPTIONS = tuple(f.name for f in dataclasses.fields(DataOptions))  # --set keys for data


def data_options(options: Mapping[str, Any] | DataOptions | None = None,
                 **more: Any) -> DataOptions:
    """Typed, validated options from a mapping of (string or typed) values; unknown keys
    and bad values are one ConfigError line naming the key."""
    if isinstance(options, DataOptions):
        options = dataclasses.asdict(options)
    values = {**(options or {}), **more}
    return build_config(DataOptions, values, what="data option")


@dataclasses.dataclass
class ImageData:
    """Images as uint8 ``(N, H, W, C)`` with optional integer labels (and captions)."""

    images: np.ndarray
    labels: np.ndarray | None = None
    num_classes: int = 0
    class_names: list[str] | None = None
    name: str = ""
    captions: list[str] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    modality = "image"


@dataclasses.dataclass
class TextData:
    """A text corpus."""

    text: str
    name: str = ""

    def __len__(self) -> int:
        return len(self.text)

    modality = "text"


def parse_source(spec: str) -> tuple[str, str | None]:
    scheme, sep, argument = spec.partition(":")
    return scheme.strip(), (argument if sep else None)


def normalise_split(split: str) -> str:
    split = _SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split
