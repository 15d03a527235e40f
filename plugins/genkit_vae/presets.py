"""VAE shapes by size preset (``--set size=tiny|small|base``) and image size.

A preset fills only the shape fields a config leaves unset (``None``): explicit fields
always win, so a checkpoint's ``genkit.json`` builds the same networks whatever the
presets become. Without ``size`` the preset is ``tiny``, which at 16 px is the VAE genkit
has always built (widths 32, 64; latent 16), so the shipped default model is unchanged.

The encoder has one stride-2 level per halving from ``image_size`` down to 4x4 (8 px: 1
level; 32 px: 3; 128 px: 5), widths ``base_width * 2**level`` capped at ``max_width``,
and ``blocks_per_level`` extra 3x3 convolutions at each level; the decoder mirrors it.
The latent grows with the image: ``latent_dim`` per 16 px of side, up to a cap.

Parameters of encoder + decoder (RGB, unconditional; :func:`parameter_table`):

======  ===============================  ======  ======  ======  =======
preset  widths (cap), convs, latent      16 px   32 px   64 px   128 px
======  ===============================  ======  ======  ======  =======
tiny    32.. (128), 1/level, 16 per 16px 0.12 M  0.53 M  1.25 M  2.17 M
small   32.. (256), 2/level, 32 per 16px 0.26 M  1.11 M  4.52 M  9.38 M
base    64.. (256), 3/level, 64 per 16px 1.40 M  5.99 M  12.0 M  16.5 M
======  ===============================  ======  ======  ======  =======
"""

from __future__ import annotations

import dataclasses
from typing import Any

from genkit.plugin import ConfigError

DEFAULT_SIZE = "tiny"
SHAPE_FIELDS = ("base_width", "max_width", "blocks_per_level", "latent_dim")
_NEW_FIELDS = ("max_width", "blocks_per_level")  # unknown to configs saved before presets
_LEGACY = {"max_width": 0, "blocks_per_level": 0}  # the networks those configs built


@dataclasses.dataclass(frozen=True)
class Preset:
    base_width: int  # width of the first level (S/2)
    max_width: int  # cap of the doubling widths
    blocks_per_level: int  # extra 3x3 convolutions per level
    latent_per_16px: int  # latent_dim per 16 px of image side
    max_latent: int
    note: str


PRESETS: dict[str, Preset] = {
    "tiny": Preset(32, 128, 0, 16, 128, "CPU minutes; the shipped 16 px default"),
    "small": Preset(32, 256, 1, 32, 256, "CPU hours, or a GPU in minutes"),
    "base": Preset(64, 256, 2, 64, 256, "GPUs"),
}


def shape(size: str, image_size: int) -> dict[str, Any]:
    """The shape fields of preset ``size`` at ``image_size``."""
    if size not in PRESETS:
        raise ConfigError(f"unknown size preset {size!r}; use one of {', '.join(PRESETS)}")
    p = PRESETS[size]
    latent = min(p.max_latent, p.latent_per_16px * max(1, image_size // 16))
    return {"base_width": p.base_width, "max_width": p.max_width,
            "blocks_per_level": p.blocks_per_level, "latent_dim": latent}


def resolve(config: Any) -> None:
    """Fill ``config``'s unset shape fields from its ``size`` preset (in place). A config
    without ``size`` that gives ``base_width`` (every config saved before presets) keeps
    the uncapped, single-convolution levels it always had."""
    if config.size is not None and config.size not in PRESETS:
        hint = " (image_size sets the side in pixels)" if config.size.isdigit() else ""
        raise ConfigError(f"unknown size preset {config.size!r}; use one of "
                          f"{', '.join(PRESETS)}{hint}")
    legacy = config.size is None and config.base_width is not None
    preset = shape(config.size or DEFAULT_SIZE, config.image_size)
    for field in SHAPE_FIELDS:
        if getattr(config, field) is None:
            value = _LEGACY[field] if legacy and field in _NEW_FIELDS else preset[field]
            setattr(config, field, value)


def parameter_table(image_sizes: tuple[int, ...] = (16, 32, 64, 128),
                    channels: int = 3) -> list[tuple[str, int, str, int]]:
    """``(preset, image_size, shape, parameters)`` for the docs (builds each VAE)."""
    from genkit_vae.generator import VAEConfig  # lazy: that module imports this one
    from genkit_vae.models import ConvDecoder, ConvEncoder, level_widths

    rows = []
    for name in PRESETS:
        for image_size in image_sizes:
            c = VAEConfig(image_size=image_size, channels=channels, size=name)
            arch = {"max_width": c.max_width, "blocks_per_level": c.blocks_per_level}
            nets = (ConvEncoder(image_size, channels, c.base_width, c.latent_dim, **arch),
                    ConvDecoder(c.latent_dim, image_size, channels, c.base_width, **arch))
            widths = ",".join(map(str, level_widths(image_size, c.base_width, c.max_width)))
            what = f"widths {widths}, +{c.blocks_per_level} conv/level, latent {c.latent_dim}"
            rows.append((name, image_size, what,
                         sum(p.numel() for net in nets for p in net.parameters())))
    return rows
