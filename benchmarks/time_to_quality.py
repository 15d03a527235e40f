"""Quality per minute: genkit's defaults against a plain-library recipe, same budget.

Both sides train the same model shape for the same wall-clock budget on the same machine
(one after the other, in this process's children), then are scored the same way:

- text: held-out bits per character on a text file (the built-in pydoc corpus by
  default). genkit: ``genkit.create("gpt")`` with its defaults and ``train(time=...)``.
  Baseline: a plain ``transformers`` loop over a ``GPT2LMHeadModel`` of the same shape
  (byte-level, GPT2Config's own dropouts) with the standard recipe: AdamW (lr 6e-4,
  betas 0.9/0.95, weight decay 0.1), linear warm-up, cosine decay, batch 32 x 128.
- images: Fréchet distance (``genkit eval``, n=500, DDIM-50 for both) on the built-in
  digits. genkit: ``genkit.create("diffusion", num_classes=0)`` with its defaults and
  ``train(time=...)``. Baseline: a plain ``diffusers`` loop in the style of diffusers'
  unconditional training example: the same ``UNet2DModel``, ``DDPMScheduler`` (1000
  linear betas, epsilon), AdamW (lr 1e-4, betas 0.95/0.999, weight decay 1e-6), cosine
  schedule with 500 warm-up steps, EMA (0.9999, warm-up power 3/4), batch 16.

Prints each figure and the ratio genkit / baseline (goals: bits/char <= 0.90x, FD <= 0.7x
at a 10-minute budget on a 2-core CPU).

    python benchmarks/time_to_quality.py                    # 10 minutes a side
    python benchmarks/time_to_quality.py --budget 120 --only text
"""
# run_all: --budget 600
# run_all --quick: --budget 20

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def budgeted(step: Callable[[], None], budget: float, schedule_for: Callable[[int], Any],
             probe: int = 20) -> int:
    """The plain side's time budget, as a careful script would do it: ``probe`` steps at
    the warm-up's base rate measure the speed, the schedule is sized from it, and the loop
    stops at the planned steps or the budget. Returns the steps taken."""
    start = time.perf_counter()
    for _ in range(probe):
        step()
    total = max(probe + 10, int(probe / (time.perf_counter() - start) * budget))
    schedule = schedule_for(total)
    for _ in range(probe):
        schedule.step()
    done = probe
    while done < total and time.perf_counter() - start < budget:
        step()
        schedule.step()
        done += 1
    return done


# ------------------------------------------------------------------------------ text
def genkit_text(budget: float, source: str, out: Path) -> dict:
    import genkit

    g = genkit.create("gpt")
    report = g.train(source, time=budget, device="cpu", progress=False, log_with="none",
                     out=out / "gpt")
    return {"bpc": report.eval["val_bpc"], "steps": report.steps,
            "params": g.num_parameters(), "shape": [g.config.n_layer, g.config.n_embd,
                                                    g.config.block_size]}


def baseline_text(budget: float, source: str, shape: list[int]) -> dict:
    """A plain transformers loop, byte-level, sized to the budget by a measured rate."""
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel, get_cosine_schedule_with_warmup

    import genkit

    n_layer, n_embd, block = shape
    train = genkit.load_data(source, "train").text.encode("utf-8")
    test_text = genkit.load_data(source, "test").text
    data = torch.tensor(list(train), dtype=torch.long)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=block, n_embd=n_embd,
                                       n_layer=n_layer, n_head=4))
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    batch = 32

    def step() -> None:
        idx = torch.randint(len(data) - block - 1, (batch,))
        x = torch.stack([data[i:i + block + 1] for i in idx.tolist()])
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    done = budgeted(step, budget, lambda total: get_cosine_schedule_with_warmup(
        opt, min(100, total // 10), total))
    model.eval()
    ids = torch.tensor(list(test_text.encode("utf-8")), dtype=torch.long)
    nats = 0.0
    with torch.inference_mode():
        for i in range(0, len(ids) - 1, block):
            x = ids[i:i + block + 1]
            logits = model(input_ids=x[None, :-1]).logits[0]
            nats += float(F.cross_entropy(logits.float(), x[1:], reduction="sum"))
    return {"bpc": nats / len(test_text) / math.log(2), "steps": done}


# ---------------------------------------------------------------------------- images
def genkit_images(budget: float, out: Path) -> dict:
    import genkit

    g = genkit.create("diffusion", num_classes=0)
    report = g.train("digits", time=budget, device="cpu", progress=False, log_with="none",
                     out=out / "diffusion")
    fd = genkit.evaluate(out / "diffusion", data="digits", n=500, draws=1, record=False,
                         device="cpu", scheduler="ddim", steps=50).rows["model"].fd
    return {"fd": fd, "steps": report.steps, "unet": {k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in _unet_kwargs(g).items()}}


def _unet_kwargs(g) -> dict:
    from genkit_diffusion.generator import unet_kwargs

    return unet_kwargs(g.config)


def baseline_images(budget: float, unet: dict, out: Path) -> dict:
    """diffusers' unconditional training example, condensed (no accelerate wrapper)."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    import genkit

    torch.manual_seed(0)
    data = genkit.load_data("digits", "train")
    from genkit.data.datasets import images_to_tensor

    images = images_to_tensor(data, unet["sample_size"], unet["in_channels"])
    model = UNet2DModel(**unet)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999),
                            weight_decay=1e-6, eps=1e-8)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0,
                   power=3 / 4)
    batch = 16

    def step() -> None:
        x0 = images[torch.randint(len(images), (batch,))]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,))
        pred = model(noise_scheduler.add_noise(x0, noise, t), t).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    def step_and_average() -> None:
        step()
        ema.step(model.parameters())

    done = budgeted(step_and_average, budget,
                    lambda total: get_cosine_schedule_with_warmup(opt, 500, total))
    ema.copy_to(model.parameters())
    DDPMPipeline(unet=model, scheduler=noise_scheduler).save_pretrained(out / "baseline")
    fd = genkit.evaluate(genkit.load(out / "baseline", device="cpu", plugin="diffusion"),
                         data="digits", n=500, draws=1, record=False, device="cpu",
                         scheduler="ddim", steps=50).rows["model"].fd
    return {"fd": fd, "steps": done}


# ------------------------------------------------------------------------------ main
def run_side(name: str, budget: float, extra: dict) -> dict:
    """One side in a fresh process (one torch thread), so the sides do not share state."""
    cmd = [sys.executable, __file__, "--side", name, "--budget", str(budget),
           "--extra", json.dumps(extra)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def side(name: str, budget: float, extra: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if name == "genkit_text":
            return genkit_text(budget, extra.get("source", "pydoc"), out)
        if name == "baseline_text":
            return baseline_text(budget, extra.get("source", "pydoc"), extra["shape"])
        if name == "genkit_images":
            return genkit_images(budget, out)
        return baseline_images(budget, extra["unet"], out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=600.0, help="seconds of training a side")
    p.add_argument("--text", default="pydoc", help="a text file, or pydoc")
    p.add_argument("--only", choices=["text", "images"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--side")
    p.add_argument("--extra", default="{}")
    args = p.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args.budget, json.loads(args.extra))))
        return
    budget = min(args.budget, 20.0) if args.quick else args.budget
    source = args.text if args.text == "pydoc" else f"text:{os.path.abspath(args.text)}"
    minutes = f"{budget / 60:g} min"
    if args.only in (None, "text"):
        ours = run_side("genkit_text", budget, {"source": source})
        theirs = run_side("baseline_text", budget, {"source": source, "shape": ours["shape"]})
        print(f"text ({source}, {minutes}): genkit {ours['bpc']:.3f} bits/char "
              f"({ours['steps']} steps), transformers loop {theirs['bpc']:.3f} "
              f"({theirs['steps']} steps)")
        print(f"RESULT ttq_text_genkit_bpc={ours['bpc']:.4f} bits/char after {minutes}")
        print(f"RESULT ttq_text_baseline_bpc={theirs['bpc']:.4f} bits/char after {minutes}")
        print(f"RESULT ttq_text_ratio={ours['bpc'] / theirs['bpc']:.3f} (goal <= 0.90)")
    if args.only in (None, "images"):
        ours = run_side("genkit_images", budget, {})
        theirs = run_side("baseline_images", budget, {"unet": ours["unet"]})
        print(f"images (digits, {minutes}): genkit FD {ours['fd']:.2f} ({ours['steps']} steps), "
              f"diffusers loop FD {theirs['fd']:.2f} ({theirs['steps']} steps)")
        print(f"RESULT ttq_images_genkit_fd={ours['fd']:.3f} FD at n=500 after {minutes}")
        print(f"RESULT ttq_images_baseline_fd={theirs['fd']:.3f} FD at n=500 after {minutes}")
        print(f"RESULT ttq_images_ratio={ours['fd'] / theirs['fd']:.3f} (goal <= 0.70)")


if __name__ == "__main__":
    main()
