"""Training settings and what a run reports."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Mapping
from typing import Any

from genkit.config import build_config, check
from genkit.contract import GeneratorContract
from genkit.devices import PRECISIONS
from genkit.errors import ConfigError
from genkit.train.budget import parse_duration

LR_SCHEDULES = ("constant", "linear", "cosine")
TRACKERS = ("tensorboard", "wandb", "mlflow", "none")


@dataclasses.dataclass
class TrainArgs:
    """Every training setting; plugins change the defaults through ``train_defaults``."""

    steps: int = 1000
    epochs: int | None = None  # when set, overrides steps: whole passes over the data
    batch_size: int = 64  # global batch of one micro-step, split across processes
    lr: float = 1e-3
    weight_decay: float = 0.0
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 on CUDA GPUs that have it, else no) | no | fp16 | bf16
    seed: int = 0
    out: str | None = None
    resume: bool = False
    checkpoint_every: int | None = None
    keep: int | None = None  # training checkpoints to keep on disk (None: all)
    grad_accum: int = 1
    clip_grad: float | None = None
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    ema_decay: float | None = None  # None/0: no EMA
    ema_warmup: bool = True
    num_workers: int | None = None  # DataLoader workers (None: automatic, by the data set)
    log_every: int = 50
    sample_every: int | None = None  # image grid to TensorBoard every N steps
    eval_every: int | None = None
    eval_metric: str | None = None  # the figure that picks the best model (lower is better)
    eval_samples: int = 256  # samples per evaluation for the FD and coverage of image models
    keep_best: bool = False  # keep the best evaluated model as OUT/best/
    early_stop: int | None = None  # stop after N evaluations without improvement
    init_from: str | None = None  # start from this checkpoint's weights
    resume_from: str | None = None  # resume from this training checkpoint (not the newest)
    augment: bool = False  # flips, crops and colour jitter per sample (images)
    time: float | str | None = None  # a wall-clock budget ("10m", "1h30m", seconds): sets steps
    threads: int | None = None  # torch CPU threads (None: as set; the CLI picks free cores)
    compile: bool | None = None  # torch.compile the models (None: on CUDA for runs of 500+ steps)
    log_with: str = "tensorboard"
    progress: bool = True

    def __post_init__(self) -> None:
        check(self.steps > 0, f"--steps must be at least 1, got {self.steps}")
        check(self.epochs is None or self.epochs > 0, "--epochs must be at least 1")
        check(self.batch_size > 0, f"--batch-size must be at least 1, got {self.batch_size}")
        check(self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}")
        check(self.grad_accum >= 1, "grad_accum must be at least 1")
        check(self.clip_grad is None or self.clip_grad > 0, "clip_grad must be positive")
        check(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        check(self.lr_schedule in LR_SCHEDULES,
              f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        check(self.ema_decay is None or 0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)")
        check(self.checkpoint_every is None or self.checkpoint_every > 0,
              "--checkpoint-every must be at least 1")
        check(self.keep is None or self.keep > 0, "--keep must be at least 1")
        check(self.log_every > 0, "--log-every must be at least 1")
        check(self.num_workers is None or self.num_workers >= 0, "num_workers must be >= 0")
        check(self.log_with in TRACKERS,
              f"--log-with must be one of {', '.join(TRACKERS)}, got {self.log_with!r}")
        check(self.precision in PRECISIONS,
              f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        check(not self.resume or self.out, "--resume needs --out (the run directory to resume)")
        check(self.eval_samples >= 20, "--eval-samples must be at least 20")
        if self.time is not None:
            parse_duration(self.time)  # a clear error now, not after the data is loaded
        check(self.early_stop is None or self.early_stop >= 1, "--early-stop must be at least 1")
        check(not ((self.keep_best or self.early_stop) and not self.eval_every),
              "--keep-best and --early-stop need --eval-every N")
        check(not (self.keep_best and not self.out), "--keep-best needs --out")
        check(not (self.init_from and (self.resume or self.resume_from)),
              "--init-from starts a new run; it cannot be combined with --resume")


@dataclasses.dataclass
class TrainReport:
    """What a training run did."""

    steps: int
    start_step: int
    first_loss: float | None
    final_loss: float | None
    seconds: float
    steps_per_second: float
    out: str | None
    checkpoint: str | None
    history: list[dict[str, float]]
    eval: dict[str, float]
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_args(generator: GeneratorContract, kwargs: Mapping[str, Any]) -> TrainArgs:
    """TrainArgs from engine defaults < the family's ``train_defaults`` < the caller's."""
    values = {**generator.train_defaults,
              **{k: v for k, v in kwargs.items() if v is not None}}
    for key in ("out", "init_from", "resume_from"):  # paths may come as Path objects
        if values.get(key) is not None:
            values[key] = str(values[key])
    return build_config(TrainArgs, values, what="training option")


def check_tracker_installed(name: str) -> None:
    module = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"--log-with {name} needs the {module} package: pip install {module} "
                          "(or use --log-with tensorboard)")
