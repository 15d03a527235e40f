"""The run directory a training run owns: locked while it trains, cleaned of what a
killed run left, and never a folder of someone else's files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from genkit.errors import TrainingError
from genkit.fs import LOCK_FILE, folder_lock, remove_leftovers
from genkit.store.checkpoint import CHECKPOINTS, FINAL_MODEL, step_checkpoints

#: what a genkit run directory holds (anything else means it is someone else's folder)
RUN_ENTRIES = (CHECKPOINTS, FINAL_MODEL, "logs", "metrics.jsonl", LOCK_FILE)


def claim_run_dir(out: Path, resume: bool) -> contextlib.ExitStack:
    """Create ``out``, lock it for this process (a second trainer or a sampler writing
    there gets one line naming the holder), remove a killed run's temporary directories,
    and check it fits ``resume``. Returns the stack that holds the lock."""
    _check_writable(out)
    if not (out / LOCK_FILE).exists():  # a user's folder is refused before any file is made
        _check_foreign(out)
    stack = contextlib.ExitStack()
    stack.enter_context(folder_lock(out, "--out"))
    try:
        for folder in (out, out / CHECKPOINTS):
            if folder.is_dir():
                remove_leftovers(folder)
        _check_foreign(out)
        if not resume and step_checkpoints(out):
            raise TrainingError(f"{out} already holds training checkpoints; pass --resume to "
                                "continue that run, or choose a new --out")
    except BaseException:
        stack.close()
        raise
    return stack


def _check_foreign(out: Path) -> None:
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_ENTRIES
                     and not p.name.startswith(".genkit") and ".tmp-" not in p.name
                     and ".old-" not in p.name)
    if foreign:
        raise TrainingError(f"--out {out} holds files that are not a genkit run "
                            f"({', '.join(foreign[:3])}); choose an empty or new folder")


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".genkit-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"cannot write to --out {out}: {exc.strerror or exc}; choose a "
                            "writable directory") from None
