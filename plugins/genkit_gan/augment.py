"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): random, differentiable transforms applied to *every* image the discriminator
sees, real and generated alike, in both the D step and the G step.

Why: on a small data set (a few thousand images) the discriminator memorises the
training images, its verdicts stop carrying information, and the generator degrades or
collapses. Augmenting only the reals would teach G to produce augmented images;
augmenting both with the *same distribution* of transforms (independent draws) keeps
the optimum at the data distribution, and because the transforms are differentiable,
G's gradient flows through them.

Transforms (the paper's policy ``"color,translation,cutout"``), per image:

- ``color``: brightness ``x + (u - 0.5)``, saturation ``(x - mean_c) * 2u + mean_c``
  (a no-op on grey images), contrast ``(x - mean) * (u + 0.5) + mean``, ``u ~ U(0, 1)``.
- ``translation``: an integer shift of up to ``translation_ratio`` of the side (1/8) in
  each direction; uncovered pixels take ``fill`` (0, mid-grey in [-1, 1], as the paper).
- ``cutout``: a square of ``cutout_ratio`` of the side (1/2) at a random place set to
  ``fill``.

All randomness comes from the ``torch.Generator`` passed in (draws are made on the
generator's device and moved to the images'), so a run resumed at step t with the
step's seed draws the same augmentations as the uninterrupted run. Use a separate draw
per call (real and fake batches get independent transforms from one distribution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TRANSFORMS = ("color", "translation", "cutout")
DEFAULT_POLICY = "color,translation,cutout"


def parse_policy(policy: str | None) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> its transforms in order; ``""``/``None``/
    ``"none"`` -> ``()``; unknown names -> one-line ``ValueError``."""
    if not policy or policy.strip().lower() == "none":
        return ()
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [p for p in names if p not in TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown DiffAugment transform(s) {', '.join(map(repr, unknown))}; "
                         f"use a comma-separated subset of {', '.join(TRANSFORMS)} "
                         "(or 'none')")
    return names


def _uniform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(B, 1, 1, 1)`` uniforms from ``generator``, on x's device and dtype."""
    u = torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=generator.device)
    return u.to(x.device, x.dtype)


def _randint(low: int, high: int, n: int, generator: torch.Generator,
             device: torch.device) -> torch.Tensor:
    """``(n,)`` integers in [low, high) from ``generator``, on ``device``."""
    return torch.randint(low, high, (n,), generator=generator,
                         device=generator.device).to(device)


def rand_brightness(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x + (_uniform(x, generator) - 0.5)


def rand_saturation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x, generator) * 2) + mean


def rand_contrast(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, generator) + 0.5) + mean


def rand_translation(x: torch.Tensor, generator: torch.Generator, ratio: float = 0.125,
                     fill: float = 0.0) -> torch.Tensor:
    """Shift each image by integers in [-s, s] (s = round(side * ratio)) along each axis."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = _randint(-sh, sh + 1, b, generator, x.device)  # (B,)
    tx = _randint(-sw, sw + 1, b, generator, x.device)  # (B,)
    padded = F.pad(x, (sw, sw, sh, sh), value=fill)  # (B, C, H+2sh, W+2sw)
    rows = torch.arange(h, device=x.device)[None, :] + sh - ty[:, None]  # (B, H)
    cols = torch.arange(w, device=x.device)[None, :] + sw - tx[:, None]  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B,H,W,C)
    return out.permute(0, 3, 1, 2).contiguous()


def rand_cutout(x: torch.Tensor, generator: torch.Generator, ratio: float = 0.5,
                fill: float = 0.0) -> torch.Tensor:
    """Set a square of side round(side * ratio), centred at a random pixel, to ``fill``."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = _randint(0, h + (1 - ch % 2), b, generator, x.device)  # (B,) centres
    cx = _randint(0, w + (1 - cw % 2), b, generator, x.device)
    ys = torch.arange(h, device=x.device)[None, :]  # (1, H)
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= (cy - ch // 2)[:, None]) & (ys < (cy - ch // 2 + ch)[:, None])  # (B, H)
    in_x = (xs >= (cx - cw // 2)[:, None]) & (xs < (cx - cw // 2 + cw)[:, None])  # (B, W)
    keep = ~(in_y[:, :, None] & in_x[:, None, :])  # (B, H, W)
    keep = keep[:, None].to(x.dtype)  # (B, 1, H, W)
    return x * keep + fill * (1 - keep)


def diff_augment(x: torch.Tensor, generator: torch.Generator,
                 policy: str | tuple[str, ...] = DEFAULT_POLICY,
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.5,
                 fill: float = 0.0) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` augmented by ``policy`` (see the module docstring), with
    every random draw from ``generator``. Differentiable in ``x``. An empty policy
    returns ``x`` itself."""
    names = parse_policy(policy) if isinstance(policy, str) else tuple(policy)
    for name in names:
        if name == "color":
            x = rand_brightness(x, generator)
            x = rand_saturation(x, generator)
            x = rand_contrast(x, generator)
        elif name == "translation":
            x = rand_translation(x, generator, translation_ratio, fill)
        elif name == "cutout":
            x = rand_cutout(x, generator, cutout_ratio, fill)
        else:
            raise ValueError(f"unknown DiffAugment transform {name!r}; use "
                             f"{', '.join(TRANSFORMS)}")
    return x


class DiffAugment(torch.nn.Module):
    """:func:`diff_augment` as a module holding the policy: ``aug(x, generator)``."""

    def __init__(self, policy: str = DEFAULT_POLICY, translation_ratio: float = 0.125,
                 cutout_ratio: float = 0.5, fill: float = 0.0) -> None:
        super().__init__()
        self.policy = parse_policy(policy)
        self.translation_ratio, self.cutout_ratio, self.fill = (translation_ratio,
                                                                cutout_ratio, fill)

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return diff_augment(x, generator, self.policy, self.translation_ratio,
                            self.cutout_ratio, self.fill)

    def extra_repr(self) -> str:
        return f"policy={','.join(self.policy) or 'none'}"
