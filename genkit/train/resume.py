"""Continuing a run: which settings a resume may change, and applying the changes.

A resumed run starts from the settings it was saved with; what the user passes again
overrides them. Settings that shape the data order, the randomness or the schedule's
position (batch size, accumulation, seed, warm-up, schedule kind, EMA) cannot change
without breaking the exact-resume promise, so changing them is refused with one line.
The rest (more steps, a new learning rate or weight decay, clipping, logging, devices)
takes effect from the resume point and is recorded in the training summary.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genkit.config import build_config, config_to_dict
from genkit.errors import TrainingError
from genkit.fs import atomic_write_text
from genkit.train.args import TrainArgs

#: settings a resume must keep (they decide the data order and the random streams)
FIXED_ON_RESUME = ("batch_size", "grad_accum", "seed", "epochs", "warmup_steps", "lr_schedule",
                   "ema_decay", "ema_warmup")
#: settings whose new value must be pushed into the restored optimizers
OPTIMIZER_SETTINGS = ("lr", "weight_decay")
#: how a run was started, not what it is: never recorded as a change
BOOKKEEPING = ("resume", "resume_from", "out", "progress")


def resumed_args(saved: Mapping[str, Any], given: Mapping[str, Any],
                 current: TrainArgs) -> tuple[TrainArgs, dict[str, list[Any]]]:
    """The settings of a resumed run: the saved ones, overridden by those the user gave.

    Returns the settings and the changes (``{"lr": [old, new]}``); a change to a setting in
    :data:`FIXED_ON_RESUME` is a :class:`TrainingError`.
    """
    fields = {f.name for f in dataclasses.fields(TrainArgs)}
    base = {k: v for k, v in saved.items() if k in fields}
    explicit = {k: getattr(current, k) for k in given if k in fields}
    merged = build_config(TrainArgs, {**base, **explicit}, what="training option")
    changes = {k: [base[k], v] for k, v in config_to_dict(merged).items()
               if k in base and k in explicit and base[k] != v and k not in BOOKKEEPING}
    fixed = sorted(k for k in changes if k in FIXED_ON_RESUME)
    if fixed:
        shown = ", ".join(f"--{k.replace('_', '-')} {changes[k][0]} -> {changes[k][1]}"
                          for k in fixed)
        raise TrainingError(f"--resume cannot change {shown}: the run's data order and "
                            "randomness depend on it; drop the option, or start a new run")
    return merged, changes


def apply_optimizer_changes(optimizers: Mapping[str, Any], schedulers: Mapping[str, Any],
                            changes: Mapping[str, list[Any]]) -> None:
    """Push a new ``lr`` (scaled per group, so per-network ratios stay) and
    ``weight_decay`` into optimizers and schedules restored from a checkpoint."""
    if "lr" in changes:
        old, new = changes["lr"]
        scale = float(new) / float(old)
        for name, opt in optimizers.items():
            sched = schedulers[name]
            sched.base_lrs = [base * scale for base in sched.base_lrs]
            for group, base, rule in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas):
                group["initial_lr"] = base
                group["lr"] = base * rule(sched.last_epoch)
    if "weight_decay" in changes:
        old, new = changes["weight_decay"]
        for opt in optimizers.values():
            for group in opt.param_groups:
                if group.get("weight_decay") == old:  # groups without decay keep none
                    group["weight_decay"] = new


def trim_metrics(out: Path, step: int) -> None:
    """Drop the ``metrics.jsonl`` lines past ``step`` (written after the checkpoint a run
    resumes from), so a killed and resumed run has no duplicate steps."""
    file = out / "metrics.jsonl"
    if not file.is_file():
        return
    kept = []
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) \
                and record["step"] <= step:
            kept.append(line + "\n")
    atomic_write_text(file, "".join(kept))
