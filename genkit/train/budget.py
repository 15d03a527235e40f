"""Training for a wall-clock budget (``--time 10m``): size the run to end on time.

The run measures its step rate over a short warm-up (the first steps, at least
:data:`WARMUP_SECONDS`), then sets the total number of steps so the run ends within the
budget, keeping a reserve for the final evaluation and checkpoint, and stretches the
learning-rate schedule (warm-up and decay) over that total. It re-plans a few times as
it goes, and if the machine turns slower it stops when the budget is spent: a finished
run, with its final model. A resumed run gets what is left of its budget.
"""

from __future__ import annotations

import re
import time

from genkit.errors import ConfigError

WARMUP_SECONDS = 3.0
WARMUP_STEPS = 5
RESERVE = 0.05  # of the budget, kept for the final evaluation and checkpoint
REPLANS = (0.25, 0.5, 0.75)  # fractions of the budget at which the plan is revised

UNPLANNED_STEPS = 10**9  # the steps of a budgeted run before its first plan (never reached)
_UNITS = {"h": 3600, "m": 60, "s": 1}


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``"10m"``, ``"1h30m"``, ``"90s"``, ``"600"`` (a number is seconds)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", value):
            seconds = float(value)
        elif re.fullmatch(r"(\d+(\.\d+)?[hms])+", value):
            seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", value))
        else:
            raise ConfigError(f"--time {text!r}: use a duration such as 10m, 1h30m, 90s or 600")
    if not seconds > 0:
        raise ConfigError(f"--time must be positive, got {text!r}")
    return seconds


class TimeBudget:
    """When to stop: a plan of steps from the measured rate, revised as the run goes."""

    def __init__(self, seconds: float, spent: float = 0.0) -> None:
        self.seconds, self.spent = seconds, spent  # spent: by earlier parts of a resumed run
        self.start = time.perf_counter()
        self.first_step: int | None = None
        self.planned = False
        self.replans = list(REPLANS)

    @property
    def elapsed(self) -> float:
        return self.spent + time.perf_counter() - self.start

    @property
    def left(self) -> float:
        return self.seconds - self.elapsed

    @property
    def expired(self) -> bool:
        return self.left <= 0

    def plan(self, step: int) -> int | None:
        """A new total number of steps when it is time to (re)plan, else None."""
        if self.first_step is None:
            self.first_step, self.start_of_rate = step, time.perf_counter()
            return None
        done = step - self.first_step
        measured = time.perf_counter() - self.start_of_rate
        due = not self.planned and done >= WARMUP_STEPS and measured >= WARMUP_SECONDS
        if self.planned and self.replans and self.elapsed >= self.replans[0] * self.seconds:
            self.replans.pop(0)
            due = True
        if not due or done <= 0:
            return None
        self.planned = True
        rate = done / measured  # steps per second, as measured on this run
        usable = self.left - RESERVE * self.seconds
        return step + max(1, int(rate * usable))
