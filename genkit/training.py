"""The one training engine every plugin runs under, built on Hugging Face ``accelerate``.

A plugin supplies modules, optimizers and one training step; the engine owns the rest:
data order, devices, mixed precision, processes (DDP through ``accelerate launch``),
gradient accumulation and clipping, learning-rate schedule, EMA, checkpoints with exact
resume, guards, progress, TensorBoard logs and ``metrics.jsonl``.

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
import json
import math
import os
import random
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genkit.checkpoint import (
    CHECKPOINTS,
    FINAL_MODEL,
    STEP_PREFIX,
    TRAINING_STATE,
    atomic_write_text,
    read_manifest,
    save_checkpoint,
    step_checkpoints,
)
from genkit.config import build_config, check, config_to_dict
from genkit.errors import CheckpointError, ConfigError, TrainingError
from genkit.seeding import derive_seed

if TYPE_CHECKING:
    import torch

    from genkit.generator import Generator

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
    precision: str = "no"  # no | fp16 | bf16 (accelerate mixed precision)
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
    num_workers: int = 0
    log_every: int = 50
    sample_every: int | None = None  # image grid to TensorBoard every N steps
    eval_every: int | None = None
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
        check(self.num_workers >= 0, "num_workers must be >= 0")
        check(self.log_with in TRACKERS,
              f"--log-with must be one of {', '.join(TRACKERS)}, got {self.log_with!r}")
        check(self.precision in ("no", "fp16", "bf16"),
              f"--precision must be no, fp16 or bf16, got {self.precision!r}")
        check(not self.resume or self.out, "--resume needs --out (the run directory to resume)")


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


class StepContext:
    """What ``Generator.training_step`` gets besides the batch."""

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine
        self.accelerator = engine.accelerator
        self.models: dict[str, torch.nn.Module] = engine.prepared_models
        self.optimizers: dict[str, torch.optim.Optimizer] = engine.optimizers
        self.device = engine.accelerator.device
        self.generator = engine.step_generator
        self.step = 0
        self.args = engine.args

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """Manual optimization: zero the named optimizer's grads, backpropagate ``loss``,
        clip, step the optimizer and its learning-rate schedule."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self._engine.clip(optimizer)
        optimizer.step()
        self._engine.schedulers[name].step()
        optimizer.zero_grad(set_to_none=True)

    def unwrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return self.accelerator.unwrap_model(module)


# ------------------------------------------------------------------------------ data
class SeededBatchSampler:
    """Endless batches of dataset indices for one process.

    Epoch e visits ``randperm(n)`` seeded by (seed, e); global batch b of an epoch is
    ``perm[b*B:(b+1)*B]`` and process r takes its r-th slice. Starting at global batch
    ``start`` (a resume point) skips straight there.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world: int,
                 start: int = 0) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.start = rank, world, start
        self.batches_per_epoch = n // batch_size

    def __iter__(self) -> Iterator[list[int]]:
        import torch

        per_process = self.batch_size // self.world
        epoch, offset = divmod(self.start, self.batches_per_epoch)
        while True:
            gen = torch.Generator().manual_seed(derive_seed("epoch", self.seed, epoch))
            perm = torch.randperm(self.n, generator=gen)
            for b in range(offset, self.batches_per_epoch):
                batch = perm[b * self.batch_size:(b + 1) * self.batch_size]
                yield batch[self.rank * per_process:(self.rank + 1) * per_process].tolist()
            epoch, offset = epoch + 1, 0


def _collate_batched(items: Any) -> Any:
    return items


def make_loader(dataset: Any, args: TrainArgs, rank: int, world: int, start_batch: int,
                pin: bool) -> Any:
    """A DataLoader over ``dataset`` in the seeded order, starting at ``start_batch``."""
    from torch.utils.data import DataLoader

    sampler = SeededBatchSampler(len(dataset), args.batch_size, args.seed, rank, world, start_batch)
    batched = getattr(dataset, "batched", False)  # TensorDictDataset: one gather per batch
    kwargs: dict[str, Any] = {}
    if batched:
        kwargs["collate_fn"] = _collate_batched
    if args.num_workers:
        kwargs.update(num_workers=args.num_workers, persistent_workers=True)
    return DataLoader(dataset, batch_sampler=sampler, pin_memory=pin, **kwargs)


# ------------------------------------------------------------------------------- EMA
def make_ema(module: torch.nn.Module, args: TrainArgs) -> Any:
    """diffusers' EMAModel over ``module``'s parameters (warm-up: decay grows with steps)."""
    from diffusers.training_utils import EMAModel

    return EMAModel(module.parameters(), decay=args.ema_decay, use_ema_warmup=args.ema_warmup,
                    inv_gamma=1.0, power=2 / 3, foreach=True)


@contextlib.contextmanager
def ema_weights(generator: Generator) -> Iterator[None]:
    """Inside the block the EMA'd modules hold their EMA weights (no-op without EMA)."""
    emas = generator.ema or {}
    if not emas or getattr(generator, "_ema_swapped", False):  # none, or already inside
        yield
        return
    modules = generator.modules()
    for name, ema in emas.items():
        ema.store(modules[name].parameters())
        ema.copy_to(modules[name].parameters())
    generator._ema_swapped = True
    try:
        yield
    finally:
        generator._ema_swapped = False
        for name, ema in emas.items():
            ema.restore(modules[name].parameters())


# --------------------------------------------------------------------- training state
def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON."""
    import torch

    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, entry in state["state"].items():
        plain_entry = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
                plain_entry[key] = {"tensor": f"{pid}.{key}"}
            else:
                plain_entry[key] = value
        plain["state"][str(pid)] = plain_entry
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    state = {}
    for pid, entry in plain["state"].items():
        state[int(pid)] = {k: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v
                           for k, v in entry.items()}
    return {"state": state, "param_groups": plain["param_groups"]}


def _module_state(modules: Mapping[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    # clone: tied weights (GPT-2's wte/lm_head) share memory, which safetensors refuses
    return {f"{name}.{k}": v.detach().cpu().clone()
            for name, m in modules.items() for k, v in m.state_dict().items()}


def write_training_state(directory: Path, engine: _Engine, step: int) -> None:
    """Everything an exact resume needs, in safetensors and JSON (no pickle)."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    state_dir = directory / TRAINING_STATE
    state_dir.mkdir()
    save_file(_module_state(engine.generator.modules()), str(state_dir / "online.safetensors"))
    meta: dict[str, Any] = {"step": step, "batches_seen": step * engine.args.grad_accum,
                            "args": config_to_dict(engine.args), "world": engine.world,
                            "optimizers": {}, "schedulers": {}, "ema": {}}
    for name, opt in engine.optimizers.items():
        tensors, plain = _flatten_optimizer(opt.state_dict())
        save_file(tensors, str(state_dir / f"optimizer-{name}.safetensors"))
        meta["optimizers"][name] = plain
        meta["schedulers"][name] = engine.schedulers[name].state_dict()
    for name, ema in (engine.generator.ema or {}).items():
        params = dict(engine.generator.modules()[name].named_parameters())
        save_file({k: s.detach().contiguous().cpu() for k, s in zip(params, ema.shadow_params)},
                  str(state_dir / f"ema-{name}.safetensors"))
        meta["ema"][name] = {"optimization_step": ema.optimization_step, "decay": ema.decay}
    scaler = getattr(engine.accelerator, "scaler", None)
    meta["scaler"] = scaler.state_dict() if scaler is not None else None
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, str(state_dir / "rng.safetensors"))
    meta["python_rng"] = _json_rng(random.getstate())
    np_state = np.random.get_state()
    meta["numpy_rng"] = [np_state[0], np_state[1].tolist(), *np_state[2:]]
    atomic_write_text(state_dir / "state.json", json.dumps(meta) + "\n")


def _json_rng(state: Any) -> Any:
    return [state[0], list(state[1]), state[2]]


def read_training_state(directory: Path, engine: _Engine) -> int:
    """Restore what :func:`write_training_state` saved; return the step to continue from."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    state_dir = directory / TRAINING_STATE
    try:
        meta = json.loads((state_dir / "state.json").read_text())
        online = load_file(str(state_dir / "online.safetensors"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{directory} has no usable training state ({exc}); it cannot "
                              "be resumed: start a new run or pick another --out") from None
    for name, module in engine.generator.modules().items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in online.items()
                                if k.startswith(prefix)})
    for name, opt in engine.optimizers.items():
        tensors = load_file(str(state_dir / f"optimizer-{name}.safetensors"))
        opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizers"][name]))
        engine.schedulers[name].load_state_dict(meta["schedulers"][name])
    for name, ema in (engine.generator.ema or {}).items():
        shadow = load_file(str(state_dir / f"ema-{name}.safetensors"))
        params = [n for n, _ in engine.generator.modules()[name].named_parameters()]
        device = ema.shadow_params[0].device if ema.shadow_params else "cpu"
        ema.shadow_params = [shadow[n].to(device) for n in params]
        ema.optimization_step = meta["ema"][name]["optimization_step"]
    scaler = getattr(engine.accelerator, "scaler", None)
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    rng = load_file(str(state_dir / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    py = meta["python_rng"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_rng = meta["numpy_rng"]
    np.random.set_state((np_rng[0], np.asarray(np_rng[1], dtype=np.uint32), *np_rng[2:]))
    return int(meta["step"])


# ---------------------------------------------------------------------------- engine
def resolve_args(generator: Generator, kwargs: Mapping[str, Any]) -> TrainArgs:
    """TrainArgs from engine defaults < the family's ``train_defaults`` < the caller's."""
    values = {**generator.train_defaults,
              **{k: v for k, v in kwargs.items() if v is not None}}
    if values.get("out") is not None:
        values["out"] = str(values["out"])
    return build_config(TrainArgs, values, what="training option")


def _check_out_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".genkit-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"cannot write to --out {out}: {exc.strerror or exc}; choose a "
                            "writable directory") from None


class _Engine:
    """One training run. Use :func:`train`."""

    def __init__(self, generator: Generator, args: TrainArgs, data: Any,
                 data_options: Mapping[str, Any] | None = None) -> None:
        self.generator, self.args, self.data_spec = generator, args, data
        self.data_options = dict(data_options or {})
        self.out = Path(args.out) if args.out else None
        self.stop_requested = False
        self.history: list[dict[str, float]] = []

    # -- setup -------------------------------------------------------------------
    def setup(self) -> None:
        from genkit.data import load_data

        args, g = self.args, self.generator
        if self.out is not None:
            _check_out_writable(self.out)
            if not args.resume and step_checkpoints(self.out):
                raise TrainingError(f"{self.out} already holds training checkpoints; pass "
                                    "--resume to continue that run, or choose a new --out")
        self.resume_from = self._find_resume_point()
        spec = self.data_spec if self.data_spec is not None else g.default_data
        if spec is None:
            raise ConfigError(f"generator {g.name!r} has no default data; pass --data")
        self.data_name = spec if isinstance(spec, str) else getattr(spec, "name", "data")
        train_data = load_data(spec, split="train", **self.data_options)
        self.eval_data = None
        if type(g).evaluate is not _base_evaluate() and isinstance(spec, str):
            self.eval_data = load_data(spec, split="test", **self.data_options)
        self.previous_summary: dict[str, Any] = {}
        if self.resume_from is not None:
            self._check_resume_compatible(self.resume_from)
            self.previous_summary = read_manifest(self.resume_from).get("training") or {}
            g.load_weights(self.resume_from)  # tokenizers and other non-tensor state
        self.dataset = g.make_dataset(train_data, "train")
        if len(self.dataset) < args.batch_size:
            raise TrainingError(f"--batch-size {args.batch_size} is larger than the data set "
                                f"({len(self.dataset)} examples); use a smaller batch size")
        if args.epochs:
            per_epoch = len(self.dataset) // (args.batch_size * args.grad_accum)
            self.args = args = dataclasses.replace(args, steps=max(1, per_epoch * args.epochs))
        if g.manual_optimization and args.grad_accum > 1:
            raise ConfigError(f"generator {g.name!r} steps its own optimizers: "
                              "gradient accumulation is not supported; use grad_accum=1")
        self._make_accelerator()

    def _find_resume_point(self) -> Path | None:
        if not self.args.resume or self.out is None:
            return None
        steps = step_checkpoints(self.out)
        if not steps:
            raise TrainingError(f"--resume: {self.out} holds no complete training checkpoint "
                                "to resume from; drop --resume to start a new run")
        return steps[-1]

    def _check_resume_compatible(self, directory: Path) -> None:
        manifest = read_manifest(directory)
        g = self.generator
        if manifest["generator"] != g.name:
            raise TrainingError(f"--resume: {directory} was trained with {manifest['generator']!r}"
                                f", not {g.name!r}")
        saved = manifest["config"]
        current = config_to_dict(g.config)
        differ = sorted(k for k in saved if k in current and saved[k] != current[k]
                        and k not in getattr(g, "derived_config_keys", ()))
        if differ:
            raise TrainingError(f"--resume: the config differs from the checkpoint's in "
                                f"{', '.join(differ)}; resume with the same settings")

    def _make_accelerator(self) -> None:
        import torch
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState, PartialState
        from accelerate.utils import DataLoaderConfiguration

        from genkit.devices import check_precision, resolve_device

        args = self.args
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        device = None if distributed else resolve_device(args.device)
        if device is not None:
            check_precision(args.precision, device)
            if device.type == "cuda" and device.index is not None:
                torch.cuda.set_device(device)
        if not distributed:  # a fresh state per run in one process (tests, notebooks)
            AcceleratorState._reset_state(reset_partial_state=True)
            PartialState._reset_state()
        trackers = None
        if self.out is not None and args.log_with != "none":
            trackers = args.log_with
            _check_tracker_installed(trackers)
        if distributed:  # each process takes its own GPU; without GPUs, gloo on the CPU
            use_cpu = args.device == "cpu" or not torch.cuda.is_available()
        else:
            use_cpu = device.type == "cpu"
        self.accelerator = Accelerator(
            cpu=use_cpu,
            mixed_precision=args.precision,
            gradient_accumulation_steps=args.grad_accum,
            log_with=trackers,
            project_dir=str(self.out / "logs") if self.out else None,
            dataloader_config=DataLoaderConfiguration(split_batches=True),
        )
        self.world = self.accelerator.num_processes
        if args.batch_size % self.world:
            raise ConfigError(f"--batch-size {args.batch_size} must be divisible by the number "
                              f"of processes ({self.world})")
        if trackers:
            try:
                self.accelerator.init_trackers("genkit", config=_flat_config(self))
            except Exception as exc:  # an optional tracker that is not installed
                raise ConfigError(f"cannot start the {trackers} logger: {exc}; install it or "
                                  "use --log-with tensorboard") from None

    def build(self) -> None:
        import torch
        from transformers import get_scheduler

        args, g, acc = self.args, self.generator, self.accelerator
        g._device = acc.device
        g.to(acc.device)
        for module in g.modules().values():
            module.train()
        self.optimizers = dict(g.configure_optimizers(args))
        total = args.steps
        self.schedulers = {
            name: get_scheduler(
                "constant_with_warmup" if args.lr_schedule == "constant" else args.lr_schedule,
                optimizer=opt, num_warmup_steps=args.warmup_steps, num_training_steps=total)
            for name, opt in self.optimizers.items()}
        g.ema = None
        if args.ema_decay and g.ema_modules:
            modules = g.modules()
            g.ema = {name: make_ema(modules[name], args) for name in g.ema_modules}
            for ema in g.ema.values():
                ema.to(acc.device)
        self.start_step = 0
        if self.resume_from is not None:
            self.start_step = read_training_state(self.resume_from, self)
        names = list(g.modules())
        prepared = acc.prepare(*g.modules().values(), *self.optimizers.values())
        prepared = prepared if isinstance(prepared, (list, tuple)) else [prepared]
        self.prepared_models = dict(zip(names, prepared[:len(names)]))
        self.optimizers = dict(zip(self.optimizers, prepared[len(names):]))
        self.step_generator = torch.Generator(device=acc.device)
        self.loader = make_loader(self.dataset, args, acc.process_index, self.world,
                                  self.start_step * args.grad_accum, acc.device.type == "cuda")
        self.params = {name: [p for group in opt.param_groups for p in group["params"]]
                       for name, opt in self.optimizers.items()}

    # -- the loop ------------------------------------------------------------------
    def clip(self, optimizer: Any) -> None:
        if self.args.clip_grad and self.accelerator.sync_gradients:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            self.accelerator.clip_grad_norm_(params, self.args.clip_grad)

    def _seed_step(self, step: int, micro: int) -> None:
        import torch

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
        import torch
        from accelerate.utils import send_to_device
        from tqdm.auto import tqdm

        args, g, acc = self.args, self.generator, self.accelerator
        ctx = StepContext(self)
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
        self.last_checkpoint: Path | None = self.resume_from
        self.eval_results: dict[str, float] = {}
        with self._interrupt_handler():
            while step < args.steps:
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
        interrupted = step < args.steps
        if not interrupted and self.eval_data is not None and \
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
            history=self.history, eval=dict(self.eval_results), interrupted=interrupted)

    def _log(self, step: int, window: list, scalars: dict, bar: Any, start: float) -> float:
        import torch

        loss_value = torch.stack(window).float().mean()
        if self.world > 1:
            loss_value = self.accelerator.reduce(loss_value.to(self.accelerator.device), "mean")
        loss = float(loss_value)
        if not math.isfinite(loss):
            last = f"; the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else ""
            raise TrainingError(f"the loss became {loss} at step {step}{last}; lower --lr, "
                                "set clip_grad, or check the data")
        record = {"step": step, "loss": loss,
                  "lr": float(next(iter(self.schedulers.values())).get_last_lr()[0]),
                  "time": round(time.perf_counter() - start, 3)}
        for key, values in scalars.items():
            record[key] = float(torch.stack(values).float().mean())
        self.history.append(record)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if self.accelerator.is_main_process and self.out is not None:
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            if self.args.log_with != "none":
                self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
        return loss

    def _log_samples(self, step: int) -> None:
        if self.generator.modality != "image" or not self.accelerator.is_main_process:
            return
        if self.out is None or self.args.log_with != "tensorboard":
            return
        import numpy as np

        from genkit.sampling import make_grid

        grid = make_grid(self.generator.sample(16, seed=self.args.seed))
        tracker = self.accelerator.get_tracker("tensorboard", unwrap=True)
        tracker.add_image("samples", np.asarray(grid.convert("RGB")), step, dataformats="HWC")
        for module in self.generator.modules().values():
            module.train()

    def _evaluate(self, step: int) -> None:
        if self.eval_data is None or not self.accelerator.is_main_process:
            return
        import torch

        g = self.generator
        with torch.no_grad(), g.sampling_weights():
            for module in g.modules().values():
                module.eval()
            results = dict(g.evaluate(self.eval_data))
            for module in g.modules().values():
                module.train()
        self.eval_results = results
        if self.history:
            self.history[-1].update({f"eval_{k}": v for k, v in results.items()})
        if self.out is not None:
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, **{f"eval_{k}": v for k, v in results.items()}})
                         + "\n")
            if self.args.log_with != "none":
                self.accelerator.log({f"eval/{k}": v for k, v in results.items()}, step=step)

    def _finish_summary(self, step: int, seconds: float, last_loss: float | None) -> None:
        from genkit.checkpoint import library_versions

        args, acc = self.args, self.accelerator
        previous = self.previous_summary
        self.generator.training_summary = {
            "data": self.data_name, "steps": step, "batch_size": args.batch_size,
            "grad_accum": args.grad_accum, "lr": args.lr, "lr_schedule": args.lr_schedule,
            "seed": args.seed, "device": str(acc.device),
            "device_name": _device_name(acc.device), "precision": args.precision,
            "num_processes": self.world, "ema_decay": args.ema_decay,
            "seconds": round(float(previous.get("seconds", 0.0)) + seconds, 2),
            "final_loss": last_loss,
            "last_metrics": self.history[-1] if self.history else {},
            "eval": self.eval_results, "versions": library_versions(),
        }

    def _save(self, step: int) -> None:
        """A training checkpoint at ``step`` (main process writes; everyone waits)."""
        acc = self.accelerator
        if self.history and not math.isfinite(self.history[-1]["loss"]):
            return
        path = self.out / CHECKPOINTS / f"{STEP_PREFIX}{step:08d}"
        if acc.is_main_process:
            if not self.generator.training_summary:
                self._finish_summary(step, 0.0, self.history[-1]["loss"] if self.history else None)
            else:
                self.generator.training_summary["steps"] = step
            save_checkpoint(self.generator, path,
                            write_extra=lambda tmp: write_training_state(tmp, self, step))
            self._prune()
        acc.wait_for_everyone()
        self.last_checkpoint = path

    def _prune(self) -> None:
        import shutil

        if not self.args.keep:
            return
        for old in step_checkpoints(self.out)[:-self.args.keep]:
            shutil.rmtree(old, ignore_errors=True)

    @contextlib.contextmanager
    def _interrupt_handler(self) -> Iterator[None]:
        """First Ctrl-C: finish the step, save a checkpoint, stop. Second: stop at once."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def close(self) -> None:
        """Unwrap the modules and free the engine (before a process group is destroyed)."""
        import gc

        acc = getattr(self, "accelerator", None)
        if acc is None or not hasattr(self, "world"):
            return
        for name in list(getattr(self, "prepared_models", {})):
            acc.unwrap_model(self.prepared_models[name], keep_fp32_wrapper=False)
        with contextlib.suppress(Exception):
            acc.end_training()
        self.prepared_models, self.optimizers, self.loader = {}, {}, None
        if self.world > 1:  # free DDP state before the process group goes (NOTES: SIGABRT)
            acc.free_memory()
            gc.collect()


def _check_tracker_installed(name: str) -> None:
    import importlib.util

    module = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"--log-with {name} needs the {module} package: pip install {module} "
                          "(or use --log-with tensorboard)")


def _base_evaluate() -> Any:
    from genkit.generator import Generator

    return Generator.evaluate


def _device_name(device: Any) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _flat_config(engine: _Engine) -> dict[str, Any]:
    values = {f"train/{k}": v for k, v in config_to_dict(engine.args).items()}
    values.update({f"model/{k}": v for k, v in config_to_dict(engine.generator.config).items()})
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}


def train(generator: Generator, data: Any = None, data_options: Mapping[str, Any] | None = None,
          **kwargs: Any) -> TrainReport:
    """Train ``generator`` on ``data``; see :class:`TrainArgs` for the keywords.

    ``data_options`` go to the data source (e.g. ``{"column": "text"}`` for ``hf:PATH``).
    """
    args = resolve_args(generator, kwargs)
    engine = _Engine(generator, args, data, data_options)
    try:
        engine.setup()
        engine.build()
        report = engine.run()
    finally:
        engine.close()
    for module in generator.modules().values():
        module.eval()
    return report
