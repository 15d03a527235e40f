"""Images between tensors and PIL, and contact sheets: one copy for the core and plugins.

genkit's image tensors are float ``(N, C, H, W)`` in [-1, 1], C = 1 (grey) or 3 (RGB);
its images are PIL images of mode ``L`` or ``RGB``. Importing this module is light: torch,
numpy and PIL load when a function runs.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genkit.errors import ConfigError
from genkit.fs import atomic_write_bytes

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` in [-1, 1] -> uint8 ``(N, H, W, C)`` (rounded, clamped)."""
    import torch

    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def uint8_to_images(array: np.ndarray) -> list[Image.Image]:
    """uint8 ``(N, H, W, C)`` with C = 1 or 3 -> PIL images of mode ``L`` or ``RGB``."""
    from PIL import Image

    if array.shape[-1] == 1:
        return [Image.fromarray(a[..., 0], mode="L") for a in array]
    return [Image.fromarray(a, mode="RGB") for a in array]


def tensor_to_images(images: torch.Tensor) -> list[Image.Image]:
    """``(N, C, H, W)`` in [-1, 1] -> PIL images (mode ``L`` for 1 channel, ``RGB`` for 3)."""
    return uint8_to_images(tensor_to_uint8(images))


def images_to_uint8(images: Sequence[Any]) -> np.ndarray:
    """PIL images of one size -> uint8 ``(N, H, W, C)`` (C = 1 for ``L``, else 3)."""
    import numpy as np

    grey = all(im.mode in ("L", "1", "I", "I;16") for im in images)
    arrays = [np.asarray(im.convert("L" if grey else "RGB")) for im in images]
    array = np.stack(arrays)
    return array[..., None] if array.ndim == 3 else array


def uint8_to_tensor(array: np.ndarray, size: int | None = None,
                    channels: int | None = None) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> float ``(N, channels, size, size)`` in [-1, 1].

    Grey becomes RGB by repetition and RGB grey by averaging; images are resized with
    antialiasing when ``size`` differs (both only when asked for).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float()  # (N, C, H, W)
    if channels is not None and x.shape[1] != channels:
        x = x.mean(1, keepdim=True) if channels == 1 else x[:, :1].expand(-1, channels, -1, -1)
    if size is not None and x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    return (x / 127.5 - 1.0).clamp(-1.0, 1.0).contiguous()


def pil_to_tensor(images: Sequence[Any], size: int, channels: int) -> torch.Tensor:
    """PIL images -> float ``(N, channels, size, size)`` in [-1, 1], converted to the
    model's mode (``L`` or ``RGB``) and resized (bilinear) to its size."""
    import numpy as np
    import torch
    from PIL import Image

    if not images or not all(hasattr(im, "convert") for im in images):
        raise ConfigError("images must be a non-empty list of PIL images")
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(im.convert(mode).resize((size, size), Image.BILINEAR), np.float32)
              for im in images]
    x = torch.from_numpy(np.stack(arrays))  # (N, S, S) or (N, S, S, 3)
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (N, C, S, S)
    return x / 127.5 - 1


def make_grid(images: Sequence[Image.Image], columns: int | None = None,
              padding: int = 2) -> Image.Image:
    """A contact sheet of ``images`` (all the size of the first one), row by row."""
    from PIL import Image

    if not images:
        raise ConfigError("no images to put in a grid")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    mode = "RGB" if any(im.mode != "L" for im in images) else "L"
    sheet = Image.new(mode, (columns * (w + padding) + padding, rows * (h + padding) + padding),
                      color=0)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        sheet.paste(im.convert(mode), (padding + c * (w + padding), padding + r * (h + padding)))
    return sheet


def strip(images: Sequence[Image.Image]) -> Image.Image:
    """Images side by side, left to right, without padding (an interpolation strip)."""
    return make_grid(images, columns=len(images), padding=0)


def save_grid(images: Sequence[Image.Image], path: str | Path, scale: int | None = None,
              columns: int | None = None) -> Path:
    """Write a grid PNG atomically, upscaled (nearest) so small images stay visible."""
    from PIL import Image

    grid = make_grid(images, columns=columns)
    if scale is None:
        per_row = columns or math.ceil(math.sqrt(len(images)))
        scale = max(1, 256 // max(1, images[0].size[0] * per_row))
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    return save_png(grid, path)


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write one PNG atomically (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
