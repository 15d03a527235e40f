"""Sampling quality per second: FD against steps for each scheduler on the shipped model.

For each scheduler (DDPM, DDIM, DPM-Solver++ with and without Karras sigmas, its
stochastic form, Euler, UniPC where the plugin offers them) and each step count, it draws n samples from the shipped
class-conditional diffusion model (labels 0-9 in turn, the `genkit eval` protocol), and
prints the Fréchet distance against the held-out digits and the sampling time, beside
DDIM-50 (the reference). The fastest setting whose FD is within the reference's FD plus
a tenth of the real-data floor is what the plugin should use by default. Time is for
100 images alone (the FD is computed apart).

    python benchmarks/sampler_curves.py                 # n=500, the full grid
    python benchmarks/sampler_curves.py --quick         # n=200, fewer points
    python benchmarks/sampler_curves.py --only unipc --only ddim   # some schedulers
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DEFAULT = Path(__file__).resolve().parents[1] / "plugins" / "genkit_diffusion" / "default"

GRID = {
    "ddpm": (25, 50, 100, 250),
    "ddim": (5, 10, 20, 50),
    "dpm++": (5, 8, 10, 15, 20),
    "dpm++karras": (5, 8, 10, 15, 20),
    "euler": (10, 20, 30),
    "unipc": (5, 8, 10, 15),
    "dpm++sde": (5, 8, 10, 15, 20),
}
QUICK = {"ddim": (10, 50), "dpm++": (8, 15), "dpm++karras": (8,), "unipc": (8,)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", action="append", metavar="SCHEDULER",
                   help="measure only these schedulers (repeatable; DDIM-50 is the reference)")
    args = p.parse_args()
    import torch

    import genkit

    torch.set_num_threads(args.threads)
    n = 200 if args.quick else args.n
    grid = QUICK if args.quick else GRID
    if args.only:
        grid = {name: counts for name, counts in grid.items() if name in args.only}
    model = genkit.load(DEFAULT, device="cpu")
    rows = []
    for scheduler, counts in grid.items():
        for steps in counts:
            try:
                model.options({"scheduler": scheduler, "steps": steps})
            except genkit.ConfigError:
                print(f"{scheduler}: not offered by this genkit; skipped")
                break
            start = time.perf_counter()  # sampling time alone, 100 images
            model.sample(100, seed=1, batch_size=100, labels=list(range(10)),
                         scheduler=scheduler, steps=steps)
            seconds = time.perf_counter() - start
            result = genkit.evaluate(model, data="digits", n=n, draws=1, record=False,
                                     scheduler=scheduler, steps=steps, device="cpu")
            rows.append((scheduler, steps, result.rows["model"].fd, result.rows["real"].fd,
                         seconds))
            print(f"{scheduler:>12} {steps:>4} steps: FD {rows[-1][2]:7.2f}  "
                  f"(real {rows[-1][3]:.2f})  {seconds:6.1f} s", flush=True)
            print(f"RESULT sampler_{scheduler}_{steps}_fd={rows[-1][2]:.3f} FD at n={n}")
            print(f"RESULT sampler_{scheduler}_{steps}_s={seconds:.2f} s per 100 images")
    reference = next((r for r in rows if r[0] == "ddim" and r[1] == 50), None)
    if reference is None:
        return
    tolerance = 0.1 * reference[3]  # a tenth of the real floor: well within its spread
    good = [r for r in rows if r[2] <= reference[2] + tolerance]
    best = min(good, key=lambda r: r[4])
    print(f"reference DDIM-50: FD {reference[2]:.2f} in {reference[4]:.1f} s; fastest at "
          f"that FD: {best[0]}-{best[1]} (FD {best[2]:.2f}) in {best[4]:.1f} s = "
          f"{best[4] / reference[4]:.2f}x the time")
    print(f"RESULT sampler_best={best[0]}-{best[1]}")
    print(f"RESULT sampler_best_time_ratio={best[4] / reference[4]:.3f} of DDIM-50's time")


if __name__ == "__main__":
    main()
