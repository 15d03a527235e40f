"""Training callbacks: code of a plugin or a user that reacts to what a run does.

A callback is any object with some of these methods, each taking a :class:`TrainEvent`:

- ``on_step_end(event)``: after every optimizer step (keep it cheap);
- ``on_evaluate(event)``: after each evaluation (``event.metrics`` holds the figures);
- ``on_checkpoint(event)``: after a checkpoint is written (``event.path``).

Plugins register callbacks through the ``register_callbacks`` hook; a user passes them
to ``Generator.train(callbacks=[...])``. A callback that raises is reported in one
warning line and dropped for the rest of the run: it never ends the training.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genkit.contract import GeneratorContract
from genkit.discovery.registry import get_registry
from genkit.errors import ConfigError

EVENTS = ("on_step_end", "on_evaluate", "on_checkpoint")


@dataclasses.dataclass
class TrainEvent:
    """What happened: the step, the figures of the moment, and where."""

    step: int
    generator: GeneratorContract
    metrics: dict[str, float]
    out: Path | None = None
    path: Path | None = None  # the checkpoint written (on_checkpoint)
    is_best: bool = False  # the evaluation improved on every earlier one (on_evaluate)


class Callbacks:
    """The callbacks of one run: the plugins' and the user's, called in that order."""

    def __init__(self, user: Iterable[Any] = ()) -> None:
        self.entries: list[tuple[str, Any]] = [
            *get_registry().training_callbacks(),
            *((f"callback {type(cb).__name__}", cb) for cb in user)]
        for _, cb in self.entries:
            if not any(callable(getattr(cb, name, None)) for name in EVENTS):
                raise ConfigError(f"{cb!r} is not a training callback: give it one of "
                                f"{', '.join(EVENTS)}")

    def fire(self, name: str, event: TrainEvent) -> None:
        for owner, cb in list(self.entries):
            method = getattr(cb, name, None)
            if method is None:
                continue
            try:
                method(event)
            except Exception as exc:  # a callback must not end the run
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
                print(f"Warning: {owner}: {name} failed at step {event.step} ({detail}); "
                      "it is dropped for the rest of this run", file=sys.stderr)
                self.entries.remove((owner, cb))
