"""The data genkit trains on, as loaded: images with labels, or a text corpus.

A source spec is ``scheme`` or ``scheme:argument`` (``digits``, ``folder:PATH``); every
source has the splits ``train``, ``test`` (held out, fixed) and ``all``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from genkit.errors import DataError

if TYPE_CHECKING:
    import numpy as np

SPLITS = ("train", "test", "all")
_SPLIT_ALIASES = {"val": "test", "validation": "test", "valid": "test"}
DATA_OPTIONS = ("column", "label_column", "size")  # --set keys meant for the data source


@dataclasses.dataclass
class ImageData:
    """Images as uint8 ``(N, H, W, C)`` with optional integer labels."""

    images: np.ndarray
    labels: np.ndarray | None = None
    num_classes: int = 0
    class_names: list[str] | None = None
    name: str = ""

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
