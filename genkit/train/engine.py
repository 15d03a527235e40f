"""The one training engine every plugin runs under, built on Hugging Face ``accelerate``.

A plugin supplies modules, optimizers and one training step; the engine owns the rest:
data order, devices, mixed precision, processes (DDP through ``accelerate launch``),
gradient accumulation and clipping, learning-rate schedule, EMA, checkpoints with exact
resume, guards, progress, TensorBoard logs and ``metrics.jsonl``.

A run goes through labelled phases: ``setup`` (data, resume point, accelerator),
``build`` (optimizers, schedules, EMA, restored state, prepared modules) and ``run``
(the loop); :func:`train` strings them together and always ``close`` s the engine.

Determinism: the data order of epoch e is a permutation seeded by (seed, e), and every
random draw of step s on process r comes from generators seeded by (seed, s, r). The
data position and all RNG streams are therefore functions of the step counter, and a
resumed run repeats an uninterrupted one bit for bit on the CPU.

``batch_size`` is the global batch of one micro-step, split evenly across processes, so a
two-process run sees the same examples per step as a one-process run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genkit.config import config_to_dict
from genkit.contract import GeneratorContract
from genkit.data.datasets import known_length
from genkit.data.loading import load_data
from genkit.devices import device_name
from genkit.errors import ConfigError, TrainingError
from genkit.sample.plan import iter_samples
from genkit.seeding import derive_seed
from genkit.store.checkpoint import (
    CHECKPOINTS,
    FINAL_MODEL,
    STEP_PREFIX,
    library_versions,
    load_weights_from,
    read_manifest,
    resume_point,
    save_checkpoint,
    step_checkpoints,
    training_checkpoint,
)
from genkit.store.training_state import (
    TrainingParts,
    read_training_meta,
    read_training_state,
    write_training_state,
)
from genkit.train.accel import compiles, make_accelerator, needs_optimizer_wrapper
from genkit.train.args import TrainArgs, TrainReport, resolve_args
from genkit.train.budget import UNPLANNED_STEPS, TimeBudget, parse_duration
from genkit.train.callbacks import Callbacks, TrainEvent
from genkit.train.context import StepContext
from genkit.train.ema import make_ema
from genkit.train.evaluation import BEST, RunEvaluator
from genkit.train.interrupt import stop_on_interrupt
from genkit.train.loader import make_loader
from genkit.train.logbook import Logbook
from genkit.train.resume import apply_optimizer_changes, resumed_args, trim_metrics
from genkit.train.rundir import claim_run_dir
from genkit.train.schedules import make_schedule, stretch_schedule

if TYPE_CHECKING:
    from accelerate import Accelerator

# accelerate, diffusers (EMA), transformers (schedules) and tqdm load inside the functions
# that use them: importing the engine (through genkit.api) must not cost seconds when a
# user only samples.


class Engine:
    """One training run. Use :func:`train`.

    Every attribute is declared here; ``setup`` and ``build`` fill in what they make.
    """

    def __init__(self, generator: GeneratorContract, args: TrainArgs, data: Any,
                 data_options: Mapping[str, Any] | None = None,
                 given: Mapping[str, Any] | None = None, callbacks: Iterable[Any] = ()) -> None:
        self.generator, self.args, self.data_spec = generator, args, data
        self.data_options = dict(data_options or {})
        self.given = dict(given or {})  # the settings the caller passed (they win on resume)
        self.out = Path(args.out) if args.out else None
        self.stop_requested = False
        self.early_stopped = False
        self.budget: TimeBudget | None = None
        self.budget_spent = False
        self.callbacks = Callbacks(callbacks)
        # setup(): data, resume point, accelerator
        self.data_name = ""
        self.dataset: Any = None
        self.eval_data: Any = None
        self.resume_from: Path | None = None
        self.resume_changes: dict[str, list[Any]] = {}
        self.previous_summary: dict[str, Any] = {}
        self.init_origin: dict[str, Any] | None = None
        self.evaluator: RunEvaluator | None = None
        self.run_dir_claim: contextlib.ExitStack | None = None
        self.accelerator: Accelerator | None = None
        self.world = 1
        # build(): optimizers, schedules, EMA, prepared modules, data loader
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.prepared_models: dict[str, torch.nn.Module] = {}
        self.step_generator: torch.Generator | None = None
        self.loader: Any = None
        self.start_step = 0
        # run()
        self.last_checkpoint: Path | None = None
        self.eval_results: dict[str, float] = {}
        self.logbook: Logbook | None = None

    # -- setup -------------------------------------------------------------------
    def setup(self) -> None:
        g = self.generator
        resuming = bool(self.args.resume or self.args.resume_from)
        if self.out is not None and int(os.environ.get("RANK", "0")) == 0:
            self.run_dir_claim = claim_run_dir(self.out, resuming)
        if resuming and self.out is not None:
            self.resume_from = (training_checkpoint(self.args.resume_from)
                                if self.args.resume_from else resume_point(self.out))
            meta = read_training_meta(self.resume_from)
            self.args, self.resume_changes = resumed_args(meta.get("args", {}), self.given,
                                                          self.args)
            self.start_step = meta["step"]
            if self.run_dir_claim is not None:
                trim_metrics(self.out, self.start_step)
        if self.args.time is not None:  # the budget sets the steps once it has measured the rate
            self.args = dataclasses.replace(self.args, steps=UNPLANNED_STEPS)
        args = self.args
        if args.threads:
            torch.set_num_threads(args.threads)
        spec = self.data_spec if self.data_spec is not None else g.default_data
        if spec is None:
            raise ConfigError(f"generator {g.name!r} has no default data; pass --data")
        self.data_name = spec if isinstance(spec, str) else getattr(spec, "name", "data")
        train_data = load_data(spec, split="train", options=self.data_options)
        if (g.evaluates_held_out() or args.eval_every) and isinstance(spec, str):
            self.eval_data = load_data(spec, split="test", options=self.data_options)
        if args.init_from:
            self.init_origin = load_weights_from(g, Path(args.init_from))
        if self.resume_from is not None:
            self._check_resume_compatible(self.resume_from)
            self.previous_summary = read_manifest(self.resume_from).get("training") or {}
            g.load_weights(self.resume_from)  # tokenizers and other non-tensor state
        self.dataset = g.make_dataset(train_data, "train")
        n = known_length(self.dataset)  # None: a stream of unknown length
        if n is not None and n < args.batch_size:
            raise TrainingError(f"--batch-size {args.batch_size} is larger than the data set "
                                f"({n} examples); use a smaller batch size")
        if args.epochs:
            if n is None:
                raise ConfigError("--epochs needs a data set of known length; this stream has "
                                  "none: give --steps instead")
            per_epoch = n // (args.batch_size * args.grad_accum)
            self.args = args = dataclasses.replace(args, steps=max(1, per_epoch * args.epochs))
        if g.manual_optimization and args.grad_accum > 1:
            raise ConfigError(f"generator {g.name!r} steps its own optimizers: "
                              "gradient accumulation is not supported; use grad_accum=1")
        self.accelerator = make_accelerator(args, self.out, g.config)
        self.world = self.accelerator.num_processes
        self.logbook = Logbook(self.accelerator, self.out, args.log_with)
        if self.eval_data is not None and self.accelerator.is_main_process:
            self.evaluator = RunEvaluator(g, args, train_data, self.eval_data, self.out,
                                          self.accelerator.device)

    def _check_resume_compatible(self, directory: Path) -> None:
        manifest = read_manifest(directory)
        g = self.generator
        if manifest["generator"] != g.name:
            raise TrainingError(f"--resume: {directory} was trained with {manifest['generator']!r}"
                                f", not {g.name!r}")
        saved = manifest["config"]
        current = config_to_dict(g.config)
        differ = sorted(k for k in saved if k in current and saved[k] != current[k]
                        and k not in g.derived_config_keys)
        if differ:
            raise TrainingError(f"--resume: the config differs from the checkpoint's in "
                                f"{', '.join(differ)}; resume with the same settings")

    # -- build -------------------------------------------------------------------
    def build(self) -> None:
        args, g, acc = self.args, self.generator, self.accelerator
        g.to(acc.device)
        for module in g.modules().values():
            module.train()
        self.optimizers = dict(g.configure_optimizers(args))
        self.schedulers = {name: make_schedule(opt, args, args.steps)
                           for name, opt in self.optimizers.items()}
        g.ema = None
        if args.ema_decay and g.ema_modules:
            modules = g.modules()
            g.ema = {name: make_ema(modules[name], args) for name in g.ema_modules}
            for ema in g.ema.values():
                ema.to(acc.device)
        if self.resume_from is not None:
            read_training_state(self.resume_from, self._parts())
            apply_optimizer_changes(self.optimizers, self.schedulers, self.resume_changes)
        names = list(g.modules())
        optimizers = list(self.optimizers.values()) if needs_optimizer_wrapper(acc) else []
        prepared = acc.prepare(*g.modules().values(), *optimizers)
        prepared = prepared if isinstance(prepared, (list, tuple)) else [prepared]
        self.prepared_models = dict(zip(names, prepared[:len(names)]))
        if optimizers:
            self.optimizers = dict(zip(self.optimizers, prepared[len(names):]))
        self.step_generator = torch.Generator(device=acc.device)
        self.loader = make_loader(self.dataset, args, acc.process_index, self.world,
                                  self.start_step * args.grad_accum, acc.device.type == "cuda")

    def _resize(self, total: int, step: int) -> None:
        """A time budget's plan: ``total`` steps, the schedules stretched to end there."""
        self.args = dataclasses.replace(self.args, steps=total)
        self.schedulers = {name: stretch_schedule(opt, self.args, total, step)
                           for name, opt in self.optimizers.items()}

    def _parts(self) -> TrainingParts:
        return TrainingParts(self.generator, self.optimizers, self.schedulers,
                             self.accelerator.scaler)

    # -- the loop ------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current step, save a checkpoint and stop (the first Ctrl-C)."""
        self.stop_requested = True

    def clip(self, optimizer: Any) -> None:
        if self.args.clip_grad and self.accelerator.sync_gradients:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            self.accelerator.clip_grad_norm_(params, self.args.clip_grad)

    def _seed_step(self, step: int, micro: int) -> None:
        seed = derive_seed("train", self.args.seed, step, micro, self.accelerator.process_index)
        # The default generators of the CPU and of this step's device (dropout, plugins'
        # unseeded draws). Not torch.manual_seed: it queues lazy seeding of every backend
        # with a captured stack trace, ~1.5 ms a call.
        torch.default_generator.manual_seed(seed)
        device = self.accelerator.device
        if device.type == "cuda":
            torch.cuda.default_generators[device.index or 0].manual_seed(seed)
        self.step_generator.manual_seed(seed)

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)
        if self.accelerator.sync_gradients:
            for name, opt in self.optimizers.items():
                self.clip(opt)
                opt.step()
                self.schedulers[name].step()
                opt.zero_grad(set_to_none=True)

    def run(self) -> TrainReport:
        from accelerate.utils import send_to_device
        from tqdm.auto import tqdm

        args, g, acc = self.args, self.generator, self.accelerator
        ctx = StepContext(acc, self.prepared_models, self.optimizers, self.schedulers,
                          self.step_generator, args, self.clip)
        models = list(self.prepared_models.values())
        data_iter = iter(self.loader)
        step = self.start_step
        start_time = time.perf_counter()
        window: list[torch.Tensor] = []
        window_scalars: dict[str, list[torch.Tensor]] = {}
        first_loss: float | None = None
        last_loss: float | None = None
        bar = tqdm(total=args.steps, initial=step, disable=not (args.progress and acc.is_main_process),
                   desc=f"train {g.name}", unit="step", dynamic_ncols=True)
        self.last_checkpoint = self.resume_from
        if args.time is not None:  # what earlier parts of a resumed run spent counts
            self.budget = TimeBudget(parse_duration(args.time),
                                     spent=float(self.previous_summary.get("seconds", 0.0)))
        with stop_on_interrupt(self.request_stop):
            while step < self.args.steps:
                if self.stop_requested:
                    break
                for micro in range(args.grad_accum):
                    batch = send_to_device(next(data_iter), acc.device, non_blocking=True)
                    self._seed_step(step, micro)
                    ctx.step = step
                    with acc.accumulate(*models):
                        out = g.training_step(batch, ctx)
                        if not g.manual_optimization:
                            self._optimizer_step(out["loss"])
                for name, ema in (g.ema or {}).items():
                    ema.step(g.modules()[name].parameters())
                step += 1
                window.append(out["loss"].detach() if "loss" in out else torch.zeros(()))
                for key, value in out.items():
                    if key != "loss":
                        window_scalars.setdefault(key, []).append(
                            value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value)))
                bar.update(1)
                self.callbacks.fire("on_step_end", TrainEvent(step, g, self.logbook.last, self.out))
                if self.budget is not None:
                    self._follow_budget(step, bar)
                due_ckpt = self.out is not None and args.checkpoint_every and step % args.checkpoint_every == 0
                if step % args.log_every == 0 or step == args.steps or due_ckpt or step == self.start_step + 1:
                    last_loss = self._log(step, window, window_scalars, bar, start_time)
                    first_loss = last_loss if first_loss is None else first_loss
                    window, window_scalars = [], {}
                if args.sample_every and step % args.sample_every == 0:
                    self._log_samples(step)
                if args.eval_every and step % args.eval_every == 0:
                    self._evaluate(step)
                if due_ckpt:
                    self._save(step)
        bar.close()
        if window:
            last_loss = self._log(step, window, window_scalars, None, start_time)
        seconds = time.perf_counter() - start_time
        args = self.args  # a time budget may have changed the number of steps
        interrupted = step < args.steps and not (self.early_stopped or self.budget_spent)
        if not interrupted and self.evaluator is not None and \
                not (args.eval_every and step % args.eval_every == 0):
            self._evaluate(step)
        self._finish_summary(step, seconds, last_loss)
        if self.out is not None and (self.last_checkpoint is None
                                     or self.last_checkpoint.name != f"{STEP_PREFIX}{step:08d}"):
            self._save(step)
        if self.out is not None and not interrupted and acc.is_main_process:
            save_checkpoint(g, self.out / FINAL_MODEL)
        acc.wait_for_everyone()
        done = step - self.start_step
        return TrainReport(
            steps=step, start_step=self.start_step, first_loss=first_loss, final_loss=last_loss,
            seconds=seconds, steps_per_second=done / seconds if seconds > 0 else 0.0,
            out=str(self.out) if self.out else None,
            checkpoint=str(self.last_checkpoint) if self.last_checkpoint else None,
            history=self.logbook.history, eval=dict(self.eval_results), interrupted=interrupted)

    def _follow_budget(self, step: int, bar: Any) -> None:
        total = self.budget.plan(step)
        if total is not None and total != self.args.steps:
            self._resize(total, step)
            bar.total = total
        if self.budget.expired and step < self.args.steps:
            print(f"Time budget spent at step {step}: finishing the run", file=sys.stderr)
            self.budget_spent = self.stop_requested = True

    def _log(self, step: int, window: list, scalars: dict, bar: Any, start: float) -> float:
        lr = float(next(iter(self.schedulers.values())).get_last_lr()[0])
        return self.logbook.step(step, window, scalars, lr, start, bar, self.last_checkpoint)

    def _log_samples(self, step: int) -> None:
        if self.generator.modality == "image" and self.logbook.writes:
            self.logbook.images(step, [s.output for s in iter_samples(
                self.generator, n=16, seed=self.args.seed)])

    def _evaluate(self, step: int) -> None:
        if self.evaluator is None:
            return
        results, is_best = self.evaluator.evaluate(step)
        if is_best and self.args.keep_best and self.out is not None:
            self._summary_at(step)
            save_checkpoint(self.generator, self.out / BEST)
        self.eval_results = results
        self.logbook.evaluation(step, results)
        self.callbacks.fire("on_evaluate", TrainEvent(step, self.generator, results, self.out,
                                                      is_best=is_best))
        if self.evaluator.should_stop:
            print(f"Early stop at step {step}: no better {self.evaluator.metric} in "
                  f"{self.args.early_stop} evaluations (best {self.evaluator.best:.4g} at "
                  f"step {self.evaluator.best_step})", file=sys.stderr)
            self.early_stopped = self.stop_requested = True

    def _finish_summary(self, step: int, seconds: float, last_loss: float | None) -> None:
        args, acc = self.args, self.accelerator
        previous = self.previous_summary
        self.generator.training_summary = {
            "data": self.data_name, "steps": step, "batch_size": args.batch_size,
            "grad_accum": args.grad_accum, "lr": args.lr, "lr_schedule": args.lr_schedule,
            "seed": args.seed, "device": str(acc.device),
            "device_name": device_name(acc.device), "precision": str(acc.mixed_precision),
            "num_processes": self.world, "threads": torch.get_num_threads(),
            "compiled": compiles(acc),
            "ema_decay": args.ema_decay,
            "seconds": round(float(previous.get("seconds", 0.0)) + seconds, 2),
            "final_loss": last_loss,
            "resumes": previous.get("resumes", []) + (
                [{"step": self.start_step, "changed": self.resume_changes}]
                if self.resume_from is not None else []),
            "last_metrics": self.logbook.history[-1] if self.logbook.history else {},
            "eval": self.eval_results, "versions": library_versions(),
            "init_from": self.init_origin or previous.get("init_from"),
            "evaluation": self.evaluator.summary() if self.evaluator else None,
            "early_stopped": self.early_stopped, "augment": args.augment,
            "time_budget": self.budget.seconds if self.budget else None,
            "budget_spent": self.budget_spent,
        }

    def _summary_at(self, step: int) -> None:
        """The training summary a checkpoint written at ``step`` carries."""
        if not self.generator.training_summary:
            history = self.logbook.history
            self._finish_summary(step, 0.0, history[-1]["loss"] if history else None)
        else:
            self.generator.training_summary["steps"] = step

    def _save(self, step: int) -> None:
        """A training checkpoint at ``step`` (main process writes; everyone waits)."""
        acc = self.accelerator
        if self.logbook.history and not math.isfinite(self.logbook.history[-1]["loss"]):
            return
        path = self.out / CHECKPOINTS / f"{STEP_PREFIX}{step:08d}"
        if acc.is_main_process:
            self._summary_at(step)
            meta = {"step": step, "batches_seen": step * self.args.grad_accum,
                    "args": config_to_dict(self.args), "world": self.world}
            save_checkpoint(self.generator, path,
                            write_extra=lambda tmp: write_training_state(tmp, self._parts(), meta))
            self._prune()
            self.callbacks.fire("on_checkpoint", TrainEvent(step, self.generator, self.logbook.last,
                                                            self.out, path=path))
        acc.wait_for_everyone()
        self.last_checkpoint = path

    def _prune(self) -> None:
        if not self.args.keep:
            return
        for old in step_checkpoints(self.out)[:-self.args.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        """Unwrap the modules and free the engine (before a process group is destroyed)."""
        if self.run_dir_claim is not None:
            self.run_dir_claim.close()
        acc = self.accelerator
        if acc is None:  # setup stopped before the accelerator existed
            return
        for module in self.prepared_models.values():
            acc.unwrap_model(module, keep_fp32_wrapper=False)
        with contextlib.suppress(Exception):
            acc.end_training()
        self.prepared_models, self.optimizers, self.loader = {}, {}, None
        if self.world > 1:  # free DDP state before the process group goes (gloo aborts at exit)
            acc.free_memory()
            gc.collect()


def train(generator: GeneratorContract, data: Any = None,
          data_options: Mapping[str, Any] | None = None, callbacks: Iterable[Any] = (),
          **kwargs: Any) -> TrainReport:
    """Train ``generator`` on ``data``; see :class:`TrainArgs` for the keywords.

    ``data_options`` go to the data source (e.g. ``{"column": "text"}`` for ``hf:PATH``);
    ``callbacks`` are objects with ``on_step_end`` / ``on_evaluate`` / ``on_checkpoint``
    (see :mod:`genkit.train.callbacks`), called besides the plugins' own.
    """
    args = resolve_args(generator, kwargs)
    given = {k: v for k, v in kwargs.items() if v is not None}
    engine = Engine(generator, args, data, data_options, given, callbacks)
    try:
        engine.setup()
        engine.build()
        report = engine.run()
    finally:
        engine.close()
    for module in generator.modules().values():
        module.eval()
    return report
