"""The run's ``accelerate.Accelerator``: devices, precision, processes and trackers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genkit.compiling import compile_cache_dir, should_compile
from genkit.config import config_to_dict
from genkit.devices import check_precision, resolve_device
from genkit.errors import ConfigError
from genkit.train.args import TrainArgs, check_tracker_installed
from genkit.train.budget import parse_duration

if TYPE_CHECKING:
    from accelerate import Accelerator


def make_accelerator(args: TrainArgs, out: Path | None, model_config: Any) -> Accelerator:
    """The run's ``Accelerator``: device and precision checked, one fresh state per run
    in a process, trackers started, the batch divisible by the processes."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DataLoaderConfiguration, TorchDynamoPlugin

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = None if distributed else resolve_device(args.device)
    if device is not None:
        precision = check_precision(args.precision, device)
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
    else:  # each process takes a GPU when there are any
        gpu = torch.cuda.is_available() and args.device != "cpu"
        precision = check_precision(args.precision, torch.device("cuda" if gpu else "cpu"))
    if not distributed:
        # A fresh state per run in one process (tests, notebooks). accelerate has no
        # public reset; its own test suite calls these.
        AcceleratorState._reset_state(reset_partial_state=True)
        PartialState._reset_state()
    trackers = None
    if out is not None and args.log_with != "none":
        trackers = args.log_with
        check_tracker_installed(trackers)
    if distributed:  # each process takes its own GPU; without GPUs, gloo on the CPU
        use_cpu = args.device == "cpu" or not torch.cuda.is_available()
    else:
        use_cpu = device.type == "cpu"
    target = device if device is not None else torch.device("cpu" if use_cpu else "cuda")
    dynamo = None  # None: accelerate's own config (``accelerate launch``) decides
    if should_compile(args.compile, target, args.steps,
                      parse_duration(args.time) if args.time is not None else None):
        compile_cache_dir()
        dynamo = TorchDynamoPlugin(backend="inductor")
    elif args.compile is False:
        dynamo = TorchDynamoPlugin(backend="no")
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=precision,
        gradient_accumulation_steps=args.grad_accum,
        log_with=trackers,
        project_dir=str(out / "logs") if out else None,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        dynamo_plugin=dynamo,
    )
    if args.batch_size % accelerator.num_processes:
        raise ConfigError(f"--batch-size {args.batch_size} must be divisible by the number "
                          f"of processes ({accelerator.num_processes})")
    if trackers:
        try:
            accelerator.init_trackers("genkit", config=_flat_config(args, model_config))
        except Exception as exc:  # an optional tracker that is not installed
            raise ConfigError(f"cannot start the {trackers} logger: {exc}; install it or "
                              "use --log-with tensorboard") from None
    return accelerator


def _flat_config(args: TrainArgs, model_config: Any) -> dict[str, Any]:
    values = {f"train/{k}": v for k, v in config_to_dict(args).items()}
    values.update({f"model/{k}": v for k, v in config_to_dict(model_config).items()})
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}


def needs_optimizer_wrapper(accelerator: Accelerator) -> bool:
    """Whether the optimizers must go through ``accelerator.prepare``: for fp16 gradient
    scaling, or a backend (DeepSpeed, XLA, FSDP...) that manages them. Plain one- or
    multi-process runs step their optimizers directly: accelerate's wrapper costs a
    fixed ~0.3 ms a step (an import check in every ``step``), a tenth of a tiny model's
    step, and adds nothing there (the engine steps only when gradients are synchronised)."""
    from accelerate.utils import DistributedType

    plain = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    return accelerator.scaler is not None or accelerator.distributed_type not in plain


def compiles(accelerator: Accelerator) -> bool:
    """Whether ``accelerator.prepare`` compiles the models (genkit's choice or accelerate's
    own config)."""
    from accelerate.utils import DynamoBackend

    plugin = getattr(accelerator.state, "dynamo_plugin", None)
    return plugin is not None and plugin.backend != DynamoBackend.NO
