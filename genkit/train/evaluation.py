"""Evaluation during training: the figures, the best model so far, and when to stop.

Every ``--eval-every`` steps (and at the end) the run measures the family's held-out
figures (the plugin's ``evaluate``: a loss, bits per character, ...) and, for image
generators trained on labelled images, the Fréchet distance and class coverage of a
fixed set of samples (:class:`genkit.eval.watch.TrainingWatch`; a collapse is a warning
line in the log and in ``metrics.jsonl``). One figure decides which evaluation is best:
``--eval-metric``, else ``fd`` when measured, else the plugin's first figure; lower is
better. ``--keep-best`` keeps the best model as ``OUT/best/`` (a complete checkpoint);
``--early-stop N`` ends the run after N evaluations without improvement.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from genkit.contract import GeneratorContract
from genkit.errors import ConfigError
from genkit.eval.watch import TrainingWatch, collapse_warning
from genkit.train.args import TrainArgs

BEST = "best"
#: figures that mean "lower is better", in the order one is picked as the deciding metric
PREFERRED = ("fd", "val_loss", "val_bpc", "neg_elbo", "bits_per_dim")


class RunEvaluator:
    """Held-out figures, best-model tracking and early stopping for one run."""

    def __init__(self, generator: GeneratorContract, args: TrainArgs, train_data: Any,
                 eval_data: Any, out: Path | None, device: Any) -> None:
        self.generator, self.args, self.out = generator, args, out
        self.eval_data = eval_data
        self.watch: TrainingWatch | None = None
        if args.eval_every and eval_data is not None and TrainingWatch.applies(generator, train_data):
            size = getattr(generator.config, "image_size", None) or int(train_data.images.shape[1])
            self.watch = TrainingWatch(train_data, eval_data, size, device, args.eval_samples)
        self.metric = args.eval_metric
        self.best: float | None = None
        self.best_step: int | None = None
        self.stale = 0  # evaluations since the last improvement
        self.warnings: list[str] = []

    @property
    def active(self) -> bool:
        return self.eval_data is not None

    def evaluate(self, step: int) -> tuple[dict[str, float], bool]:
        """The figures at ``step`` and whether they are the best so far (the engine then
        writes ``OUT/best/`` under ``--keep-best``)."""
        g = self.generator
        with g.inference():  # the same context as sampling: eval mode, EMA weights
            results = {k: float(v) for k, v in g.evaluate(self.eval_data).items()}
        if self.watch is not None:
            figures, coverage = self.watch.measure(g)
            results.update(figures)
            warning = collapse_warning(coverage, step)
            if warning:
                print(warning, file=sys.stderr)
                self.warnings.append(warning)
                results["collapse"] = 1.0
        value = self._deciding(results)
        is_best = value is not None and (self.best is None or value < self.best)
        if is_best:
            self.best, self.best_step, self.stale = value, step, 0
        elif value is not None:
            self.stale += 1
        return results, is_best

    @property
    def should_stop(self) -> bool:
        return bool(self.args.early_stop) and self.stale >= self.args.early_stop

    def _deciding(self, results: dict[str, float]) -> float | None:
        if not results:
            return None
        if self.metric is None:
            self.metric = next((k for k in PREFERRED if k in results), next(iter(results)))
        if self.metric not in results:
            raise ConfigError(f"--eval-metric {self.metric} is not among this run's figures "
                              f"({', '.join(sorted(results))})")
        value = results[self.metric]
        return value if math.isfinite(value) else None

    def summary(self) -> dict[str, Any]:
        """What the training summary records about the evaluations."""
        return {"metric": self.metric, "best": self.best, "best_step": self.best_step,
                "collapse_warnings": len(self.warnings)}
