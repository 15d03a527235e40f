"""Quality of the shipped default models: ``genkit eval`` of each, beside real data and a baseline.

Image models (diffusion, gan, vae on digits): Fréchet distance on the features of a small
classifier trained on digits, for n samples, for n real train images (the floor) and for n
uniform-noise images (the baseline), plus precision/recall/density and class coverage.
Text (gpt on pydoc): held-out bits per character beside a character unigram model.
The shipped checkpoints are read, never rewritten (``record=False``).

    python benchmarks/eval_quality.py            # n=500, 3 draws for the real and noise rows
    python benchmarks/eval_quality.py --quick    # n=200, 1 draw
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plugins", default="diffusion,gan,vae,gpt")
    p.add_argument("-n", type=int, default=500, help="samples per image evaluation")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="n=200, one draw")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    import genkit
    from genkit.discovery.registry import get_registry

    torch.set_num_threads(args.threads)
    n, draws = (200, 1) if args.quick else (args.n, args.draws)
    for name in [p.strip() for p in args.plugins.split(",") if p.strip()]:
        try:
            path = get_registry().generator(name).default_checkpoint_path()
        except genkit.PluginError as exc:
            print(f"{name}: not installed ({exc})")
            continue
        if not path or not (Path(path) / "genkit.json").is_file():
            print(f"{name}: no shipped default checkpoint yet; skipped")
            continue
        start = time.perf_counter()
        result = genkit.evaluate(path, n=n, draws=draws, device=args.device, record=False)
        print(result.report())
        print(f"({time.perf_counter() - start:.1f} s)\n")
        rows = result.rows
        if result.modality == "text":
            print(f"RESULT eval_{name}_bpc={rows['model']['val_bpc']:.4f} bits/char")
            print(f"RESULT eval_{name}_unigram_bpc={rows['unigram']['val_bpc']:.4f} bits/char")
            continue
        for row in ("model", "real", "noise"):
            print(f"RESULT eval_{name}_fd_{row}={rows[row].fd:.3f} FD at n={n}")
        print(f"RESULT eval_{name}_precision={rows['model'].precision:.3f}")
        print(f"RESULT eval_{name}_recall={rows['model'].recall:.3f}")
        coverage = (result.coverage or {}).get("model")
        if coverage:
            print(f"RESULT eval_{name}_classes={coverage.classes_present} "
                  f"of {coverage.num_classes}")


if __name__ == "__main__":
    main()
