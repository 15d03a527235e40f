"""GPU check: train and sample every built-in plugin on CUDA in bf16 and fp32, through genkit.

For each of diffusion, gan, vae and gpt (tiny configs), and each precision, it trains a
few steps with ``precision="bf16"`` / ``"no"`` (accelerate mixed precision), then samples
twice with the same seed (under ``torch.autocast(bfloat16)`` for bf16) and checks that

- the training loss and every weight are finite,
- the two samplings are identical (a fixed seed gives the same samples),
- images are not blank (a NaN turned into uint8 gives a constant image) and texts not empty,

then prints training steps/s and samples/s for bf16 beside fp32 (after an untimed warm-up
run of each plugin), and the model FLOPs utilisation (MFU) of the UNet and GPT training
steps: FLOPs of one step counted by ``torch.utils.flop_counter`` x steps/s over the GPU's
peak bf16 dense FLOP/s (known GPUs, or ``--peak-tflops``). Exit status 0 when every
check passes, 1 when one fails. Without a CUDA GPU it prints "no CUDA GPU: skipped" and
exits 0.

    python scripts/gpu_check.py                 # every plugin, 30 steps
    python scripts/gpu_check.py --plugins gpt --steps 100
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from typing import Any

PLUGINS: dict[str, dict[str, Any]] = {
    "diffusion": {"config": {"image_size": 16, "block_out_channels": (32, 64, 64)},
                  "data": "digits", "batch_size": 64, "n": 64,
                  "options": {"scheduler": "ddim", "steps": 20}},
    "gan": {"config": {"image_size": 16, "base_width": 32}, "data": "digits",
            "batch_size": 64, "n": 256, "options": {}},
    "vae": {"config": {"image_size": 16, "base_width": 32}, "data": "digits",
            "batch_size": 64, "n": 256, "options": {}},
    "gpt": {"config": {"tokenizer": "char", "n_layer": 2, "n_head": 2, "n_embd": 64,
                       "block_size": 64},
            "data": "pydoc", "batch_size": 32, "n": 16,
            "options": {"max_new_tokens": 64, "prompt": "The "}},
}
PRECISIONS = ("bf16", "no")  # "no": fp32
MFU_PLUGINS = ("diffusion", "gpt")
#: dense bf16 tensor-core peak, TFLOP/s, by a fragment of the device name
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10G": 125.0, "4090": 165.0, "3090": 71.0, "V100": 125.0, "T4": 65.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plugins", default=",".join(PLUGINS), help="comma list of plugins")
    p.add_argument("--steps", type=int, default=30, help="training steps per run")
    p.add_argument("--device", default="cuda",
                   help="cuda or cuda:N; cpu runs the same checks on the CPU (to test the script)")
    p.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    p.add_argument("--peak-tflops", type=float, help="the GPU's peak bf16 TFLOP/s (for MFU)")
    return p.parse_args(argv)


def sample_key(samples: list[Any]) -> list[Any]:
    """Something comparable for equality: image bytes or the strings themselves."""
    return [s if isinstance(s, str) else s.tobytes() for s in samples]


def not_blank(samples: list[Any]) -> bool:
    import numpy as np

    if isinstance(samples[0], str):
        return all(len(s) > 0 for s in samples)
    return all(float(np.asarray(s, dtype=np.float32).std()) > 0 for s in samples)


def weights_finite(generator: Any) -> bool:
    return all(bool(p.detach().isfinite().all()) for m in generator.modules().values()
               for p in m.parameters())


def check_one(name: str, precision: str, steps: int, device: str) -> dict[str, Any]:
    """Train ``name`` for ``steps`` steps at ``precision``, sample twice, check, time."""
    import torch

    import genkit

    spec = PLUGINS[name]
    torch.manual_seed(0)
    g = genkit.create(name, **spec["config"])
    report = g.train(spec["data"], steps=steps, batch_size=spec["batch_size"], device=device,
                     precision=precision, seed=0, progress=False, log_with="none")
    kind = torch.device(device).type
    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
    timings, draws = [], []
    for _ in range(2):
        autocast = (torch.autocast(device_type=kind, dtype=torch.bfloat16)
                    if precision == "bf16" else contextlib.nullcontext())
        sync()
        start = time.perf_counter()
        with autocast:
            draws.append(g.sample(spec["n"], seed=0, **spec["options"]))
        sync()
        timings.append(time.perf_counter() - start)
    loss = report.final_loss
    return {
        "plugin": name, "precision": "bf16" if precision == "bf16" else "fp32",
        "train_steps_per_s": round(report.steps_per_second, 2),
        "samples_per_s": round(spec["n"] / timings[1], 1),  # the second, warm, run
        "final_loss": loss,
        "finite": loss is not None and math.isfinite(loss) and weights_finite(g),
        "deterministic": sample_key(draws[0]) == sample_key(draws[1]),
        "not_blank": not_blank(draws[0]),
    }


def step_flops(name: str, device: str) -> float:
    """FLOPs of one training step (forward and backward) of plugin ``name``'s model at
    its check config and batch size, counted by torch's FlopCounterMode."""
    from types import SimpleNamespace

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import genkit

    spec = PLUGINS[name]
    g = genkit.create(name, **spec["config"]).to(device)
    dataset = g.make_dataset(genkit.load_data(spec["data"]), "train")
    if hasattr(dataset, "__getitems__"):
        batch = dataset.__getitems__(list(range(spec["batch_size"])))
    else:
        batch = torch.utils.data.default_collate([dataset[i] for i in range(spec["batch_size"])])
    batch = {k: v.to(device) for k, v in batch.items()}
    ctx = SimpleNamespace(models=g.modules(), generator=torch.Generator(device).manual_seed(0),
                          step=0, device=torch.device(device), unwrap=lambda m: m)
    with FlopCounterMode(display=False) as counter:
        g.training_step(batch, ctx)["loss"].backward()
    return float(counter.get_total_flops())


def peak_flops(device: str, given: float | None) -> float | None:
    """Peak bf16 FLOP/s of the device: ``given`` TFLOP/s, else from the table by name."""
    import torch

    if given:
        return given * 1e12
    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else ""
    return next((tf * 1e12 for key, tf in PEAK_BF16_TFLOPS.items() if key in name), None)


def print_mfu(rows: list[dict[str, Any]], device: str, peak_tflops: float | None) -> None:
    """MFU of the bf16 training steps of the UNet and the GPT."""
    peak = peak_flops(device, peak_tflops)
    for row in rows:
        if "error" in row or row["plugin"] not in MFU_PLUGINS or row["precision"] != "bf16":
            continue
        flops = step_flops(row["plugin"], device)
        achieved = flops * row["train_steps_per_s"]
        line = f"{row['plugin']}: {flops / 1e9:.2f} GFLOP/step, {achieved / 1e12:.2f} TFLOP/s"
        if peak:
            line += f", MFU {achieved / peak:.1%} of {peak / 1e12:.0f} TFLOP/s"
            print(f"RESULT gpu_{row['plugin']}_mfu={achieved / peak:.4f}")
        print(line + ("" if peak else " (pass --peak-tflops for MFU)"))


def run(name: str, precision: str, steps: int, device: str) -> dict[str, Any]:
    """:func:`check_one`, with any exception turned into a failed row."""
    try:
        return check_one(name, precision, steps, device)
    except Exception as exc:  # report and go on with the other plugins
        return {"plugin": name, "precision": "bf16" if precision == "bf16" else "fp32",
                "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def passed(row: dict[str, Any]) -> bool:
    return "error" not in row and row["finite"] and row["deterministic"] and row["not_blank"]


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'plugin':<10} {'precision':<9} {'train steps/s':>13} {'samples/s':>10} "
          f"{'final loss':>10}  checks")
    for row in rows:
        if "error" in row:
            print(f"{row['plugin']:<10} {row['precision']:<9} FAILED: {row['error']}")
            continue
        checks = ", ".join(f"{k} {'ok' if row[k] else 'FAIL'}"
                           for k in ("finite", "deterministic", "not_blank"))
        print(f"{row['plugin']:<10} {row['precision']:<9} {row['train_steps_per_s']:>13.2f} "
              f"{row['samples_per_s']:>10.1f} {row['final_loss']:>10.4g}  {checks}")
    by_key = {(r["plugin"], r["precision"]): r for r in rows if "error" not in r}
    for plugin in dict.fromkeys(r["plugin"] for r in rows):
        bf16, fp32 = by_key.get((plugin, "bf16")), by_key.get((plugin, "fp32"))
        if bf16 and fp32:
            print(f"{plugin}: bf16/fp32 train {bf16['train_steps_per_s'] / fp32['train_steps_per_s']:.2f}x, "
                  f"sample {bf16['samples_per_s'] / fp32['samples_per_s']:.2f}x")
            for key in ("train_steps_per_s", "samples_per_s"):
                for row in (bf16, fp32):
                    print(f"RESULT gpu_{plugin}_{row['precision']}_{key}={row[key]}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU: skipped")
        return 0
    names = [n.strip() for n in args.plugins.split(",") if n.strip()]
    unknown = [n for n in names if n not in PLUGINS]
    if unknown:
        print(f"unknown plugin(s) {', '.join(unknown)}; choose from {', '.join(PLUGINS)}")
        return 2
    if args.device.startswith("cuda"):
        print(f"device {torch.cuda.get_device_name(torch.device(args.device))} | torch "
              f"{torch.__version__} | bf16 supported: {torch.cuda.is_bf16_supported()} | "
              f"{args.steps} training steps")
    else:
        print(f"device {args.device} | torch {torch.__version__} | {args.steps} training steps")
    rows = []
    for name in names:
        run(name, "no", 3, args.device)  # warm-up (CUDA kernels, cuDNN choices): not timed
        for precision in PRECISIONS:
            rows.append(run(name, precision, args.steps, args.device))
            print(f"  done {name} {rows[-1]['precision']}", flush=True)
    print_table(rows)
    print_mfu(rows, args.device, args.peak_tflops)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    failed = [r for r in rows if not passed(r)]
    print("all checks passed" if not failed else f"{len(failed)} check(s) FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
