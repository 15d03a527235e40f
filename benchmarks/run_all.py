"""Run every benchmark script in this folder and write ``BENCHMARKS.md`` at the repo root.

Each ``benchmarks/*.py`` (except this one and names starting with ``_``) runs in its own
process; its output is captured and every ``RESULT name=value [unit]`` line becomes a row
of the figures table (see benchmarks/README.md for the convention). The file also records
the machine (CPU model, cores, RAM, load, GPU), library versions and the date.

    python benchmarks/run_all.py                      # every script, full runs
    python benchmarks/run_all.py --quick              # short runs (smoke test)
    python benchmarks/run_all.py --only startup --only sample_diffusion

With ``--only``, the other scripts' sections of an existing ``BENCHMARKS.md`` are kept
(the results of every run are stored, as JSON, in a comment at the end of the file).

Runs too long to repeat here (the half-hour tiles examples) are run by hand with their
output saved, then recorded with ``--ingest NAME=LOG``: the log's first line must be the
command that made it (``$ python examples/...``, as those scripts print it); its RESULT
lines become rows under NAME, and the other sections are kept::

    python examples/train_tiles.py --plugin gan > gan.log 2>&1
    python benchmarks/run_all.py --ingest tiles_gan_diffaug=gan.log
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT_LINE = re.compile(r"^RESULT\s+([A-Za-z0-9_.\-/]+)=(\S+)(?:\s+(.*?))?\s*$")
ARGS_LINE = re.compile(r"^#\s*run_all(\s+--quick)?:\s*(.*)$")
STATE_MARK = "<!-- run_all results: "
LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "tokenizers",
             "huggingface_hub", "numpy", "scikit-learn", "genkit")
TAIL_LINES = 60


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="pass --quick to every script: short runs")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this script (name with or without .py; repeatable)")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="the report to write")
    p.add_argument("--dir", type=Path, default=HERE, help="folder of benchmark scripts")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per script")
    p.add_argument("--list", action="store_true", help="list the scripts and exit")
    p.add_argument("--ingest", action="append", default=[], metavar="NAME=LOG",
                   help="record a run made by hand from its saved output (repeatable)")
    return p.parse_args(argv)


# ------------------------------------------------------------------------- scripts
def discover(folder: Path) -> list[Path]:
    """Benchmark scripts: ``*.py`` in ``folder`` except run_all.py and ``_private.py``."""
    return sorted(p for p in folder.glob("*.py")
                  if p.name != Path(__file__).name and not p.name.startswith("_"))


def select(scripts: list[Path], only: list[str] | None) -> list[Path]:
    if not only:
        return scripts
    names = {s.stem: s for s in scripts}
    wanted = [o.removesuffix(".py") for o in only]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        sys.exit(f"run_all: no benchmark named {', '.join(unknown)}; "
                 f"there are: {', '.join(names) or 'none'}")
    return [names[w] for w in wanted]


def script_args(script: Path, quick: bool) -> tuple[list[str], bool]:
    """Arguments for ``script``: its ``# run_all: ...`` line (``# run_all --quick: ...`` in
    quick mode); in quick mode ``--quick`` is added when the script takes it. Also says
    whether the run is a quick one (a script without a quick form runs in full)."""
    text = script.read_text(encoding="utf-8")
    full, short = None, None
    for line in text.splitlines():
        match = ARGS_LINE.match(line.strip())
        if match:
            if match.group(1):
                short = shlex.split(match.group(2))
            else:
                full = shlex.split(match.group(2))
    if quick and short is not None:
        return short, True
    args = list(full or [])
    if quick and "--quick" in text and "--quick" not in args:
        args.append("--quick")
    return args, quick and "--quick" in args


def parse_results(output: str) -> list[dict[str, str]]:
    """The ``RESULT name=value [unit]`` lines of a script's output."""
    rows = []
    for line in output.splitlines():
        match = RESULT_LINE.match(line.strip())
        if match:
            rows.append({"name": match.group(1), "value": match.group(2),
                         "unit": match.group(3) or ""})
    return rows


def run_script(script: Path, quick: bool, timeout: float) -> dict[str, Any]:
    """Run one script (cwd: the repo root); return its command, status, output, figures."""
    args, quick = script_args(script, quick)
    command = [sys.executable, str(script.relative_to(ROOT) if script.is_relative_to(ROOT)
                                   else script), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        rc, output = proc.returncode, proc.stdout + (proc.stderr or "")
    except subprocess.TimeoutExpired as exc:
        rc = None
        output = _text(exc.stdout) + _text(exc.stderr) + f"\n[run_all: timed out after {timeout:.0f} s]"
    seconds = time.perf_counter() - start
    shown = ["python", *command[1:]]
    return {"script": script.stem, "command": " ".join(shlex.quote(c) for c in shown),
            "quick": quick, "rc": rc, "seconds": round(seconds, 1), "output": clean_output(output),
            "results": parse_results(output),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_id()}


def ingest(spec: str) -> dict[str, Any]:
    """A run made by hand, from ``NAME=LOG``: the log's first line is ``$ COMMAND``."""
    name, sep, log = spec.partition("=")
    path = Path(log)
    if not sep or not name or not path.is_file():
        sys.exit(f"run_all: --ingest wants NAME=LOG with LOG an existing file, got {spec!r}")
    output = path.read_text(encoding="utf-8", errors="replace")
    first, _, rest = output.partition("\n")
    if not first.startswith("$ "):
        sys.exit(f"run_all: {log} must start with the command that made it ('$ python ...')")
    results = parse_results(output)
    if not results:
        sys.exit(f"run_all: {log} has no RESULT lines")
    modified = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    return {"script": name, "command": first[2:].strip(), "quick": False, "rc": 0,
            "seconds": None, "output": clean_output(rest), "results": results,
            "date": modified.isoformat(timespec="seconds"), "machine": machine_id()}


def clean_output(text: str) -> str:
    """Script output as a reader wants it: progress-bar lines dropped, the home folder as ~."""
    lines = []
    for line in text.replace("\r", "\n").splitlines():
        if "%|" in line or "it/s]" in line or "step/s]" in line:
            continue
        lines.append(line.replace(str(Path.home()), "~"))
    return "\n".join(lines) + ("\n" if lines else "")


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------------- machine
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def ram_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    with contextlib.suppress(ImportError):
        import psutil

        return round(psutil.virtual_memory().total / 1024 ** 3, 1)
    return None


def gpus() -> list[str]:
    """CUDA devices seen by torch (name, memory), asked in a child process so this
    runner stays light."""
    code = ("import torch, json; print(json.dumps([f'{torch.cuda.get_device_name(i)} '"
            "f'({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)' "
            "for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []))")
    with contextlib.suppress(Exception):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])
    return []


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def machine() -> dict[str, Any]:
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(x, 2) for x in os.getloadavg()]
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "ram_gb": ram_gb(),
            "os": f"{platform.system()} {platform.release()}", "gpus": gpus(),
            "load_average": load, "versions": versions()}


def machine_id() -> str:
    return f"{cpu_model()} x{os.cpu_count()}, {ram_gb()} GB"


# -------------------------------------------------------------------------- report
def load_state(path: Path) -> dict[str, Any]:
    """Results stored at the end of an existing report (to keep them under --only)."""
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    start = text.rfind(STATE_MARK)
    if start < 0:
        return {}
    with contextlib.suppress(json.JSONDecodeError, ValueError):
        body = text[start + len(STATE_MARK): text.index(" -->", start)]
        return json.loads(body)
    return {}


def _md(value: str) -> str:
    return value.replace("|", "\\|")


def render(runs: dict[str, dict[str, Any]], info: dict[str, Any], argv: list[str]) -> str:
    """The Markdown report: machine, versions, one figures table, then each script."""
    gpu = ", ".join(info["gpus"]) or "none"
    lines = ["# genkit benchmarks", "",
             f"Written by `python benchmarks/run_all.py{' ' if argv else ''}{' '.join(argv)}` "
             f"on {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. "
             "Each script runs genkit and the plain library beside it in one process, on the "
             "same machine, and prints both; a shared or loaded machine makes absolute "
             "figures noisy, ratios less so.", "",
             "## Machine", "",
             f"- CPU: {info['cpu']}, {info['cores']} logical cores; RAM {info['ram_gb']} GB",
             f"- GPU: {gpu}", f"- OS: {info['os']}",
             f"- load average at start (1, 5, 15 min): {info['load_average']}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()), "",
             "## Figures", "",
             "| script | figure | value | unit |", "|---|---|---|---|"]
    for name in sorted(runs):
        run = runs[name]
        for row in run["results"]:
            lines.append(f"| {name} | {_md(row['name'])} | {_md(row['value'])} | "
                         f"{_md(row['unit'])} |")
        if not run["results"]:
            lines.append(f"| {name} | (no RESULT lines: {_status(run)}) | | |")
    lines.append("")
    for name in sorted(runs):
        lines += _section(runs[name], info)
    # "--" may not appear inside an HTML comment: escape it (only strings can hold it)
    lines.append(STATE_MARK + json.dumps(runs).replace("--", "-\\u002d") + " -->")
    return "\n".join(lines) + "\n"


def _status(run: dict[str, Any]) -> str:
    if run["rc"] is None:
        return "timed out"
    return "ok" if run["rc"] == 0 else f"failed, exit status {run['rc']}"


def _section(run: dict[str, Any], info: dict[str, Any]) -> list[str]:
    other = run["machine"] != machine_id()
    lines = [f"## {run['script']}", "",
             f"`{run['command']}`: {_status(run)}"
             + (f" in {run['seconds']} s" if run["seconds"] is not None else " (run by hand)")
             + f", {run['date']}"
             + (" (quick run)" if run["quick"] else "")
             + (f"; on another machine: {run['machine']}" if other else ""), ""]
    output = run["output"].rstrip().splitlines()
    if len(output) > TAIL_LINES:
        output = [f"[... {len(output) - TAIL_LINES} earlier lines]"] + output[-TAIL_LINES:]
    lines += ["```text", *output, "```", ""]
    return lines


def write_report(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: never half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    scripts = select(discover(args.dir), args.only)
    if args.list:
        for s in scripts:
            script_argv, quick = script_args(s, args.quick)
            print(f"{s.stem}  {' '.join(script_argv)}"
                  + ("  (no quick form: runs in full)" if args.quick and not quick else ""))
        return 0
    info = machine()
    if args.ingest:
        runs = load_state(args.out)
        for spec in args.ingest:
            run = ingest(spec)
            runs[run["script"]] = run
            print(f"recorded {run['script']}: {len(run['results'])} figures")
        # the header names the logs, not where they were on this machine
        shown = [f"--ingest {name}={Path(log).name}"
                 for name, _, log in (spec.partition("=") for spec in args.ingest)]
        write_report(args.out, render(runs, info, shown))
        return 0
    runs = load_state(args.out) if args.only else {}
    failed = 0
    for script in scripts:
        print(f"== {script.stem} ...", flush=True)
        run = run_script(script, args.quick, args.timeout)
        runs[script.stem] = run
        failed += run["rc"] != 0
        for row in run["results"]:
            print(f"   {row['name']} = {row['value']} {row['unit']}".rstrip())
        print(f"   {_status(run)} in {run['seconds']} s", flush=True)
        write_report(args.out, render(runs, info, argv))  # after each script: progress survives
    print(f"wrote {args.out} ({len(scripts)} scripts, {failed} failed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
