"""A tiny generator used by the core tests: a denoising MLP on 8x8 digits (trains in ms)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genkit.plugin import (
    Generator,
    TensorDictDataset,
    check,
    hookimpl,
    images_to_tensor,
    sample_generators,
)


@dataclass
class ToyConfig:
    image_size: int = 8
    hidden: int = 64
    noise: float = 0.5
    num_classes: int = 0

    def __post_init__(self) -> None:
        check(self.image_size > 0, "image_size must be positive")
        check(self.hidden > 0, "hidden must be positive")


@dataclass
class ToyOptions:
    steps: int = 4

    def __post_init__(self) -> None:
        check(self.steps > 0, "steps must be at least 1")


class ToyGenerator(Generator):
    Config = ToyConfig
    SampleOptions = ToyOptions
    module_names = ("net",)
    ema_modules = ("net",)
    default_data = "digits"
    train_defaults = {"lr": 3e-3, "batch_size": 32, "steps": 20, "log_every": 5}

    def build(self) -> None:
        d = self.config.image_size ** 2
        self.net = nn.Sequential(nn.Linear(d, self.config.hidden), nn.SiLU(),
                                 nn.Linear(self.config.hidden, d))

    def accepted_conditions(self) -> tuple[str, ...]:
        return ("label",) if self.config.num_classes else ()

    def make_dataset(self, data, split):
        images = images_to_tensor(data, self.config.image_size, 1)
        labels = torch.as_tensor(data.labels if data.labels is not None else [0] * len(images))
        return TensorDictDataset(image=images, label=labels)

    def training_step(self, batch, ctx):
        x = batch["image"].flatten(1)  # (B, D)
        noise = torch.randn(x.shape, generator=ctx.generator, device=x.device)
        pred = ctx.models["net"](x + self.config.noise * noise)
        return {"loss": nn.functional.mse_loss(pred, noise)}

    def generate(self, seeds, conditions, options, stream=None):
        from PIL import Image

        d = self.config.image_size ** 2
        gens = sample_generators(seeds, self.device)
        x = torch.stack([torch.randn(d, generator=g, device=self.device) for g in gens])
        for _ in range(options.steps):
            x = x - self.config.noise * self.net(x) * 0.5
        imgs = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
        s = self.config.image_size
        return [Image.fromarray(img.view(s, s).numpy(), mode="L") for img in imgs]


@hookimpl
def register_generators(register):
    """Module-level hook: lets tests install this module as an entry-point plugin."""
    register("toy", target="toy:ToyGenerator", modality="image", summary="test toy")


class ToyPlugin:
    @hookimpl
    def register_generators(self, register):
        register("toy", target="toy:ToyGenerator", modality="image", summary="test toy")
