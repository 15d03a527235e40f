"""A small random text-to-image pipeline, for tests, benchmarks and offline examples.

Fine-tuning code needs a real ``StableDiffusionPipeline`` to run against, and a real one
is gigabytes on the Hub. :func:`tiny_text_to_image` builds the same architecture from
scratch in a second (``UNet2DConditionModel`` + ``AutoencoderKL`` + ``CLIPTextModel`` +
``CLIPTokenizer``, the recipe of genkit's foreign-pipeline test) and saves it as a diffusers
pipeline directory. Two things make it behave like a trained one where fine-tuning can
see it: the VAE is nearly certain of its latents (a random one draws them with unit
noise, which would drown every image), its ``scaling_factor`` is measured so that latents
have unit spread (Stable Diffusion's 0.18215 was found the same way), and the scheduler
is Stable Diffusion's (scaled-linear betas, no sample clipping).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch


def _vocabulary() -> list[str]:
    """CLIP's specials, then every lowercase letter, digit and punctuation mark, alone and
    as a word end (``a</w>``): any ASCII caption tokenizes one character at a time."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    return ["<|startoftext|>", "<|endoftext|>"] + list(chars) + [f"{c}</w>" for c in chars]


def tiny_text_to_image(directory: str | Path, image_size: int = 8, widths: tuple[int, ...] = (8, 16),
                       latent_down: int = 1, text_width: int = 8, seed: int = 0) -> Path:
    """Save a random Stable Diffusion pipeline under ``directory/"sd"`` and return its path.

    Args:
        image_size: side of the images in pixels.
        widths: UNet block widths (the first level has cross-attention, the last too when
            there are more than two).
        latent_down: how many times the VAE halves the image (0: latents at full size).
        text_width: width of the CLIP text encoder's states.
        seed: the weights are a function of it.
    """
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    directory = Path(directory)
    torch.manual_seed(seed)
    vocab = _vocabulary()
    files = directory / "vocab"
    files.mkdir(parents=True, exist_ok=True)
    (files / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (files / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(files / "vocab.json"), str(files / "merges.txt"),
                              model_max_length=24)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=text_width, intermediate_size=2 * text_width,
        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=24,
        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    levels = len(widths)
    down = ["CrossAttnDownBlock2D"] + ["DownBlock2D"] * (levels - 1)
    up = ["UpBlock2D"] * (levels - 1) + ["CrossAttnUpBlock2D"]
    vae_widths = tuple([8] * (latent_down + 1))
    unet = UNet2DConditionModel(
        sample_size=image_size // 2 ** latent_down, in_channels=4, out_channels=4,
        block_out_channels=tuple(widths), layers_per_block=1, norm_num_groups=4,
        cross_attention_dim=text_width, attention_head_dim=2,
        down_block_types=tuple(down), up_block_types=tuple(up))
    vae = AutoencoderKL(block_out_channels=vae_widths, norm_num_groups=4, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * len(vae_widths),
                        up_block_types=("UpDecoderBlock2D",) * len(vae_widths),
                        sample_size=image_size)
    with torch.no_grad():  # a trained VAE is nearly sure of its latents: log-variance -20
        vae.quant_conv.weight[4:].zero_()
        vae.quant_conv.bias[4:].fill_(-20.0)
    probe = torch.rand(16, 3, image_size, image_size) * 2 - 1  # (16, 3, S, S) in [-1, 1]
    with torch.no_grad():
        spread = float(vae.encode(probe).latent_dist.mean.std())
    vae.register_to_config(scaling_factor=round(1.0 / max(spread, 1e-6), 5))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(directory / "sd", safe_serialization=True)
    return directory / "sd"
