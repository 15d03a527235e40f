"""genkit's VAE family: a convolutional variational autoencoder trained on the ELBO.

This module is light on purpose (no torch): it only registers the spec and the
``encode``/``decode`` commands (:mod:`genkit_vae.commands`, click only); the model code
lives in :mod:`genkit_vae.generator` and :mod:`genkit_vae.models` and is imported when a
command needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genkit.plugin import hookimpl


@hookimpl
def register_generators(register: Callable[..., Any]) -> None:
    """Offer the ``vae`` generator and its shipped default checkpoint (trained on digits)."""
    register("vae", target="genkit_vae.generator:VAEGenerator", modality="image",
             summary="convolutional VAE (ELBO, Bernoulli or Gaussian likelihood), "
                     "reconstruct/encode/decode/interpolate, optional class conditioning",
             default_checkpoint="genkit_vae:default")


@hookimpl
def register_commands(cli: Any) -> None:
    """``genkit encode`` / ``genkit decode``: the VAE's latents as ``.npy`` files (the
    commands import torch only when they run)."""
    from genkit_vae.commands import decode, encode

    cli.add_command(encode)
    cli.add_command(decode)
