"""Reproduce the shipped default ``gan`` checkpoint (plugins/genkit_gan/default/).

A class-conditional DCGAN on the built-in ``digits`` (8x8 upscaled to 16x16), trained
through genkit's engine on one CPU thread (a few minutes on an idle core), saved with
fp16 weights::

    python scripts/train_default_gan.py                 # writes plugins/genkit_gan/default
    python scripts/train_default_gan.py --steps 200 --dest runs/gan-try   # a quick try

Sampling it: ``genkit sample --plugin gan -n 16 --out samples/``.

Why this recipe: genkit 0.1.0's conditional GAN (label embedding concatenated to z)
collapsed to one image per class; with the label modulating every GroupNorm instead, and
an R1 penalty keeping D smooth at the data, the conditional GAN reaches about the
real-data floor's FD (BENCHMARKS.md). An interrupted run continues with ``--resume``
(same ``--run-dir``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The recipe issue 16's search found best on digits (FD about the real-data floor at 6,000
# steps, about 3 CPU-minutes): class-conditional through label-modulated GroupNorm in G and a
# projection D, the non-saturating loss with a lazy R1 penalty (gamma 1, every 4 D steps),
# no DiffAugment (it slowed conditional training on digits), one D step per G step.
CONFIG = {"arch": "conv", "image_size": 16, "latent_dim": 64, "base_width": 32,
          "num_classes": 10, "conditioning": "norm", "loss": "nonsaturating",
          "r1_gamma": 1.0, "r1_every": 4}
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "default-gan"),
                        help="training run folder (logs, metrics.jsonl, checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--dest", default=str(ROOT / "plugins" / "genkit_gan" / "default"))
    args = parser.parse_args()

    import torch

    import genkit
    from genkit.store.checkpoint import save_checkpoint

    torch.set_num_threads(args.threads)
    g = genkit.create("gan", **CONFIG)
    report = g.train("digits", steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                     seed=args.seed, device="cpu", ema_decay=0.999, out=args.run_dir,
                     checkpoint_every=500, log_every=250, progress=False, resume=args.resume)
    save_checkpoint(g, Path(args.dest), weights_dtype="float16")
    for weights in Path(args.dest).rglob("*.safetensors"):  # safetensors writes 0600
        weights.chmod(0o644)
    print(json.dumps({"steps": report.steps, "first_loss": report.first_loss,
                      "final_loss": report.final_loss, "seconds": round(report.seconds, 1),
                      "last_metrics": g.training_summary.get("last_metrics"),
                      "eval": report.eval, "dest": args.dest}, indent=2))


if __name__ == "__main__":
    main()
