"""Reproduce the diffusion plugin's shipped default model from scratch.

    python scripts/train_default_diffusion.py            # ~20 min on 1 CPU thread

Trains a small class-conditional UNet (labels 0-9, with 10% label dropout so classifier-
free guidance works) on the built-in ``digits`` data at 16x16 under genkit's engine with a
fixed seed, writes it as an fp16 checkpoint into ``plugins/genkit_diffusion/default/``, and
prints how a classifier trained on the real digits sees 100 of its samples; then records
genkit's sample-quality figures (``genkit eval``, n=300) in the checkpoint's genkit.json.

The run directory (``--run-dir``) keeps training checkpoints: rerunning the command after
an interruption resumes from the last one and ends with the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "plugins" / "genkit_diffusion" / "default"
MAX_BYTES = 3 * 1024 * 1024

#: the default model: 264k parameters, 0.5 MB in fp16
CONFIG = {
    "image_size": 16,
    "channels": 1,
    "block_out_channels": (16, 32, 32),
    "layers_per_block": 1,
    "attention": False,
    "norm_num_groups": 8,
    "num_classes": 10,
    "label_dropout": 0.1,
    "prediction_type": "v_prediction",
    "beta_schedule": "cosine",
    "num_train_timesteps": 1000,
}
TRAIN = {
    "steps": 2000,
    "batch_size": 64,
    "lr": 2e-3,
    "warmup_steps": 100,
    "lr_schedule": "cosine",
    "ema_decay": 0.999,
    "seed": 0,
    "device": "cpu",
    "checkpoint_every": 250,
    "log_every": 50,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="checkpoint to write")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "default-diffusion",
                        help="training run directory (checkpoints, logs; resumable)")
    parser.add_argument("--steps", type=int, default=TRAIN["steps"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    import genkit
    from genkit.store.checkpoint import save_checkpoint, step_checkpoints

    generator = genkit.create("diffusion", **CONFIG)
    start = time.perf_counter()
    report = generator.train("digits", out=str(args.run_dir),
                             resume=bool(step_checkpoints(args.run_dir)),
                             **{**TRAIN, "steps": args.steps})
    print(f"trained {report.steps} steps in {time.perf_counter() - start:.0f} s "
          f"({report.steps_per_second:.2f} steps/s); loss {report.first_loss:.4f} -> "
          f"{report.final_loss:.4f}; held-out {report.eval}")
    save_checkpoint(generator, args.out, weights_dtype="float16")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB)")
    if size > MAX_BYTES:
        raise SystemExit(f"the default checkpoint is {size} bytes, over the {MAX_BYTES} limit")
    report_recognition(args.out)
    record_evaluation(args.out)


def record_evaluation(path: Path, n: int = 300) -> None:
    """Fréchet distance, precision/recall and label agreement of ``n`` samples against the
    held-out digits (genkit.eval), recorded in the checkpoint's genkit.json and card."""
    import genkit

    print(genkit.evaluate(path, n=n, device="cpu").report())


def report_recognition(path: Path, n: int = 100) -> None:
    """How a classifier trained on real digits sees ``n`` samples of the saved model."""
    from genkit_diffusion.digits_check import recognise

    import genkit

    model = genkit.load(path, device="cpu")
    start = time.perf_counter()
    images = model.sample(n, seed=0, scheduler="ddim", steps=50)
    seconds = time.perf_counter() - start
    result = recognise(images, [im.info.get("label") for im in images])
    print(f"{n} samples (DDIM 50) in {seconds:.1f} s: {json.dumps(result.as_dict())}")


if __name__ == "__main__":
    main()
