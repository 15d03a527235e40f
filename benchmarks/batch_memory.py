"""Batch generation memory: peak resident memory of ``genkit sample`` for a small and a large N.

The sampler streams batches to files, so memory should not grow with N: the goal is a peak
for N = 10,000 within 15% of N = 500. Each size runs in a fresh process; its peak RSS is
read from ``getrusage`` of the finished child.

    python benchmarks/batch_memory.py                  # gan default model, 500 vs 10000
    python benchmarks/batch_memory.py --plugin vae --small 500 --large 10000

Prints ``RESULT batch_memory_ratio=<peak large / peak small>``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile


def peak_rss_mb(args: list[str]) -> float:
    """Run ``genkit sample ARGS`` in a child and return its peak RSS in MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "genkit", "sample", *args, "--no-progress"],
                   check=True, env=env, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:  # ru_maxrss of children is a running max: run the small size first
        return before / 1024
    return after / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", default="gan")
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.large = 2000
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            out = os.path.join(tmp, f"n{n}")
            peaks[n] = peak_rss_mb(["--plugin", args.plugin, "-n", str(n), "--batch-size",
                                    str(args.batch_size), "--out", out, "--device", "cpu"])
            print(f"{args.plugin}: N={n}: peak RSS {peaks[n]:.0f} MB")
    ratio = peaks[args.large] / peaks[args.small]
    print(f"RESULT batch_memory_peak_mb_n{args.small}={peaks[args.small]:.1f}")
    print(f"RESULT batch_memory_peak_mb_n{args.large}={peaks[args.large]:.1f}")
    print(f"RESULT batch_memory_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
