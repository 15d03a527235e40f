"""What a run writes about itself: ``metrics.jsonl``, the tracker (TensorBoard, wandb,
mlflow), the progress bar's loss and the in-memory history of the report."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genkit.errors import TrainingError
from genkit.imaging import make_grid

METRICS_FILE = "metrics.jsonl"


class Logbook:
    """The records of one run. Only the main process writes files and tracker entries."""

    def __init__(self, accelerator: Any, out: Path | None, log_with: str) -> None:
        self.accelerator, self.out, self.log_with = accelerator, out, log_with
        self.writes = accelerator.is_main_process and out is not None
        self.history: list[dict[str, float]] = []
        self.last: dict[str, float] = {}

    def step(self, step: int, window: list[torch.Tensor], scalars: dict[str, list[torch.Tensor]],
             lr: float, start: float, bar: Any, last_checkpoint: Path | None) -> float:
        """Record the mean loss and scalars of the steps since the last record; a
        non-finite loss stops the run, naming the last good checkpoint."""
        loss_value = torch.stack(window).float().mean()
        if self.accelerator.num_processes > 1:
            loss_value = self.accelerator.reduce(loss_value.to(self.accelerator.device), "mean")
        loss = float(loss_value)
        if not math.isfinite(loss):
            last = f"; the last good checkpoint is {last_checkpoint}" if last_checkpoint else ""
            raise TrainingError(f"the loss became {loss} at step {step}{last}; lower --lr, "
                                "set clip_grad, or check the data")
        record = {"step": step, "loss": loss, "lr": lr,
                  "time": round(time.perf_counter() - start, 3)}
        for key, values in scalars.items():
            record[key] = float(torch.stack(values).float().mean())
        self.history.append(record)
        self.last = record
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if self.writes:
            self._append(record)
            if self.log_with != "none":
                self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
        return loss

    def evaluation(self, step: int, results: dict[str, float]) -> None:
        figures = {f"eval_{k}": v for k, v in results.items()}
        if self.history:
            self.history[-1].update(figures)
        if self.writes:
            self._append({"step": step, **figures})
            if self.log_with != "none":
                self.accelerator.log({f"eval/{k}": v for k, v in results.items()}, step=step)

    def images(self, step: int, images: list[Any]) -> None:
        """A grid of samples in TensorBoard."""
        if not self.writes or self.log_with != "tensorboard":
            return
        tracker = self.accelerator.get_tracker("tensorboard", unwrap=True)
        tracker.add_image("samples", np.asarray(make_grid(images).convert("RGB")), step,
                          dataformats="HWC")

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.out / METRICS_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
