"""Which columns of a Hugging Face data set hold the images, text, labels and captions.

Shared by prepared (:mod:`genkit.data.hf`) and streamed (:mod:`genkit.data.stream`) sets:
an asked-for column must exist (one line listing the columns and the ``--set`` key);
otherwise the features decide (the first ``Image`` feature, the first ``ClassLabel``,
a string ``text`` or ``caption`` column).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genkit.data.folder import class_labels
from genkit.data.types import DataOptions
from genkit.errors import DataError


def find_columns(features: Any, columns: list[str], opts: DataOptions,
                 datasets: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(image, text, label, caption) column names, each checked to exist."""
    features = features or {}
    for what, column in (("image_column", opts.image_column), ("column", opts.column),
                         ("label_column", opts.label_column),
                         ("caption_column", opts.caption_column)):
        if column is not None and column not in columns:
            raise DataError(f"column {column!r} not in dataset; columns: {', '.join(columns)} "
                            f"(choose with --set {what}=NAME)")

    def kind(column: str) -> str:
        feature = features.get(column)
        if isinstance(feature, datasets.Image):
            return "image"
        if isinstance(feature, datasets.ClassLabel):
            return "label"
        dtype = getattr(feature, "dtype", "")
        return "text" if dtype in ("string", "large_string") else "int" if "int" in dtype else ""

    image = opts.image_column
    if image is None and opts.column is not None and kind(opts.column) != "text":
        image = opts.column
    if image is None and opts.column is None:
        image = next((c for c in columns if kind(c) == "image"), None) or next(
            (c for c in ("image", "img") if c in columns), None)
    text = None
    if image is None:
        text = opts.column or next((c for c in ("text", "content") if c in columns), None) \
            or next((c for c in columns if kind(c) == "text"), None)
    label = opts.label_column or next((c for c in columns if kind(c) == "label"), None) or (
        "label" if "label" in columns and kind("label") == "int" else None)
    caption = opts.caption_column or next(
        (c for c in ("text", "caption") if c in columns and kind(c) == "text"), None)
    return image, text, label, caption


def label_values(ds: Any, column: str, feature: Any, datasets: Any
                 ) -> tuple[np.ndarray, int, list[str] | None]:
    """(labels, num_classes, class names): ClassLabel names kept, strings mapped to sorted
    names, integers as they are."""
    values = list(ds[column])
    if isinstance(feature, datasets.ClassLabel):
        labels = np.asarray(values, dtype=np.int64)
        return labels, len(feature.names), list(feature.names)
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        labels = np.asarray(values, dtype=np.int64)
        if labels.min() < 0:
            raise DataError(f"label column {column!r} holds negative labels")
        return labels, int(labels.max()) + 1, None
    labels, names = class_labels(values)
    return labels, len(names), names
