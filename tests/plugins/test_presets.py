"""Size presets of the diffusion and vae families (``--set size=tiny|small|base``): each
builds at 32, 64 and 128 px for grey and RGB, trains two steps on RGB data (converted to
the model's channels) and samples images of the right size and mode; explicit fields win
over the preset (so saved configs build the networks they were saved with); a bad preset
name is one ConfigError line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from genkit_diffusion.generator import DiffusionConfig, unet_kwargs
from genkit_diffusion.presets import PRESETS as UNET_PRESETS
from genkit_diffusion.presets import levels_for
from genkit_vae.generator import VAEConfig
from genkit_vae.presets import PRESETS as VAE_PRESETS

import genkit
from genkit.data.types import ImageData
from genkit.errors import ConfigError
from genkit.testing import CliRunner

SIZES = (32, 64, 128)
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
SAMPLE_OPTIONS = {"diffusion": {"scheduler": "dpm++", "steps": 2}, "vae": {}}


@pytest.fixture(scope="module")
def rgb_data() -> ImageData:
    """Eight 40x40 RGB images in two classes (resized and converted by each model)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 40, 40, 3), dtype=np.uint8)
    return ImageData(images=images, labels=np.array([0, 1] * 4), num_classes=2, name="rgb")


def _cases() -> list:
    """Every (family, preset, image size, channels); the grey base UNets at 64 and 128 px
    (20-40 s each on a loaded 2-core CPU) are slow: the RGB ones and the grey ones at
    32 px cover the same code."""
    cases = []
    for family, presets in (("diffusion", UNET_PRESETS), ("vae", VAE_PRESETS)):
        for size in presets:
            for image_size in SIZES:
                for channels in (1, 3):
                    slow = family == "diffusion" and size == "base" and image_size > 32 \
                        and channels == 1
                    marks = [pytest.mark.slow] if slow else []
                    cases.append(pytest.param(family, size, image_size, channels, marks=marks,
                                              id=f"{family}-{size}-{image_size}px-{channels}ch"))
    return cases


@pytest.mark.parametrize("family,size,image_size,channels", _cases())
def test_preset_builds_trains_and_samples(rgb_data, family, size, image_size, channels):
    g = genkit.create(family, seed=0, size=size, image_size=image_size, channels=channels,
                      num_classes=2)
    assert g.config.size == size
    report = g.train(rgb_data, steps=2, batch_size=2, device="cpu", progress=False,
                     log_with="none", log_every=1)
    assert report.steps == 2 and np.isfinite(report.final_loss)
    images = g.sample(2, seed=0, labels=[0, 1], **SAMPLE_OPTIONS[family])
    assert [im.size for im in images] == [(image_size, image_size)] * 2
    assert {im.mode for im in images} == {"L" if channels == 1 else "RGB"}


# ----------------------------------------------------------------------------- shapes
def test_unet_shapes_follow_the_image_size():
    assert [levels_for(s) for s in (8, 16, 28, 32, 64, 128)] == [3, 3, 3, 4, 4, 5]
    tiny32 = DiffusionConfig(image_size=32)  # no size: tiny
    assert tiny32.block_out_channels == (16, 32, 32, 32) and tiny32.attention is False
    base128 = unet_kwargs(DiffusionConfig(image_size=128, size="base"))
    assert base128["down_block_types"][-2:] == ("AttnDownBlock2D",) * 2  # at 16 and 8 px
    assert "Attn" not in "".join(base128["down_block_types"][:-2])
    assert base128["up_block_types"][:2] == ("AttnUpBlock2D",) * 2


def test_default_shapes_at_16px_are_the_shipped_models():
    """Without size, 16 px builds what genkit always built; the shipped models (whose
    genkit.json predates presets) load with their own shapes."""
    d = DiffusionConfig()
    assert (d.block_out_channels, d.layers_per_block, d.attention, d.norm_num_groups) == \
        ((16, 32, 32), 1, False, 8)
    v = VAEConfig()
    assert (v.base_width, v.latent_dim, v.blocks_per_level) == (32, 16, 0)
    shipped = genkit.load(PLUGINS / "genkit_diffusion" / "default")
    assert shipped.config.block_out_channels == d.block_out_channels
    assert shipped.num_parameters() == genkit.create("diffusion", num_classes=10).num_parameters()
    shipped = genkit.load(PLUGINS / "genkit_vae" / "default")
    assert shipped.num_parameters() == genkit.create("vae", num_classes=10).num_parameters()


# ------------------------------------------------------------------ explicit fields win
def test_explicit_fields_win_over_the_preset():
    c = DiffusionConfig(image_size=32, size="small", block_out_channels=(8, 16),
                        layers_per_block=2)
    assert c.block_out_channels == (8, 16) and c.layers_per_block == 2
    assert c.attention is True and c.norm_num_groups == 8  # the rest from the preset
    c = DiffusionConfig(image_size=32, size="base", attention=False, norm_num_groups=16)
    assert c.attention is False and c.norm_num_groups == 16
    assert c.block_out_channels == (64, 128, 128, 256)
    v = VAEConfig(image_size=64, size="small", latent_dim=7)
    assert v.latent_dim == 7 and v.base_width == 32 and v.blocks_per_level == 1
    # a preset's norm groups shrink to divide widths the user gave
    assert DiffusionConfig(image_size=32, block_out_channels=(12, 24)).norm_num_groups == 6


def test_configs_saved_before_presets_build_the_same_networks():
    """A genkit.json written before presets has every old field and none of the new."""
    old_unet = {"image_size": 32, "channels": 3, "block_out_channels": [16, 32, 32],
                "layers_per_block": 1, "attention": True, "norm_num_groups": 8,
                "num_classes": 4}
    g = genkit.create("diffusion", **old_unet)
    assert g.config.attention_levels == 1  # not the preset's
    assert unet_kwargs(g.config)["down_block_types"] == \
        ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    old_vae = {"image_size": 64, "channels": 3, "latent_dim": 16, "base_width": 32}
    v = genkit.create("vae", **old_vae)
    assert (v.config.max_width, v.config.blocks_per_level) == (0, 0)  # uncapped, one conv
    assert [m.out_channels for m in v.encoder.body if isinstance(m, torch.nn.Conv2d)] == \
        [32, 64, 128, 256]


def test_a_saved_model_reloads_with_its_shape(tmp_path):
    g = genkit.create("diffusion", image_size=32, channels=3, size="small", num_classes=2)
    g.save(tmp_path / "d")
    back = genkit.load(tmp_path / "d")
    assert back.config == g.config and back.num_parameters() == g.num_parameters()
    v = genkit.create("vae", image_size=32, channels=3, size="small")
    v.save(tmp_path / "v")
    assert genkit.load(tmp_path / "v").config == v.config


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("family", ["diffusion", "vae"])
def test_a_bad_preset_name_is_one_config_error_line(family):
    with pytest.raises(ConfigError) as info:
        genkit.create(family, size="huge")
    message = str(info.value)
    assert "\n" not in message and "'huge'" in message and "tiny, small, base" in message


def test_a_bad_preset_name_on_the_command_line_is_one_line(tmp_path):
    result = CliRunner().invoke(["train", "--plugin", "diffusion", "--out", str(tmp_path / "r"),
                                 "--steps", "1", "--set", "size=huge"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "size preset 'huge'" in lines[0]
    assert not (tmp_path / "r" / "model").exists()
