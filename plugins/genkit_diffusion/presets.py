"""UNet shapes by size preset (``--set size=tiny|small|base``) and image size.

A preset fills only the shape fields a config leaves unset (``None``): explicit fields
always win, so a checkpoint's ``genkit.json`` (which records every field) builds the
same UNet whatever the presets become. Without ``size``, the shape comes from
:data:`DEFAULT_SIZE`, and at 16 px ``tiny`` is the UNet genkit has always built
(16, 32, 32), so the shipped default model is unchanged.

The number of resolutions follows the image: from ``image_size`` down to a lowest side
of 4 up to 32 px and 8 from 64 px (16 px: 16-8-4; 32: 32-16-8-4; 64: 64-32-16-8; 128:
128-64-32-16-8), at least three levels. Self-attention sits at the lowest
``attention_levels`` resolutions and in the middle block.

Measured on the project's 2-core CPU (one torch thread, loaded machine), 32x32 RGB,
batch 64, 4 classes (training steps/s; sampling ms per UNet call on 100 images):

=========================  ======  ========  ==========
UNet                       params  steps/s   ms / call
=========================  ======  ========  ==========
16,32,32,32 (tiny)         0.37 M  1.23      453
16,32,32                   0.26 M  1.24      528
16,32,64                   0.62 M  0.95      586
32,64,64                   1.05 M  0.34      1798
32,64,64 + attn at 8       1.11 M  0.30      1711
32,64,64 + attn at 16, 8   1.16 M  0.25      2093
32,64,64,64 + attn at 4    1.53 M  0.33      1581
64,128,128 x2 + attn 8     6.47 M  0.07      7749
=========================  ======  ========  ==========

The first level's width sets the cost at this size (the 32x32 convolutions); attention
costs 12% of the step at 8x8 and another 17% at 16x16. Within a 30-minute CPU budget the
UNet sees about 2,000 batches at 1.2 steps/s, and small (0.33 steps/s) about 600, so
``tiny`` (no attention) is the default; six-minute runs on the 32x32 tiles of
``examples/train_tiles.py`` (300-500 steps) could not tell attention or augmentation
apart from plain tiny (FD 137-148 against a real floor of 0.56: all far from trained).

Parameters (RGB, unconditional; classes add ``(classes + 1) * 4 * widths[0]``):

======  =============  ===========  =============  ===========  ==================
preset  16 px          32 px        64 px          128 px       widths at 128 px
======  =============  ===========  =============  ===========  ==================
tiny    0.26 M         0.37 M       0.37 M         0.47 M       16,32,32,32,32
small   1.11 M         1.53 M       1.53 M         1.94 M       32,64,64,64,64
base    6.80 M         18.5 M       18.5 M         29.1 M       64,128,128,256,256
======  =============  ===========  =============  ===========  ==================

(:func:`parameter_table` rebuilds it.)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from genkit.plugin import ConfigError

#: the preset used when ``size`` is not given
DEFAULT_SIZE = "tiny"
#: the shape fields a preset fills (those left as None)
SHAPE_FIELDS = ("block_out_channels", "layers_per_block", "attention", "attention_levels",
                "norm_num_groups")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A family of UNet shapes: widths ``base * mult`` per resolution, and so on."""

    base: int  # width of the first (full-resolution) level
    mults: tuple[int, ...]  # width multipliers; the last repeats for deeper UNets
    layers_per_block: int
    attention_levels: int  # lowest resolutions with self-attention (0: none)
    norm_num_groups: int
    note: str  # what it is for (shown in the docs)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(16, (1, 2), 1, 0, 8, "CPU minutes; the shipped 16 px default"),
    "small": Preset(32, (1, 2), 1, 1, 8, "CPU hours, or a GPU in minutes"),
    "base": Preset(64, (1, 2, 2, 4), 2, 2, 32, "GPUs (DDPM's CIFAR-10 shape at half width)"),
}


def levels_for(image_size: int) -> int:
    """Resolutions of the UNet for ``image_size``: down to a side of 4 (up to 32 px) or
    8 (64 px and more), at least 3, and each a whole number of pixels."""
    if image_size % 4:
        raise ConfigError(f"image_size {image_size} must be divisible by 4 for the size "
                          f"presets; give block_out_channels for other sizes")
    lowest = min(8, max(4, image_size // 8))
    levels = max(3, int(math.log2(image_size / lowest)) + 1)
    while image_size % 2 ** (levels - 1):
        levels -= 1
    return levels


def shape(size: str, image_size: int) -> dict[str, Any]:
    """The shape fields of preset ``size`` at ``image_size``."""
    if size not in PRESETS:
        raise ConfigError(f"unknown size preset {size!r}; use one of {', '.join(PRESETS)}")
    preset = PRESETS[size]
    levels = levels_for(image_size)
    mults = [preset.mults[min(i, len(preset.mults) - 1)] for i in range(levels)]
    return {"block_out_channels": tuple(preset.base * m for m in mults),
            "layers_per_block": preset.layers_per_block,
            "attention": preset.attention_levels > 0,
            "attention_levels": max(1, min(preset.attention_levels, levels)),
            "norm_num_groups": preset.norm_num_groups}


def resolve(config: Any) -> None:
    """Fill ``config``'s unset shape fields from its ``size`` preset (in place).

    ``attention_levels`` is new: a config without ``size`` that sets ``attention`` itself
    (every config saved before presets) keeps the single attention level it always had.
    """
    if config.size is not None and config.size not in PRESETS:
        hint = " (image_size sets the side in pixels)" if config.size.isdigit() else ""
        raise ConfigError(f"unknown size preset {config.size!r}; use one of "
                          f"{', '.join(PRESETS)}{hint}")
    given = {f: getattr(config, f) for f in SHAPE_FIELDS if getattr(config, f) is not None}
    if len(given) == len(SHAPE_FIELDS):
        return
    preset = shape(config.size or DEFAULT_SIZE, config.image_size) \
        if "block_out_channels" not in given else _shape_without_levels(config.size)
    if config.size is None and "attention" in given and "attention_levels" not in given:
        preset["attention_levels"] = 1
    for field, value in preset.items():
        if field not in given:
            setattr(config, field, value)
    if "norm_num_groups" not in given:  # one that divides the widths actually used
        widths = config.block_out_channels
        groups = config.norm_num_groups
        while groups > 1 and any(w % groups for w in widths):
            groups -= 1
        config.norm_num_groups = groups


def _shape_without_levels(size: str | None) -> dict[str, Any]:
    """The preset's fields other than the widths (when block_out_channels is given)."""
    out = shape(size or DEFAULT_SIZE, 16)
    del out["block_out_channels"]
    return out


def parameter_table(image_sizes: tuple[int, ...] = (16, 32, 64, 128),
                    channels: int = 3, num_classes: int = 0) -> list[tuple[str, int, str, int]]:
    """``(preset, image_size, widths, parameters)`` for the docs (builds each UNet)."""
    from diffusers import UNet2DModel  # lazy: only the docs need real models

    from genkit_diffusion.generator import DiffusionConfig, unet_kwargs

    rows = []
    for name in PRESETS:
        for image_size in image_sizes:
            config = DiffusionConfig(image_size=image_size, channels=channels, size=name,
                                     num_classes=num_classes)
            unet = UNet2DModel(**unet_kwargs(config))
            widths = ",".join(map(str, config.block_out_channels))
            rows.append((name, image_size, widths, sum(p.numel() for p in unet.parameters())))
    return rows
