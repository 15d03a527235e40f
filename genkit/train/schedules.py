"""Learning-rate schedules (transformers' ``get_scheduler``): warm-up, then constant,
linear or cosine over the run's steps; stretched when a time budget re-plans the run."""

from __future__ import annotations

from typing import Any

from genkit.train.args import TrainArgs


def make_schedule(optimizer: Any, args: TrainArgs, total: int) -> Any:
    """The run's schedule for ``optimizer`` over ``total`` steps."""
    from transformers import get_scheduler

    kind = "constant_with_warmup" if args.lr_schedule == "constant" else args.lr_schedule
    return get_scheduler(kind, optimizer=optimizer, num_warmup_steps=args.warmup_steps,
                         num_training_steps=total)


def stretch_schedule(optimizer: Any, args: TrainArgs, total: int, step: int) -> Any:
    """A new schedule over ``total`` steps, already at ``step``, with the optimizer's
    learning rates set to its value there."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]  # get_scheduler reads the base rate from here
    schedule = make_schedule(optimizer, args, total)
    for group, base, rule in zip(optimizer.param_groups, schedule.base_lrs, schedule.lr_lambdas):
        group["lr"] = base * rule(step)
    schedule.last_epoch = step
    schedule._last_lr = [group["lr"] for group in optimizer.param_groups]  # get_last_lr's value
    return schedule
