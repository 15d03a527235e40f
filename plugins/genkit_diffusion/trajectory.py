"""Pictures of the denoising process: how an image forms from noise, step by step.

``.gif`` writes an animation (one frame per shown step, the samples side by side);
any other suffix (``.png``) writes a strip: one row per sample, one column per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from genkit.plugin import ConfigError

TILE_PIXELS = 64  # small images are enlarged (nearest) to at least this size


def pick_frames(frames: list[torch.Tensor], count: int) -> list[torch.Tensor]:
    """``count`` frames evenly spaced from the first (noise) to the last (the sample)."""
    if len(frames) <= count:
        return list(frames)
    index = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in index]


def _tiles(frame: torch.Tensor) -> np.ndarray:
    """``(k, C, H, W)`` in about [-1, 1] -> uint8 ``(k, H', W', C)`` enlarged tiles."""
    scale = max(1, TILE_PIXELS // frame.shape[-1])
    x = ((frame.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (k, C, H, W)
    x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return x.permute(0, 2, 3, 1).numpy()


def _row(tiles: np.ndarray, pad: int = 2) -> np.ndarray:
    """Tiles ``(k, H, W, C)`` side by side with ``pad`` pixels between -> ``(H, W', C)``."""
    k, h, w, c = tiles.shape
    out = np.zeros((h, k * (w + pad) - pad, c), dtype=np.uint8)
    for i in range(k):
        out[:, i * (w + pad):i * (w + pad) + w] = tiles[i]
    return out


def _image(array: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def write_trajectory(frames: list[torch.Tensor], path: Path, count: int) -> Path:
    """Write ``count`` of ``frames`` (each ``(k, C, H, W)``) as a GIF or a PNG strip."""
    if not frames:
        raise ConfigError("no denoising steps were recorded; use --steps 1 or more")
    chosen = pick_frames(frames, count)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        images = [_image(_row(_tiles(f))) for f in chosen]
        durations = [120] * (len(images) - 1) + [1200]  # hold the finished samples
        images[0].save(path, save_all=True, append_images=images[1:], duration=durations,
                       loop=0)
        return path
    columns = [_tiles(f) for f in chosen]  # each (k, H, W, C)
    rows = [_row(np.stack([col[i] for col in columns])) for i in range(columns[0].shape[0])]
    pad = np.zeros((2, rows[0].shape[1], rows[0].shape[2]), dtype=np.uint8)
    strip = np.concatenate([x for r in rows for x in (r, pad)][:-1])
    _image(strip).save(path)
    return path
