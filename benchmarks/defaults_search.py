"""Defaults chosen by measurement: each family's default recipe beside one change at a time.

For a wall-clock budget (``train(time=...)``, which sizes the schedule to end on time),
every variant trains from the same seed on the same data, one after another in this
process on one thread, and is scored the same way:

- diffusion: FD (n=500, the plugin's default sampler) of an unconditional model on the
  built-in digits. Variants: min-SNR-gamma weighting off (the default) and at gamma 5,
  epsilon prediction with the linear schedule (diffusers' example), a 4x lower and a 2x
  higher learning rate.
- gpt: held-out bits per character on the built-in pydoc text. Variants: a character
  tokenizer, a 512-token BPE vocabulary, a 3x higher and a 3x lower learning rate.

A default stays only if no single change beats it at this budget; the figures and the
budget go to BENCHMARKS.md (``RESULT defaults_<family>_<variant>``).

    python benchmarks/defaults_search.py                       # both families, 2 min each
    python benchmarks/defaults_search.py --family gpt --budget 60
"""
# run_all: --budget 120
# run_all --quick: --budget 10 --family gpt --only default --only char

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: variant name -> (model config, training options) changed from the family's defaults
VARIANTS: dict[str, dict[str, tuple[dict, dict]]] = {
    "diffusion": {
        "default": ({}, {}),
        "snr_gamma_off": ({"snr_gamma": None}, {}),
        "snr_gamma5": ({"snr_gamma": 5.0}, {}),
        "epsilon_linear": ({"prediction_type": "epsilon", "beta_schedule": "linear"}, {}),
        "lr5e-4": ({}, {"lr": 5e-4}),
        "lr4e-3": ({}, {"lr": 4e-3}),
    },
    "gpt": {
        "default": ({}, {}),
        "char": ({"tokenizer": "char"}, {}),
        "vocab512": ({"vocab_size": 512}, {}),
        "lr3e-3": ({}, {"lr": 3e-3}),
        "lr3e-4": ({}, {"lr": 3e-4}),
    },
}
LOWER_IS_BETTER = {"diffusion": "FD at n=500", "gpt": "bits/char"}


def score(family: str, config: dict, options: dict, budget: float, out: Path) -> float:
    import genkit

    if family == "diffusion":
        g = genkit.create("diffusion", num_classes=0, **config)
        g.train("digits", time=budget, device="cpu", progress=False, log_with="none",
                out=out, **options)
        result = genkit.evaluate(out / "model", data="digits", n=500, draws=1, record=False,
                                 device="cpu")
        return result.rows["model"].fd
    g = genkit.create("gpt", **config)
    report = g.train("pydoc", time=budget, device="cpu", progress=False, log_with="none",
                     out=out, **options)
    return report.eval["val_bpc"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=120.0, help="seconds of training a variant")
    p.add_argument("--family", action="append", choices=sorted(VARIANTS))
    p.add_argument("--only", action="append", metavar="VARIANT", help="only these variants")
    p.add_argument("--quick", action="store_true", help="a 10-second smoke run")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    budget = min(args.budget, 10.0) if args.quick else args.budget
    for family in args.family or sorted(VARIANTS):
        figures = {}
        for name, (config, options) in VARIANTS[family].items():
            if args.only and name not in args.only:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                figures[name] = score(family, config, options, budget, Path(tmp))
            print(f"{family} {name:>15}: {figures[name]:.3f} {LOWER_IS_BETTER[family]} "
                  f"after {budget:g} s", flush=True)
            print(f"RESULT defaults_{family}_{name}={figures[name]:.4f} "
                  f"{LOWER_IS_BETTER[family]} after {budget:g} s")
        if "default" in figures and len(figures) > 1:
            best = min(figures, key=figures.get)
            verdict = "the default is best" if best == "default" else f"{best} beats the default"
            print(f"{family}: {verdict} at {budget:g} s")
            print(f"RESULT defaults_{family}_best={best}")


if __name__ == "__main__":
    main()
