"""genkit's diffusion plugin: denoising diffusion on Hugging Face ``diffusers``.

A ``UNet2DModel`` trained with a ``DDPMScheduler`` noise schedule (epsilon or v-prediction,
linear or cosine betas), optionally class-conditional, sampled with any of the DDPM, DDIM,
DPM-Solver++ or Euler schedulers. A checkpoint directory is also a diffusers pipeline
directory, and any local diffusers pipeline directory can be sampled too.

This module stays light (no torch): it only registers the generator's spec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genkit.plugin import hookimpl

__all__ = ["register_generators"]


@hookimpl
def register_generators(register: Callable[..., Any]) -> None:
    """Register the ``diffusion`` generator and its shipped default checkpoint."""
    register(
        "diffusion",
        target="genkit_diffusion.generator:DiffusionGenerator",
        modality="image",
        summary="denoising diffusion (diffusers UNet2DModel; DDPM/DDIM/DPM++/Euler sampling)",
        default_checkpoint="genkit_diffusion:default",
    )
