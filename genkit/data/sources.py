"""genkit's built-in data sources (registered in :mod:`genkit.data.builtin`).

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, labels 0-9).
- ``folder:PATH``: a folder of images; sub-folders, when present, are the class labels.
- ``text:PATH``: a UTF-8 text file.
- ``pydoc``: the English text of Python's own ``pydoc_data.topics`` (ships with CPython).
- ``hf:PATH`` or ``hf:ORG/NAME``: a Hugging Face data set: a ``save_to_disk`` or
  ``imagefolder`` folder, a parquet/arrow/csv/json file, or a Hub id from the Hugging Face
  cache (needs the ``datasets`` extra).

Options (``--set``) are typed by :class:`genkit.data.types.DataOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genkit.data import hf
from genkit.data.folder import list_folder
from genkit.data.types import DataOptions, ImageData, TextData, data_options
from genkit.errors import DataError

if TYPE_CHECKING:
    import numpy as np

HELD_OUT_FRACTION = 0.1  # text: the last 10% is held out
DIGITS_TEST_FRACTION = 0.2


# ----------------------------------------------------------------------------- images
def _split_indices(n: int, split: str, test_fraction: float, seed: int = 0) -> np.ndarray:
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test_fraction)) if n > 1 else 0
    if split == "test":
        return np.sort(order[:n_test])
    if split == "train":
        return np.sort(order[n_test:])
    return np.arange(n)


def load_digits(argument: str | None, split: str = "train", **options: Any) -> ImageData:
    """scikit-learn's bundled digits: 8x8 grey images (0..16 scaled to 0..255), 10 classes."""
    import numpy as np
    from sklearn.datasets import load_digits as sk_load_digits

    if argument:
        raise DataError("the digits source takes no argument; use 'digits'")
    bunch = sk_load_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    index = _split_indices(len(images), split, DIGITS_TEST_FRACTION)
    return ImageData(images[index], bunch.target[index].astype(np.int64), 10,
                     [str(i) for i in range(10)], "digits")


def load_folder(argument: str | None, split: str = "train",
                options: DataOptions | Mapping[str, Any] | None = None, **more: Any) -> ImageData:
    """A folder of images, listed and not decoded (:mod:`genkit.data.folder`); the
    ``test`` split is a fixed, seeded 20% of the files."""
    data = list_folder(argument, data_options(options, **more))
    if split == "all":
        return data
    return data.subset(_split_indices(len(data), split, DIGITS_TEST_FRACTION))


# ------------------------------------------------------------------------------- text
def _text_split(text: str, split: str, fraction: float = HELD_OUT_FRACTION) -> str:
    cut = len(text) - int(len(text) * fraction)
    if split == "train":
        return text[:cut]
    if split == "test":
        return text[cut:]
    return text


def load_text(argument: str | None, split: str = "train", **options: Any) -> TextData:
    """A UTF-8 text file; the last 10% is the held-out split."""
    if not argument:
        raise DataError("text source needs a path: 'text:PATH'")
    path = Path(argument).expanduser()
    if not path.is_file():
        raise DataError(f"text file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"text file {path} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise DataError(f"text file {path} is empty")
    return TextData(_text_split(text, split), f"text:{argument}")


def pydoc_text() -> str:
    """Python's pydoc topics, in a fixed order: the built-in English corpus (~465k chars)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip() for key in sorted(topics)) + "\n"


def load_pydoc(argument: str | None, split: str = "train", **options: Any) -> TextData:
    if argument:
        raise DataError("the pydoc source takes no argument; use 'pydoc'")
    return TextData(_text_split(pydoc_text(), split), "pydoc")


# ------------------------------------------------------------------- Hugging Face data
def load_hf(argument: str | None, split: str = "train",
            options: DataOptions | Mapping[str, Any] | None = None, **more: Any) -> Any:
    """A Hugging Face data set through ``datasets.load_dataset`` (:mod:`genkit.data.hf`)."""
    return hf.load_hf(argument, split, data_options(options, **more))
