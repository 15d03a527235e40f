"""The images and masks of an edit: finding them, checking them, and turning them into tensors.

Inputs are PIL images or image files (a file, a folder of them, or a list); masks are the
same, one per image (a folder pairs with a folder of images by file name, a list by
position) or one mask for every image. A mask is white (255, or 1) where the model fills
in and black (0) where the image is kept.

What is refused and what is converted (one line each, see README's "Editing images"):

- a mask of another size than its image, or one that is not black and white only, is
  refused: guessing which pixels a grey or resized mask means would silently change what
  the user keeps;
- an image of another size or mode than the model's is converted as training converted
  its data (resized bilinear with antialiasing, grey <-> RGB by averaging or repetition)
  and a one-line note says how many were; its mask is resized with it (nearest, so it
  stays binary).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genkit.errors import SamplingError
from genkit.fs import sha256_file
from genkit.imaging import images_to_uint8, uint8_to_tensor

if TYPE_CHECKING:
    import torch
    from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
GREY_MODES = ("L", "1", "I", "I;16")  # as genkit.imaging.images_to_uint8 reads them


@dataclasses.dataclass
class EditInput:
    """One image to edit: its name in manifests (the path as given, or ``<image i>``), its
    source (a path or a PIL image), and its mask's (None without a mask)."""

    name: str
    source: Any
    mask_name: str | None = None
    mask: Any = None
    size: tuple[int, int] = (0, 0)  # (width, height), read from the header
    mode: str = ""

    def digest(self) -> str:
        """sha256 of the image and mask content (a run's inputs are part of its identity)."""
        return hashlib.sha256(f"{_digest(self.source)}:{_digest(self.mask)}".encode()).hexdigest()


def _digest(source: Any) -> str:
    if source is None:
        return ""
    if isinstance(source, Path):
        return sha256_file(source)
    return hashlib.sha256(f"{source.mode}:{source.size}".encode() + source.tobytes()).hexdigest()


def _is_image(value: Any) -> bool:
    return hasattr(value, "convert") and hasattr(value, "size")


def _expand(spec: Any, what: str) -> list[tuple[str, Any]]:
    """``(name, source)`` of every image a spec names, in order (a folder: sorted by name)."""
    items = [spec] if _is_image(spec) or isinstance(spec, (str, Path)) else list(spec or [])
    found: list[tuple[str, Any]] = []
    for k, item in enumerate(items):
        if _is_image(item):
            found.append((f"<{what} {k}>", item))
            continue
        if not isinstance(item, (str, Path)):
            raise SamplingError(f"{what}s must be PIL images, image files or folders, got "
                                f"{type(item).__name__}")
        path = Path(item).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                           and p.is_file() and not p.name.startswith("."))
            if not files:
                raise SamplingError(f"--{what}s {path} holds no image files "
                                    f"({', '.join(IMAGE_SUFFIXES)})")
            found += [(str(p), p) for p in files]
        elif path.is_file():
            found.append((str(path), path))
        else:
            raise SamplingError(f"--{what}s {path}: no such file or folder")
    if not found:
        raise SamplingError(f"no {what}s given")
    return found


def collect_inputs(images: Any, masks: Any = None) -> list[EditInput]:
    """The inputs of an edit, each with its mask (see the module docstring for pairing)."""
    inputs = [EditInput(name, source) for name, source in _expand(images, "image")]
    if masks is None:
        return inputs
    if isinstance(masks, (str, Path)) and Path(masks).expanduser().is_dir():
        folder = Path(masks).expanduser()
        by_stem: dict[str, Path] = {}
        for _, path in _expand(folder, "mask"):
            by_stem.setdefault(path.stem, path)
        for item in inputs:
            stem = Path(item.name).stem
            if not isinstance(item.source, Path) or stem not in by_stem:
                raise SamplingError(f"no mask for {item.name} in {folder} (masks pair with "
                                    "images by file name: a.png with a.png)")
            item.mask_name, item.mask = str(by_stem[stem]), by_stem[stem]
        return inputs
    found = _expand(masks, "mask")
    if len(found) == 1:
        found = found * len(inputs)  # one mask for every image
    if len(found) != len(inputs):
        raise SamplingError(f"{len(found)} masks for {len(inputs)} images: give one mask per "
                            "image, or one mask for all")
    for item, (name, source) in zip(inputs, found):
        item.mask_name, item.mask = name, source
    return inputs


def read_images(spec: Any, what: str = "image") -> list[tuple[str, Image.Image]]:
    """``(name, PIL image)`` of every image a spec names (a PIL image, a file, a folder in
    file-name order, or a list of them); an unreadable file is a one-line error."""
    return [(name, _open(source, name)) for name, source in _expand(spec, what)]


def _open(source: Any, name: str) -> Image.Image:
    """A decoded PIL image (a copy for files, so no file stays open)."""
    if _is_image(source):
        return source
    from PIL import Image

    try:
        with Image.open(source) as im:
            im.load()
            return im.copy()
    except Exception as exc:  # PIL raises many kinds for a damaged or foreign file
        raise SamplingError(f"cannot read image {name}: {' '.join(str(exc).split()) or type(exc).__name__}") from None


def _header(source: Any, name: str) -> tuple[tuple[int, int], str]:
    if _is_image(source):
        return source.size, source.mode
    from PIL import Image

    try:
        with Image.open(source) as im:
            return im.size, im.mode
    except Exception as exc:
        raise SamplingError(f"cannot read image {name}: {' '.join(str(exc).split()) or type(exc).__name__}") from None


def check_inputs(inputs: Sequence[EditInput], channels: int, size: int,
                 note: Callable[[str], None] | None = None) -> None:
    """Read every header: refuse masks of another size than their image, and note (once
    per kind) the images that will be resized or converted to the model's format."""
    resized: dict[tuple[int, int], int] = {}
    converted = 0
    checked: set[int] = set()  # masks already read (one mask for every image: once)
    for item in inputs:
        item.size, item.mode = _header(item.source, item.name)
        if item.mask is not None:
            if id(item.mask) not in checked:
                mask_array(item)  # black and white, or refused before anything is written
                checked.add(id(item.mask))
            mask_size, _ = _header(item.mask, item.mask_name or "")
            if mask_size != item.size:
                raise SamplingError(f"mask {item.mask_name} is {mask_size[0]}x{mask_size[1]} but "
                                    f"its image {item.name} is {item.size[0]}x{item.size[1]}; give "
                                    "masks the size of their images")
        if item.size != (size, size):
            resized[item.size] = resized.get(item.size, 0) + 1
        if (item.mode in GREY_MODES) != (channels == 1):
            converted += 1
    if note is None:
        return
    if resized:
        sizes = ", ".join(f"{w}x{h}" for w, h in sorted(resized))
        note(f"{sum(resized.values())} of {len(inputs)} images are {sizes}, not the model's "
             f"{size}x{size}: resized as training resized its data (bilinear), masks with "
             "them (nearest)")
    if converted:
        note(f"{converted} of {len(inputs)} images converted to {'grey' if channels == 1 else 'RGB'}, "
             "the model's mode")


def load_images(inputs: Sequence[EditInput], channels: int, size: int) -> torch.Tensor:
    """The inputs at the model's format: ``(B, channels, size, size)`` in [-1, 1]."""
    import torch

    return torch.cat([uint8_to_tensor(images_to_uint8([_open(item.source, item.name)]), size,
                                      channels) for item in inputs])


def mask_array(item: EditInput) -> Any:
    """The input's mask as a boolean ``(H, W)`` array, True = fill; a mask that is not
    black and white (0 and 255, or 0 and 1) is refused."""
    import numpy as np

    array = np.asarray(_open(item.mask, item.mask_name or "").convert("L"))  # (H, W)
    values = set(np.unique(array).tolist())
    if not (values <= {0, 255} or values <= {0, 1}):
        example = min(values - {0, 255}, default=1)
        raise SamplingError(f"mask {item.mask_name} is not black and white ({len(values)} "
                            f"grey levels, such as {example}); use 255 (fill) and 0 (keep) only")
    return array > 0


def load_masks(inputs: Sequence[EditInput], size: int) -> torch.Tensor:
    """The masks at the model's size: ``(B, 1, size, size)``, 1 = fill, 0 = keep."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    masks = []
    for item in inputs:
        fill = torch.from_numpy(mask_array(item).astype(np.float32))[None, None]  # (1, 1, H, W)
        if fill.shape[-2:] != (size, size):
            fill = F.interpolate(fill, size=(size, size), mode="nearest")
        masks.append(fill)
    return torch.cat(masks)
