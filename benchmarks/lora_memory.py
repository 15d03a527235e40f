"""LoRA against full fine-tuning: trainable parameters, peak memory, speed, checkpoint size.

Two models, each fine-tuned twice under genkit's engine with the same data, batch and
context, once whole (``lora_rank=0``) and once with a rank-8 LoRA adapter:

- **gpt**: a GPT-2-small-shaped causal LM (``GPT2Config()``: 124 M parameters, random
  weights, a character tokenizer), saved locally first so the run is offline; trained on
  the built-in pydoc text.
- **unet**: the UNet of the small text-to-image pipeline the tests build
  (``genkit_diffusion.testing.tiny_text_to_image``), trained on captioned 8x8 images.

Each side runs in its own process, so its peak RSS (``ru_maxrss``) is its own. Steps/s
leave out the first step (allocation, warm-up). Goals (issue 15): LoRA trains <= 1% of
gpt's parameters, with peak RSS <= 0.6x and steps/s >= 1.2x full fine-tuning; the UNet
adapter is <= 5% of the UNet's bytes.

    python benchmarks/lora_memory.py            # ~2 minutes on one core
    python benchmarks/lora_memory.py --quick    # fewer steps
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIDES = ("full", "lora")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6, help="gpt optimizer steps per side")
    p.add_argument("--unet-steps", type=int, default=30, help="UNet optimizer steps per side")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--context", type=int, default=64, help="gpt tokens per training window")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--unet-rank", type=int, help="the UNet adapter's rank (default: --rank)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", choices=["gpt", "unet"], help="measure one model only")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)  # "gpt:full", "unet:lora", ...
    p.add_argument("--dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.steps, args.unet_steps = 3, 10
    args.unet_rank = args.unet_rank or args.rank
    return args


# ------------------------------------------------------------------------ the children
def child(args: argparse.Namespace) -> None:
    """Fine-tune one side and print its figures as one JSON line."""
    import torch

    import genkit
    from genkit.data.sources import pydoc_text
    from genkit.data.types import TextData

    torch.set_num_threads(args.threads)
    model, side = args.child.split(":")
    work = Path(args.dir)
    rank = (args.rank if model == "gpt" else args.unet_rank) if side == "lora" else 0
    common = dict(batch_size=args.batch_size, device="cpu", progress=False, log_with="none",
                  log_every=1, ema_decay=0.0, lr_schedule="constant")
    if model == "gpt":
        g = genkit.create("gpt", base=str(work / "gpt2"), lora_rank=rank,
                          block_size=args.context)
        data, steps = TextData(pydoc_text()[:200_000], name="pydoc"), args.steps
        report = g.train(data, steps=steps, lr=1e-4 if rank == 0 else 1e-3, **common)
        module = g.model
    else:
        g = genkit.create("diffusion", base=str(work / "sd"), lora_rank=rank)
        steps = args.unet_steps
        report = g.train(f"folder:{work / 'captioned'}", steps=steps,
                         lr=1e-4 if rank == 0 else 1e-3, **common)
        module = g.unet
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = [h["time"] for h in report.history]
    per_second = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for p in module.parameters())
    g.save(work / f"{model}-{side}")
    weights = sum(f.stat().st_size for f in (work / f"{model}-{side}").rglob("*.safetensors")
                  if model == "gpt" or side == "lora" or f.parts[-2] == "unet")
    print("CHILD " + json.dumps({"trainable": trainable, "total": total, "peak_mb": peak_mb,
                                 "steps_per_s": per_second, "weights_bytes": weights,
                                 "loss": [report.first_loss, report.final_loss]}))


# ------------------------------------------------------------------------ the parent
def prepare(work: Path) -> None:
    """The GPT-2-small base (random weights, char tokenizer), the test's text-to-image
    pipeline and captioned images, all on local disk."""
    import numpy as np
    import torch
    from genkit_diffusion.testing import tiny_text_to_image
    from genkit_gpt.tokenizer import train_tokenizer
    from PIL import Image
    from transformers import GPT2Config, GPT2LMHeadModel

    from genkit.data.sources import pydoc_text

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config())
    model.save_pretrained(work / "gpt2", safe_serialization=True)
    train_tokenizer(pydoc_text()[:200_000], "char", 0, 1024).save_pretrained(work / "gpt2")
    tiny_text_to_image(work, widths=(16, 32), text_width=16)
    folder = work / "captioned"
    folder.mkdir()
    rows = []
    for i in range(64):
        name = ("red", "green", "blue")[i % 3]
        array = np.zeros((8, 8, 3), np.uint8)
        array[..., i % 3] = 255
        Image.fromarray(array).save(folder / f"{i:02d}.png")
        rows.append(json.dumps({"file_name": f"{i:02d}.png", "text": name}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")


def run_child(args: argparse.Namespace, which: str, work: Path) -> dict:
    command = [sys.executable, __file__, "--child", which, "--dir", str(work),
               "--steps", str(args.steps), "--unet-steps", str(args.unet_steps),
               "--batch-size", str(args.batch_size), "--context", str(args.context),
               "--rank", str(args.rank), "--unet-rank", str(args.unet_rank),
               "--threads", str(args.threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("CHILD ")]
    if done.returncode or not lines:
        sys.exit(f"{which} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("CHILD "):])


def report(name: str, figures: dict[str, dict], goals: dict[str, float]) -> None:
    full, lora = figures["full"], figures["lora"]
    fraction = lora["trainable"] / lora["total"]
    rss_ratio = lora["peak_mb"] / full["peak_mb"]
    speedup = lora["steps_per_s"] / full["steps_per_s"] if full["steps_per_s"] else 0.0
    size_ratio = lora["weights_bytes"] / full["weights_bytes"]
    print(f"\n{name}: {full['total'] / 1e6:.2f} M parameters")
    for side in SIDES:
        f = figures[side]
        print(f"  {side:4}  trainable {f['trainable']:>12,}  peak RSS {f['peak_mb']:8.0f} MB  "
              f"{f['steps_per_s']:6.3f} steps/s  weights {f['weights_bytes'] / 1e6:9.3f} MB  "
              f"loss {f['loss'][0]:.3f} -> {f['loss'][1]:.3f}")
    checks = {"trainable_fraction": fraction, "peak_rss_ratio": rss_ratio,
              "speedup": speedup, "weights_ratio": size_ratio}
    for key, value in checks.items():
        goal = goals.get(key)
        verdict = "" if goal is None else (
            "  (goal >= {:g}: {})".format(goal, "met" if value >= goal else "NOT met")
            if key == "speedup" else
            "  (goal <= {:g}: {})".format(goal, "met" if value <= goal else "NOT met"))
        print(f"  {key}: {value:.4f}{verdict}")
    prefix = f"lora_memory_{name}"
    print(f"RESULT {prefix}_trainable_params_lora={lora['trainable']}")
    print(f"RESULT {prefix}_trainable_params_full={full['trainable']}")
    print(f"RESULT {prefix}_trainable_fraction={fraction:.5f}")
    print(f"RESULT {prefix}_peak_rss_mb_full={full['peak_mb']:.0f} MB")
    print(f"RESULT {prefix}_peak_rss_mb_lora={lora['peak_mb']:.0f} MB")
    print(f"RESULT {prefix}_peak_rss_ratio={rss_ratio:.3f}")
    print(f"RESULT {prefix}_steps_per_s_full={full['steps_per_s']:.4f} steps/s")
    print(f"RESULT {prefix}_steps_per_s_lora={lora['steps_per_s']:.4f} steps/s")
    print(f"RESULT {prefix}_speedup={speedup:.3f}")
    print(f"RESULT {prefix}_adapter_mb={lora['weights_bytes'] / 1e6:.4f} MB")
    print(f"RESULT {prefix}_full_weights_mb={full['weights_bytes'] / 1e6:.3f} MB")
    print(f"RESULT {prefix}_adapter_ratio={size_ratio:.5f}")


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="genkit-lora-bench-") as tmp:
        work = Path(tmp)
        prepare(work)
        print(f"batch {args.batch_size}, gpt context {args.context} tokens, rank {args.rank} "
              f"(UNet {args.unet_rank}), "
              f"{args.steps} gpt / {args.unet_steps} UNet steps per side, "
              f"{args.threads} thread(s)")
        for name, goals in (("gpt", {"trainable_fraction": 0.01, "peak_rss_ratio": 0.6,
                                     "speedup": 1.2}),
                            ("unet", {"weights_ratio": 0.05})):
            if args.only not in (None, name):
                continue
            figures = {side: run_child(args, f"{name}:{side}", work) for side in SIDES}
            report(name, figures, goals)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
