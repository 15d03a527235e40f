"""Sampling speed: genkit's diffusion sampler against diffusers' own pipeline, same run.

    python benchmarks/sample_diffusion.py                       # DDIM, 50 steps, 64 images
    python benchmarks/sample_diffusion.py --scheduler ddpm --steps 100 --repeats 5

Both sides run the same UNet weights (a ``UNet2DModel`` the size of the shipped default
model, unconditional so that ``DDPMPipeline``/``DDIMPipeline`` can drive it), the same
scheduler config, the same number of images and steps, one ``torch.Generator`` per image
on both sides, and both return PIL images. Runs alternate (genkit, diffusers, genkit, ...)
so a load change on a shared machine hits both; the ratio is the median of the per-pair
ratios. Prints images/s for both and the ratio (> 1: genkit is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_pair(args: argparse.Namespace, root: Path) -> tuple[Any, Any]:
    """A genkit generator and a diffusers pipeline over the same saved UNet + scheduler."""
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline
    from genkit_diffusion.generator import DiffusionGenerator

    import genkit

    config = {"image_size": args.image_size, "block_out_channels": tuple(args.channels),
              "norm_num_groups": args.groups, "attention": args.attention, "num_classes": 0}
    generator = genkit.create("diffusion", **config)
    generator.save(root / "model")  # a genkit checkpoint = a diffusers pipeline directory
    generator = genkit.load(root / "model", device="cpu")
    assert isinstance(generator, DiffusionGenerator)
    if args.scheduler == "ddim":
        pipe = DDIMPipeline.from_pretrained(root / "model", use_safetensors=True)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    else:
        pipe = DDPMPipeline.from_pretrained(root / "model", use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return generator, pipe


def time_genkit(generator: Any, args: argparse.Namespace) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    images = generator.sample(args.n, seed=0, batch_size=args.n, scheduler=args.scheduler,
                              steps=args.steps, channels_last=args.channels_last,
                              compile=args.compile)
    assert len(images) == args.n
    return args.n / (time.perf_counter() - start), images


def time_diffusers(pipe: Any, args: argparse.Namespace) -> tuple[float, list[Any]]:
    import torch

    from genkit.seeding import sample_seed

    start = time.perf_counter()
    generators = [torch.Generator().manual_seed(sample_seed(0, i)) for i in range(args.n)]
    images = pipe(batch_size=args.n, generator=generators, num_inference_steps=args.steps,
                  output_type="pil").images
    assert len(images) == args.n
    return args.n / (time.perf_counter() - start), images


def max_pixel_difference(a: list[Any], b: list[Any]) -> float:
    import numpy as np

    return float(max(np.abs(np.asarray(x, float) - np.asarray(y, float)).max()
                     for x, y in zip(a, b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", choices=("ddim", "ddpm"), default="ddim")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("-n", type=int, default=64, help="images per run (one batch)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 32])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--attention", action="store_true")
    parser.add_argument("--channels-last", action="store_true", help="genkit: channels-last UNet")
    parser.add_argument("--compile", action="store_true", help="genkit: torch.compile the UNet")
    parser.add_argument("--quick", action="store_true", help="short run (CI smoke)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps, args.n = 2, 10, 16

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        generator, pipe = build_pair(args, Path(tmp))
        time_genkit(generator, args)  # warm-up (and compile, when asked)
        time_diffusers(pipe, args)
        ours, theirs = [], []
        for _ in range(args.repeats):
            rate, our_images = time_genkit(generator, args)
            ours.append(rate)
            rate, their_images = time_diffusers(pipe, args)
            theirs.append(rate)
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"{args.scheduler} {args.steps} steps, {args.n} images/run, {args.threads} thread(s), "
          f"UNet {tuple(args.channels)} at {args.image_size}x{args.image_size}")
    print(f"genkit    {statistics.median(ours):7.2f} images/s  (runs: "
          f"{', '.join(f'{v:.2f}' for v in ours)})")
    print(f"diffusers {statistics.median(theirs):7.2f} images/s  (runs: "
          f"{', '.join(f'{v:.2f}' for v in theirs)})")
    print(f"same images: max pixel difference {max_pixel_difference(our_images, their_images):.0f}"
          "/255")
    print(f"ratio genkit/diffusers: median {statistics.median(ratios):.3f} "
          f"(per pair: {', '.join(f'{r:.3f}' for r in ratios)})")
    tag = f"sample_diffusion_{args.scheduler}{args.steps}" + ("_compile" if args.compile else "")
    print(f"RESULT {tag}_genkit_images_per_s={statistics.median(ours):.3f}")
    print(f"RESULT {tag}_diffusers_images_per_s={statistics.median(theirs):.3f}")
    print(f"RESULT {tag}_ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
