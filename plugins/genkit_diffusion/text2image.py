"""Text-to-image fine-tuning: a text-conditioned UNet trained on captioned images.

:class:`TextToImage` is a mixin of ``DiffusionGenerator``, used when ``base`` is a
text-to-image pipeline (``UNet2DConditionModel`` + ``AutoencoderKL`` + a CLIP-style text
encoder and tokenizer; see ``genkit_diffusion.pretrained``). Training is the latent
diffusion recipe diffusers' ``train_text_to_image`` scripts use:

- the pipeline's own VAE encodes each image to latents (a draw from its latent
  distribution, times ``scaling_factor``) and its own text encoder encodes the caption;
  both stay frozen;
- a ``caption_dropout`` fraction of the captions is replaced by the empty prompt, so the
  model also learns the unconditional prediction that classifier-free guidance needs;
- the UNet regresses the noise (or velocity) at a random timestep, LoRA or whole.

Every random draw of a step comes from ``ctx.generator`` (exact resume). Sampling runs the
pipeline itself, one generator per sample, so sample i depends on (seed, i) and its
prompt only; ``lora_scale`` scales the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from genkit.plugin import ConfigError, DataError, ImageData, StepContext, image_dataset, lora_scaled

HELD_OUT_ROWS = 256  # held-out images a validation pass encodes (enough for a stable mean)


def captions_of(data: Any) -> list[str]:
    """The captions of image data (imagefolder ``metadata.jsonl`` ``text``, or an ``hf:``
    caption column), one per image; the one place captions are read from the data."""
    captions = getattr(data, "captions", None)
    if not isinstance(data, ImageData) or captions is None:
        name = getattr(data, "name", "") or type(data).__name__
        raise DataError(f"text-to-image fine-tuning needs captioned images; {name} has no "
                        "captions: use a folder with metadata.jsonl (file_name + text) or an "
                        "hf: data set with a text column (--set caption_column=NAME)")
    if len(captions) != len(data):
        raise DataError(f"{data.name} has {len(captions)} captions for {len(data)} images")
    return [str(c) for c in captions]


class CaptionedImages(Dataset):
    """Images (genkit's image dataset, lazy or in memory) with their captions' token ids:
    items ``{"image": (3, S, S) in [-1, 1], "input_ids": (L,)}``, gathered a batch at a time."""

    batched = True

    def __init__(self, images: Any, input_ids: torch.Tensor) -> None:
        self.images, self.input_ids = images, input_ids  # (N, L)
        self.default_workers = getattr(images, "default_workers", 0)

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        batch = dict(self.images.__getitems__(list(indices)))
        batch["input_ids"] = self.input_ids[torch.as_tensor(list(indices), dtype=torch.long)]
        return batch

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.images[index], "input_ids": self.input_ids[index]}


class TextToImage:
    """Mixin of ``DiffusionGenerator`` for text-to-image bases (see the module docstring)."""

    config: Any
    unet: Any
    noise_scheduler: Any
    pipe: Any
    device: torch.device

    def _tokens(self, captions: list[str]) -> torch.Tensor:
        """Token ids, padded to the tokenizer's length as the pipeline pads prompts: (N, L)."""
        tokenizer = self.pipe.tokenizer
        return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids

    def _text_dataset(self, data: Any) -> CaptionedImages:
        captions = captions_of(data)
        images = image_dataset(data, self.config.image_size, 3, 0, "diffusion")
        return CaptionedImages(images, self._tokens(captions))

    def _encode(self, image: torch.Tensor, input_ids: torch.Tensor,
                gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents of images in [-1, 1] and the text encoder's states of the token ids."""
        vae, encoder = self.pipe.vae, self.pipe.text_encoder
        with torch.no_grad():
            dist = vae.encode(image.to(vae.dtype)).latent_dist
            latents = dist.sample(generator=gen) if gen is not None else dist.mean
            shift = getattr(vae.config, "shift_factor", None) or 0.0
            latents = (latents - shift) * vae.config.scaling_factor  # (B, 4, s, s)
            states = encoder(input_ids.to(encoder.device))[0]  # (B, L, D)
        return latents, states

    def _text_step(self, batch: dict[str, torch.Tensor], ctx: StepContext) -> dict[str, Any]:
        """The denoising loss of a batch; captions dropped to "" at ``caption_dropout``."""
        gen = ctx.generator
        ids = batch["input_ids"]  # (B, L)
        drop = torch.rand(ids.shape[0], generator=gen, device=gen.device).to(ids.device)
        empty = self._tokens([""]).to(ids.device)  # (1, L)
        ids = torch.where((drop < self.config.caption_dropout)[:, None], empty, ids)
        latents, states = self._encode(batch["image"], ids, gen)
        noise = torch.randn(latents.shape, generator=gen, device=gen.device).to(latents)
        t = torch.randint(0, self.config.num_train_timesteps, (latents.shape[0],),
                          generator=gen, device=gen.device).to(latents.device)  # (B,)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        pred = ctx.models["unet"](noisy, t, encoder_hidden_states=states).sample
        return {"loss": F.mse_loss(pred.float(), self._target(latents, noise, t).float())}

    @torch.inference_mode()
    def _text_evaluate(self, data: Any) -> dict[str, float]:
        """Held-out loss at fixed timesteps and noise, with the real captions."""
        dataset = self._text_dataset(data)
        batch = dataset.__getitems__(list(range(min(HELD_OUT_ROWS, len(dataset)))))
        gen = torch.Generator(device="cpu").manual_seed(0)
        image = batch["image"].to(self.device)
        latents, states = self._encode(image, batch["input_ids"], None)
        losses = []
        for frac in (0.1, 0.3, 0.5, 0.7, 0.9):
            t = torch.full((len(latents),), int(frac * (self.config.num_train_timesteps - 1)),
                           device=self.device)
            noise = torch.randn(latents.shape, generator=gen).to(latents)
            pred = self.unet(self.noise_scheduler.add_noise(latents, noise, t), t,
                             encoder_hidden_states=states).sample
            losses.append(F.mse_loss(pred.float(), self._target(latents, noise, t).float()).item())
        return {"val_loss": float(np.mean(losses))}

    def _text_generate(self, seeds: list[int], conditions: list[dict[str, Any]],
                       options: Any) -> list[Any]:
        """One batch through the pipeline itself (its scheduler swapped for this call)."""
        from genkit_diffusion.generator import DEFAULT_STEPS
        from genkit_diffusion.pipelines import run_pipeline

        if options.trajectory or options.channels_last or options.compile:
            raise ConfigError("trajectory, channels_last and compile work with genkit's own "
                              "UNet sampler; drop them for a text-to-image model")
        if any((c or {}).get("label") is not None for c in conditions):
            raise ConfigError("a text-to-image model takes --prompt, not --label")
        with lora_scaled(self.unet if self.config.lora_rank else None, options.lora_scale):
            return run_pipeline(self.pipe, seeds, conditions, self.device, str(self.config.base),
                                scheduler=options.scheduler,
                                steps=options.steps or DEFAULT_STEPS[options.scheduler],
                                guidance_scale=options.guidance_scale,
                                negative_prompt=options.negative_prompt, eta=options.eta)
