"""genkit's built-in data sources (registered in :mod:`genkit.data.builtin`).

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, labels 0-9).
- ``folder:PATH``: a folder of images; sub-folders, when present, are the class labels.
- ``text:PATH``: a UTF-8 text file.
- ``pydoc``: the English text of Python's own ``pydoc_data.topics`` (ships with CPython).
- ``hf:PATH``: a Hugging Face ``datasets`` folder (``save_to_disk``) or a parquet/arrow
  file; ``column=`` picks the column (needs the ``datasets`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from genkit.data.types import ImageData, TextData
from genkit.errors import DataError

if TYPE_CHECKING:
    import numpy as np

HELD_OUT_FRACTION = 0.1  # text: the last 10% is held out
DIGITS_TEST_FRACTION = 0.2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


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


def load_folder(argument: str | None, split: str = "train", size: int | None = None,
                **options: Any) -> ImageData:
    """A folder of images; sub-folder names become labels. Images are resized to the
    first image's size (or ``size``)."""
    import numpy as np
    from PIL import Image

    if not argument:
        raise DataError("folder source needs a path: 'folder:PATH'")
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    class_names = sorted({p.parent.relative_to(root).as_posix() for p in files} - {"."})
    arrays, labels = [], []
    target: tuple[int, int] | None = (size, size) if size else None
    mode = None
    for path in files:
        with Image.open(path) as im:
            mode = mode or ("L" if im.mode in ("L", "1", "I;16") else "RGB")
            im = im.convert(mode)
            target = target or im.size
            arrays.append(np.asarray(im.resize(target, Image.BILINEAR)))
        labels.append(class_names.index(path.parent.relative_to(root).as_posix())
                      if class_names else 0)
    images = np.stack(arrays)
    if images.ndim == 3:
        images = images[..., None]
    index = _split_indices(len(images), split, DIGITS_TEST_FRACTION)
    label_array = np.asarray(labels, dtype=np.int64)[index] if class_names else None
    return ImageData(images[index], label_array, len(class_names), class_names or None,
                     f"folder:{argument}")


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
def load_hf(argument: str | None, split: str = "train", column: str | None = None,
            label_column: str | None = None, **options: Any) -> ImageData | TextData:
    """A ``datasets`` folder written by ``save_to_disk``, or a .parquet / .arrow file."""
    import numpy as np

    if not argument:
        raise DataError("hf source needs a path: 'hf:PATH'")
    try:
        import datasets
    except ImportError:
        raise DataError("the hf source needs the datasets package: "
                        "pip install 'genkit[datasets]'") from None
    path = Path(argument).expanduser()
    if not path.exists():
        raise DataError(f"dataset path {path} does not exist")
    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split] if split in ds else ds[next(iter(ds))]
    elif path.suffix == ".parquet":
        ds = datasets.Dataset.from_parquet(str(path))
    elif path.suffix == ".arrow":
        ds = datasets.Dataset.from_file(str(path))
    else:
        raise DataError(f"{path}: expected a save_to_disk folder, a .parquet or an .arrow file")
    if column is None:
        column = next((c for c in ("image", "img", "text") if c in ds.column_names), None)
    if column not in ds.column_names:
        raise DataError(f"column {column!r} not in dataset; columns: {', '.join(ds.column_names)}"
                        " (choose with --set column=NAME)")
    values = ds[column]
    if values and isinstance(values[0], str):
        return TextData(_text_split("\n\n".join(values), split), f"hf:{argument}")
    arrays = [np.asarray(v.convert("RGB") if hasattr(v, "convert") else v) for v in values]
    images = np.stack(arrays).astype(np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    labels = None
    num_classes = 0
    label_column = label_column or ("label" if "label" in ds.column_names else None)
    if label_column:
        labels = np.asarray(ds[label_column], dtype=np.int64)
        num_classes = int(labels.max()) + 1
    index = _split_indices(len(images), split, DIGITS_TEST_FRACTION)
    return ImageData(images[index], None if labels is None else labels[index], num_classes,
                     None, f"hf:{argument}")
