"""Start-up time of the genkit CLI, measured against ``python -c "import torch"``.

genkit discovers plugins without importing torch, so ``genkit --help`` and ``genkit
plugins`` should cost a small fraction of one torch import however many plugins are
installed. Goal: each at most 0.2x the torch import, measured in the same run.

Each command runs ``--runs`` times in fresh processes, the three commands taking turns
(so a busy machine slows all of them alike), after one untimed warm-up each; the table
shows medians. ``--profile`` adds the slowest imports of ``genkit --help``
(``python -X importtime``).

    python benchmarks/startup.py            # medians and ratios; exit 1 if the goal is missed
    python benchmarks/startup.py --runs 15 --profile
    python benchmarks/startup.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL = 0.2


def genkit_command() -> list[str]:
    """The ``genkit`` console script next to this interpreter (what users run), else
    ``python -m genkit``."""
    script = Path(sys.executable).with_name("genkit")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "genkit"]


def commands() -> dict[str, list[str]]:
    genkit = genkit_command()
    return {
        "genkit --help": [*genkit, "--help"],
        "genkit plugins": [*genkit, "plugins"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }


def time_once(cmd: list[str]) -> float:
    """Wall-clock seconds of one run of ``cmd`` (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(cmds: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """``runs`` timings of every command, interleaved, after one warm-up each."""
    for cmd in cmds.values():
        time_once(cmd)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            times[name].append(time_once(cmd))
    return times


def installed_plugins() -> list[str]:
    """``name (distribution status)`` of every plugin, as ``genkit plugins --json`` says."""
    out = subprocess.run([*genkit_command(), "plugins", "--json"], check=True,
                         capture_output=True, text=True).stdout
    return [f"{p['name']} ({p['distribution']}, {p['status']})" for p in json.loads(out)]


def slowest_imports(limit: int = 15) -> list[tuple[float, str]]:
    """The ``limit`` imports with the largest cumulative time in ``genkit --help``."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "genkit", "--help"],
                            capture_output=True, text=True, check=True)
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]) / 1000, parts[2].rstrip()))
    return sorted(rows, reverse=True)[:limit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command")
    parser.add_argument("--profile", action="store_true", help="list the slowest imports")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="3 runs per command")
    args = parser.parse_args()
    if args.quick:
        args.runs = 3

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cmds = commands()
    times = measure(cmds, args.runs)
    medians = {name: statistics.median(t) for name, t in times.items()}
    torch_s = medians["python -c 'import torch'"]
    ratios = {name: medians[name] / torch_s for name in ("genkit --help", "genkit plugins")}
    met = all(r <= GOAL for r in ratios.values())
    if args.json:
        print(json.dumps({"runs": args.runs, "median_s": medians, "ratio_to_torch": ratios,
                          "goal": GOAL, "met": met, "plugins": installed_plugins()}, indent=2))
        return 0 if met else 1
    print(f"plugins: {', '.join(installed_plugins())}")
    print(f"{'command':<28}{'median':>9}{'min':>9}{'max':>9}{'x torch':>9}   ({args.runs} runs)")
    for name, t in times.items():
        ratio = f"{medians[name] / torch_s:.2f}"
        print(f"{name:<28}{medians[name]:>8.3f}s{min(t):>8.3f}s{max(t):>8.3f}s{ratio:>9}")
    for name, key in (("genkit --help", "help"), ("genkit plugins", "plugins")):
        print(f"RESULT startup_{key}_s={medians[name]:.3f}")
        print(f"RESULT startup_{key}_ratio_to_torch={ratios[name]:.3f}")
    print(f"RESULT startup_import_torch_s={torch_s:.3f}")
    verdict = "met" if met else "MISSED"
    print(f"goal: genkit --help and genkit plugins <= {GOAL}x import torch: {verdict}")
    if args.profile or not met:
        print("\nslowest imports of genkit --help (cumulative ms):")
        for ms, module in slowest_imports():
            print(f"{ms:>9.1f}  {module}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
