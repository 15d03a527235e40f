"""Running genkit commands in child processes: DDP training under ``accelerate launch``,
and sampling shards.

Children are given their command line explicitly (never the host program's ``sys.argv``)
and die with the process that started them: each one watches its genkit parent
(``GENKIT_PARENT_PID``) and ends itself when that parent is gone, even after a
``kill -9`` that left the parent no chance to clean up.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from genkit.errors import SamplingError, TrainingError
from genkit.sample.writer import merge_manifests

PARENT_ENV = "GENKIT_PARENT_PID"
_WATCH_SECONDS = 0.5


def without_options(argv: Sequence[str], drop: Sequence[str]) -> list[str]:
    """``argv`` without the options in ``drop`` and their values (``--opt V`` or ``--opt=V``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in drop:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env[PARENT_ENV] = f"{os.getpid()}:{_start_time(os.getpid())}"
    env.pop("WORLD_SIZE", None)
    return env


def launch_training(argv: Sequence[str], processes: int, precision: str | None) -> int:
    """Run ``genkit train ARGV`` under ``accelerate launch`` with ``processes`` processes
    (gloo on a CPU-only machine); return the launcher's exit status."""
    if processes < 1:
        raise TrainingError(f"--num-processes must be at least 1, got {processes}")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", precision if precision in ("no", "fp16", "bf16") else "no", "--dynamo_backend", "no",
           "-m", "genkit", "train", *argv]
    return _run_all([cmd], [_child_env()])[0]


def run_sharded(argv: Sequence[str], processes: int, out: Path, gpus: int = 0) -> None:
    """Run ``genkit sample ARGV`` as ``processes`` shards (one process each, spread over
    ``gpus`` GPUs when there are several), then merge their manifests."""
    cmds, envs = [], []
    for rank in range(processes):
        extra = {"CUDA_VISIBLE_DEVICES": str(rank % gpus)} if gpus > 1 else {}
        cmds.append([sys.executable, "-m", "genkit", "sample", *argv,
                     "--shard", f"{rank}/{processes}"])
        envs.append(_child_env(extra))
    codes = _run_all(cmds, envs)
    if any(codes):
        raise SamplingError(f"{sum(1 for c in codes if c)} of {processes} sampling processes "
                            "failed (see above); rerun the same command to finish the missing samples")
    merge_manifests(out)


def _run_all(cmds: list[list[str]], envs: list[dict[str, str]]) -> list[int]:
    """Start every command, wait for all; on Ctrl-C or an error here, end them all."""
    procs = [subprocess.Popen(cmd, env=env) for cmd, env in zip(cmds, envs)]
    try:
        return [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _start_time(pid: int) -> str:
    """A process's start time (field 22 of /proc/PID/stat), to tell it from a later process
    that got the same pid; empty where /proc does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or _start_time(pid) == start


def watch_parent() -> None:
    """In a child started by this module: end this process when the genkit process that
    started it is gone (a daemon thread polls it twice a second). No-op elsewhere."""
    value = os.environ.get(PARENT_ENV)
    if not value:
        return
    pid_text, _, start = value.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return

    def watch() -> None:
        while _alive(pid, start):
            time.sleep(_WATCH_SECONDS)
        os.kill(os.getpid(), signal.SIGKILL)  # nothing to save: the run resumes from its last checkpoint

    threading.Thread(target=watch, name="genkit-parent-watch", daemon=True).start()


def end_process_group() -> None:
    """Leave the process group cleanly under ``accelerate launch`` (avoids gloo aborts at exit)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch.distributed as dist  # only ever under accelerate launch, where torch is loaded

    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
