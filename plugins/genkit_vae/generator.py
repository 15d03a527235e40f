"""The ``vae`` generator: a convolutional variational autoencoder (Kingma & Welling 2014).

Training maximises the ELBO: ``loss = recon + beta_t * KL(q(z|x) || N(0, I))`` per image,
in nats, with z drawn by the reparameterisation trick ``z = mean + exp(logvar / 2) * eps``
from the step's seeded RNG. ``recon`` is ``-log p(x|z)`` summed over pixels:

- ``likelihood="bernoulli"``: pixels rescaled to [0, 1] as (soft) Bernoulli targets of the
  decoder's logits (the usual choice for digits);
- ``likelihood="gaussian"``: N(decoder mean, ``sigma``^2) per pixel in [-1, 1] units.

``beta_t`` grows linearly from 0 to ``beta`` over ``kl_warmup_steps`` (0 = no warm-up).

Beyond ``sample``, the Python API has :meth:`VAEGenerator.encode`, :meth:`~VAEGenerator.decode`,
:meth:`~VAEGenerator.reconstruct` and :meth:`~VAEGenerator.interpolate`; the sampling option
``interpolate=N`` makes :meth:`~VAEGenerator.write_extras` write ``interpolation.png``.
``edit`` reconstructs and inpaints (:mod:`genkit_vae.editing`); ``genkit encode`` and
``genkit decode`` carry latents through ``.npy`` files (:mod:`genkit_vae.commands`).

Checkpoint layout (Hugging Face's ``PyTorchModelHubMixin``)::

    encoder/config.json, encoder/model.safetensors
    decoder/config.json, decoder/model.safetensors

so ``ConvDecoder.from_pretrained("DIR/decoder")`` works without genkit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genkit.plugin import (
    ConfigError,
    Generator,
    HubModules,
    SamplingError,
    StepContext,
    TensorDictDataset,
    check,
    check_label,
    image_dataset,
    pil_to_tensor,
    sample_generators,
    sample_labels,
    save_png,
    strip,
    tensor_to_images,
)
from genkit_vae.editing import VAEEditing
from genkit_vae.elbo import kl_nats, kl_weight, reconstruction_nats
from genkit_vae.models import CONV_SIZES, LIKELIHOODS, ConvDecoder, ConvEncoder
from genkit_vae.presets import resolve as resolve_preset

if TYPE_CHECKING:
    from PIL.Image import Image

STRIP_FILE = "interpolation.png"

ImagesLike = Any  # a PIL image, a list of them, or a tensor (C, S, S) / (N, C, S, S) in [-1, 1]
LabelsLike = Any  # None, an int, a list of ints, or a tensor (N,)


@dataclasses.dataclass
class VAEConfig:
    """Hyper-parameters of the VAE (``genkit.create("vae", **fields)`` or ``--set k=v``)."""

    image_size: int = 16  # 8, 16, 32, ...
    channels: int = 1  # 1 grey, 3 RGB
    size: str | None = None  # shape preset tiny|small|base for the 4 fields below left unset
    latent_dim: int | None = None  # size of z
    base_width: int | None = None  # channels of the first encoder layer; doubles per level
    max_width: int | None = None  # cap of the doubling widths (0: none)
    blocks_per_level: int | None = None  # extra 3x3 convolutions at each resolution
    num_classes: int = 0  # > 0: class-conditional VAE (CVAE)
    likelihood: str = "bernoulli"  # bernoulli | gaussian
    sigma: float = 0.1  # gaussian likelihood: pixel std in [-1, 1] units
    beta: float = 1.0  # weight of the KL term (beta-VAE)
    kl_warmup_steps: int = 0  # beta grows linearly from 0 over these steps

    def __post_init__(self) -> None:
        check(self.likelihood in LIKELIHOODS, f"unknown likelihood {self.likelihood!r}; use "
                                              f"one of {', '.join(LIKELIHOODS)}")
        check(self.channels in (1, 3), f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        check(self.image_size > 0, f"image_size must be positive, got {self.image_size}")
        check(self.image_size in CONV_SIZES,
              f"the vae supports image_size {', '.join(map(str, CONV_SIZES))}; got "
              f"{self.image_size}")
        resolve_preset(self)  # the shape fields left unset, from the size preset
        for key in ("latent_dim", "base_width"):
            check(getattr(self, key) > 0, f"{key} must be positive, got {getattr(self, key)}")
        for key in ("max_width", "blocks_per_level"):
            check(getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        check(self.num_classes >= 0, f"num_classes must be 0 (unconditional) or more, "
                                     f"got {self.num_classes}")
        check(self.sigma > 0, f"sigma must be positive, got {self.sigma}")
        check(self.beta >= 0, f"beta must be >= 0, got {self.beta}")
        check(self.kl_warmup_steps >= 0, f"kl_warmup_steps must be >= 0, got "
                                         f"{self.kl_warmup_steps}")


@dataclasses.dataclass
class VAESampleOptions:
    """Sampling options (CLI: ``--temperature 0.8 --interpolate 8``)."""

    temperature: float = 1.0  # scale of the prior sample z
    interpolate: int = 0  # > 1: write_extras writes an interpolation strip of this many steps

    def __post_init__(self) -> None:
        check(self.temperature > 0, f"temperature must be positive, got {self.temperature}")
        check(self.interpolate == 0 or self.interpolate >= 2,
              f"interpolate is a number of steps (2 or more), or 0 for none; got "
              f"{self.interpolate}")


# --------------------------------------------------------------------------- generator
class VAEGenerator(VAEEditing, HubModules, Generator):
    """A convolutional VAE (see the module docstring for the objective and layout)."""

    Config = VAEConfig
    SampleOptions = VAESampleOptions
    modality = "image"
    conditions = ("label",)
    module_names = ("encoder", "decoder")
    ema_modules = ("encoder", "decoder")
    default_data = "digits"
    train_defaults = {"lr": 1e-3, "batch_size": 64, "steps": 5000, "ema_decay": 0.999}

    encoder: ConvEncoder
    decoder: ConvDecoder

    def accepted_conditions(self) -> tuple[str, ...]:
        return ("label",) if self.config.num_classes > 0 else ()

    def build(self) -> None:
        c = self.config
        arch = {"max_width": c.max_width, "blocks_per_level": c.blocks_per_level}
        self.encoder = ConvEncoder(c.image_size, c.channels, c.base_width, c.latent_dim,
                                   c.num_classes, **arch)
        self.decoder = ConvDecoder(c.latent_dim, c.image_size, c.channels, c.base_width,
                                   c.num_classes, c.likelihood, **arch)

    def make_dataset(self, data: Any, split: str) -> TensorDictDataset:
        c = self.config
        return image_dataset(data, c.image_size, c.channels, c.num_classes, "vae")

    def elbo_terms(self, images: torch.Tensor, labels: torch.Tensor | None,
                   generator: torch.Generator, encoder: Any = None,
                   decoder: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and KL terms per image ``(B,)`` in nats, one z sample each."""
        encoder = self.encoder if encoder is None else encoder
        decoder = self.decoder if decoder is None else decoder
        mean, logvar = encoder(images, labels)  # (B, Z) each
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * eps  # (B, Z): the reparameterisation trick
        output = decoder(z, labels)  # (B, C, S, S)
        recon = reconstruction_nats(output.float(), images.float(), self.config.likelihood,
                                    self.config.sigma)
        return recon, kl_nats(mean.float(), logvar.float())

    def training_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, Any]:
        """The beta-weighted negative ELBO; logs ``recon`` and ``kl`` in nats per image."""
        labels = batch.get("label") if self.config.num_classes else None
        recon, kl = self.elbo_terms(batch["image"], labels, ctx.generator,
                                    ctx.models["encoder"], ctx.models["decoder"])
        beta = kl_weight(self.config.beta, self.config.kl_warmup_steps, ctx.step)
        loss = (recon + beta * kl).mean()
        return {"loss": loss, "recon": recon.mean().detach(), "kl": kl.mean().detach(),
                "beta": beta}

    @torch.no_grad()
    def evaluate(self, data: Any) -> dict[str, float]:
        """Held-out reconstruction and KL terms and the negative ELBO (beta = 1), in nats
        per image, with one seeded z sample per image."""
        c = self.config
        held_out = image_dataset(data, c.image_size, c.channels, c.num_classes, "vae").tensors
        images, labels = held_out["image"], held_out.get("label")
        gen = torch.Generator(device=self.device).manual_seed(0)
        recon, kl = self.elbo_terms(images.to(self.device),
                                    None if labels is None else labels.to(self.device), gen)
        return {"recon": float(recon.mean()), "kl": float(kl.mean()),
                "neg_elbo": float((recon + kl).mean())}

    # ------------------------------------------------------------------------ sampling
    def generate(self, seeds: list[int], conditions: list[dict[str, Any]], options: Any,
                 stream: Callable[[str], None] | None = None) -> list[Any]:
        """One image per seed: z ~ N(0, temperature^2 I) (then a label, for a conditional
        model given none) drawn from ``torch.Generator().manual_seed(seeds[i])``; the image
        is the decoder's mean."""
        gens = sample_generators(seeds, self.device)
        z = torch.stack([torch.randn(self.config.latent_dim, generator=g, device=self.device)
                         for g in gens]) * options.temperature  # (B, Z)
        labels = (sample_labels(conditions, gens, self.config.num_classes, self.device)
                  if self.config.num_classes else None)
        return tensor_to_images(self.decoder.to_image(self.decoder(z, labels)))

    def write_extras(self, options: Any, seed: int, out: Path | None) -> list[Path]:
        """With ``options.interpolate = N``: ``out/interpolation.png``, a strip of N images
        decoded along the line between two latents drawn from ``seed`` (a conditional model
        draws one label from it too and keeps it along the strip)."""
        if not options.interpolate:
            return []
        if out is None:
            raise SamplingError("--interpolate writes DIR/interpolation.png: give --out DIR")
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        ends = torch.randn(2, self.config.latent_dim, generator=gen,
                           device=self.device) * options.temperature  # (2, Z)
        label = None
        if self.config.num_classes:
            label = int(torch.randint(self.config.num_classes, (1,), generator=gen,
                                      device=self.device))
        with self.inference():
            images = self._decode_tensor(lerp(ends[0], ends[1], options.interpolate),
                                         self._labels(label, options.interpolate))
        return [save_png(strip(tensor_to_images(images)), Path(out) / STRIP_FILE)]

    # ------------------------------------------------------------------- Python API
    def encode(self, images: ImagesLike, labels: LabelsLike = None) -> torch.Tensor:
        """Posterior means ``(N, latent_dim)`` of ``images``.

        Args:
            images: a PIL image or a list of them (converted and resized to the model's
                format), or a tensor ``(C, S, S)`` / ``(N, C, S, S)`` in [-1, 1].
            labels: the class of each image (an int for all, a list, or a tensor);
                required by a conditional model, refused by an unconditional one.
        """
        with self.inference():
            x = self._as_tensor(images)
            return self.encoder(x, self._labels(labels, x.shape[0]))[0]

    def decode(self, latents: torch.Tensor, labels: LabelsLike = None,
               as_tensor: bool = False) -> list[Image] | torch.Tensor:
        """Decode latents ``(N, latent_dim)`` (or one ``(latent_dim,)``) into mean images:
        PIL images, or with ``as_tensor`` a tensor ``(N, C, S, S)`` in [-1, 1]."""
        with self.inference():
            z = torch.as_tensor(latents, dtype=torch.float32, device=self.device)
            z = z[None] if z.ndim == 1 else z  # (N, Z)
            if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
                raise ConfigError(f"latents must have shape (N, {self.config.latent_dim}), "
                                  f"got {tuple(z.shape)}")
            return self._output(self._decode_tensor(z, self._labels(labels, z.shape[0])),
                                as_tensor)

    def reconstruct(self, images: ImagesLike, labels: LabelsLike = None,
                    as_tensor: bool = False) -> list[Image] | torch.Tensor:
        """Encode then decode ``images`` (see :meth:`encode` for the accepted forms) through
        the posterior means; returns PIL images or, with ``as_tensor``, ``(N, C, S, S)``."""
        with self.inference():
            x = self._as_tensor(images)
            y = self._labels(labels, x.shape[0])
            return self._output(self._decode_tensor(self.encoder(x, y)[0], y), as_tensor)

    def interpolate(self, a: ImagesLike | torch.Tensor, b: ImagesLike | torch.Tensor,
                    steps: int = 8, label: int | None = None,
                    as_tensor: bool = False) -> list[Image] | torch.Tensor:
        """``steps`` images decoded along the straight line from ``a`` to ``b`` (both ends
        included) in latent space.

        Args:
            a, b: images (one PIL image or a ``(C, S, S)`` tensor, encoded to their posterior
                mean) or latent vectors (a ``(latent_dim,)`` tensor, used as they are).
            steps: number of images, at least 2.
            label: the class used along the strip (conditional models).
            as_tensor: return ``(steps, C, S, S)`` in [-1, 1] instead of PIL images.
        """
        if steps < 2:
            raise ConfigError(f"interpolate needs steps >= 2, got {steps}")
        with self.inference():
            y = self._labels(label, 1)
            ends = [self._latent(end, y) for end in (a, b)]
            line = lerp(ends[0], ends[1], steps)  # (steps, Z)
            return self._output(self._decode_tensor(line, self._labels(label, steps)),
                                as_tensor)

    # ------------------------------------------------------------------------ helpers
    def _decode_tensor(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.decoder.to_image(self.decoder(z, labels))  # (N, C, S, S)

    def _latent(self, end: Any, labels: torch.Tensor | None) -> torch.Tensor:
        """A latent ``(Z,)``: a latent tensor as it is, an image encoded to its mean."""
        if isinstance(end, torch.Tensor) and end.ndim == 1:
            if end.shape[0] != self.config.latent_dim:
                raise ConfigError(f"a latent must have {self.config.latent_dim} values, got "
                                  f"{end.shape[0]}")
            return end.to(self.device, torch.float32)
        x = self._as_tensor(end)
        if x.shape[0] != 1:
            raise ConfigError("interpolate takes one image (or latent) at each end")
        return self.encoder(x, labels)[0][0]

    def _as_tensor(self, images: ImagesLike) -> torch.Tensor:
        """Accepted image forms → ``(N, C, S, S)`` in [-1, 1] on the device."""
        c = self.config
        if isinstance(images, torch.Tensor):
            x = images[None] if images.ndim == 3 else images
            if x.ndim != 4 or tuple(x.shape[1:]) != (c.channels, c.image_size, c.image_size):
                raise ConfigError(f"image tensors must have shape (N, {c.channels}, "
                                  f"{c.image_size}, {c.image_size}) with values in [-1, 1]; "
                                  f"got {tuple(images.shape)}")
            return x.to(self.device, torch.float32)
        items = [images] if hasattr(images, "convert") else list(images)
        if not items or not all(hasattr(im, "convert") for im in items):
            raise ConfigError("images must be PIL images or a tensor (N, C, S, S) in [-1, 1]")
        return pil_to_tensor(items, c.image_size, c.channels).to(self.device)

    def _labels(self, labels: LabelsLike, n: int) -> torch.Tensor | None:
        """Labels ``(n,)`` for a conditional model (None for an unconditional one)."""
        k = self.config.num_classes
        if not k:
            if labels is not None:
                raise ConfigError("this vae is unconditional: drop the labels (train with "
                                  "num_classes > 0 for a conditional model)")
            return None
        if labels is None:
            raise ConfigError(f"this vae is class-conditional: pass labels (0..{k - 1})")
        y = torch.as_tensor(labels, dtype=torch.long, device=self.device).reshape(-1)
        y = y.expand(n) if y.numel() == 1 else y
        if y.numel() != n:
            raise ConfigError(f"labels must be one value or {n}, got {labels!r}")
        for label in y.tolist():
            check_label(label, k)
        return y

    @staticmethod
    def _output(images: torch.Tensor, as_tensor: bool) -> list[Image] | torch.Tensor:
        return images.clone() if as_tensor else tensor_to_images(images)


def lerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` points from ``a`` to ``b`` (both included): ``(steps, Z)``."""
    t = torch.linspace(0, 1, steps, device=a.device, dtype=a.dtype)[:, None]  # (steps, 1)
    return (1 - t) * a[None] + t * b[None]
