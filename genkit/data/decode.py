"""Decoding one image to the model's format, and what happens to images that do not decode.

Every lazy image path (folders, Hugging Face data sets, the decoded cache) goes through
:func:`decode`: open, refuse decompression bombs, convert to the model's mode (grey ``L``
or ``RGB``, so a folder of mixed grey and RGB files serves either kind of model), resize
to the model's side, and hand back uint8 ``(S, S, C)``. A file that cannot be decoded
(corrupt, zero bytes, truncated, a decompression bomb) raises :class:`BadImage`; callers
skip it and report it once per process with :func:`warn_skipped`, whose single stderr
line is ``Warning: skipped PATH: REASON``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
GREY_MODES = ("L", "1", "I", "I;16", "F", "LA", "La")

_WARNED: set[str] = set()
_WARN_LOCK = threading.Lock()


class BadImage(Exception):
    """An image that cannot be decoded; ``str()`` is the reason for the warning line."""


def warn_skipped(path: str, reason: str) -> bool:
    """Print ``Warning: skipped PATH: REASON`` on stderr, once per path in this process
    (the train and test splits, the eval and the loader all see the same file); True
    when this call printed it."""
    with _WARN_LOCK:
        if path in _WARNED:
            return False
        _WARNED.add(path)
    print(f"Warning: skipped {path}: {reason}", file=sys.stderr, flush=True)
    return True


@contextlib.contextmanager
def pil_warnings() -> Iterator[None]:
    """PIL's decompression-bomb warning raised as an error, its other warnings silenced:
    a warning printed from a DataLoader worker would be a stray stderr line."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def open_image(source: Any) -> Any:
    """``Image.open`` on a path or file object; decompression bombs (past PIL's own
    pixel limit) and unreadable files raise :class:`BadImage`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with pil_warnings():
            return Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage("decompression bomb (more pixels than PIL allows)") from None
    except UnidentifiedImageError:
        raise BadImage("not an image, or a corrupt one") from None
    except FileNotFoundError:
        raise BadImage("the file has gone") from None
    except OSError as exc:
        raise BadImage(f"cannot open ({exc.strerror or exc})") from None


def to_model_format(image: Any, size: int | tuple[int, int], mode: str) -> np.ndarray:
    """A PIL image converted to ``mode`` (``L`` or ``RGB``) and resized (bilinear, which
    PIL antialiases when shrinking) to ``size`` x ``size`` (or ``(width, height)``):
    uint8 ``(H, W, C)``."""
    import numpy as np
    from PIL import Image

    target = (size, size) if isinstance(size, int) else tuple(size)
    try:
        with pil_warnings():
            if image.format == "JPEG" and max(image.size) > 2 * max(target):
                image.draft(mode, target)  # DCT scaling: decode big JPEGs at ~size
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # else PIL warns on every such file
            if image.mode != mode:
                image = image.convert(mode)
            if image.size != target:
                image = image.resize(target, Image.BILINEAR, reducing_gap=3.0)
            array = np.asarray(image, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage("decompression bomb (more pixels than PIL allows)") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError,
            ZeroDivisionError, MemoryError) as exc:  # what PIL's decoders raise on bad data
        text = str(exc) or type(exc).__name__
        reason = "truncated image" if "truncated" in text.lower() else f"cannot decode ({text})"
        raise BadImage(reason) from None
    return array[..., None] if array.ndim == 2 else array


def decode(source: Any, size: int | tuple[int, int], mode: str) -> np.ndarray:
    """Open ``source`` (a path, a file object or an already opened PIL image) and return
    it in the model's format (:func:`to_model_format`), or raise :class:`BadImage`."""
    if hasattr(source, "convert"):
        return to_model_format(source, size, mode)
    image = open_image(source)
    with image:
        return to_model_format(image, size, mode)


def model_mode(channels: int) -> str:
    """The PIL mode of a model with ``channels`` channels."""
    return "L" if channels == 1 else "RGB"


def native_format(source: Any) -> tuple[tuple[int, int], int]:
    """``((width, height), channels)`` of an image from its header only (no decode)."""
    image = source if hasattr(source, "convert") else open_image(source)
    channels = 1 if image.mode in GREY_MODES else 3
    size = image.size
    if image is not source:
        image.close()
    return size, channels
