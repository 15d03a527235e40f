"""``genkit train``: train a generator and write checkpoints to a run directory."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import click

from genkit.cli.group import INTERRUPTED, command_argv
from genkit.cli.options import assignments, config_option
from genkit.cli.plugin_help import TrainHelp
from genkit.data.types import DATA_OPTIONS
from genkit.devices import apply_threads
from genkit.discovery.registry import get_registry
from genkit.errors import ConfigError
from genkit.launch import end_process_group, launch_training, watch_parent, without_options
from genkit.store.checkpoint import read_manifest, resolve_checkpoint_dir, resume_point


@click.command(cls=TrainHelp)
@config_option()
@click.option("--plugin", "plugin", help="Generator family to train (see 'genkit plugins'); "
              "with --help, lists its config keys.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Run directory: checkpoints/, model/, logs/, metrics.jsonl.")
@click.option("--data", help="Data source: digits, folder:PATH, text:PATH, pydoc, "
              "hf:PATH|ORG/NAME (data options: --set split=, image_column=, ...).")
@click.option("--steps", type=int, help="Optimizer steps to train for.")
@click.option("--epochs", type=int, help="Whole passes over the data (instead of --steps).")
@click.option("--time", help="Train for this wall-clock time (10m, 1h30m, 600): sets the steps.")
@click.option("--batch-size", type=int, help="Global batch size of one step.")
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N, mps.")
@click.option("--precision", type=click.Choice(["auto", "no", "fp16", "bf16"]),
              help="Mixed precision (auto: bf16 on a CUDA GPU that supports it).")
@click.option("--seed", type=int, help="Seed of the data order and the step randomness.  [default: 0]")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
@click.option("--resume-from", type=click.Path(path_type=Path),
              help="Continue from this training checkpoint (checkpoints/step-N) instead.")
@click.option("--init-from", type=click.Path(path_type=Path),
              help="Start a new run from this checkpoint's weights (and config).")
@click.option("--checkpoint-every", type=int, help="Save a checkpoint every N steps.")
@click.option("--keep", type=int, help="Keep only the newest N checkpoints.")
@click.option("--grad-accum", type=int, help="Gradient accumulation steps.")
@click.option("--clip-grad", type=float, help="Clip the gradient norm to this value.")
@click.option("--warmup-steps", type=int, help="Learning-rate warm-up steps.")
@click.option("--lr-schedule", type=click.Choice(["constant", "linear", "cosine"]))
@click.option("--ema-decay", type=float, help="EMA decay of the weights (0 turns EMA off).")
@click.option("--num-workers", type=int,
              help="DataLoader worker processes (default: automatic, min(4, cores-1) for "
                   "image folders).")
@click.option("--log-every", type=int, help="Log every N steps.")
@click.option("--sample-every", type=int, help="Log an image grid every N steps.")
@click.option("--eval-every", type=int, help="Run held-out evaluation every N steps.")
@click.option("--eval-metric", help="The figure that picks the best model (lower is better).")
@click.option("--eval-samples", type=int, help="Samples per evaluation (FD, class coverage).")
@click.option("--keep-best", is_flag=True, default=None,
              help="Keep the best evaluated model as OUT/best/.")
@click.option("--early-stop", type=int, help="Stop after N evaluations without improvement.")
@click.option("--augment", is_flag=True, default=None,
              help="Random flips, crops and colour jitter per image (images).")
@click.option("--threads", type=int, help="torch CPU threads (default: the free cores).")
@click.option("--compile/--no-compile", "compile", default=None,
              help="torch.compile the models (default: on CUDA for runs of 500+ steps; "
                   "kernels are cached for the next run).")
@click.option("--log-with", type=click.Choice(["tensorboard", "wandb", "mlflow", "none"]))
@click.option("--num-processes", type=int, default=1, show_default=True,
              help="Train with N processes (DDP through accelerate launch).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Model config value (repeatable), e.g. --set num_classes=10.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train(plugin: str | None, out: Path, data: str | None, num_processes: int,
          sets: tuple[str, ...], no_progress: bool, **options: Any) -> None:
    """Train a generator and write checkpoints to --out.

    \b
    Examples:
      genkit train --plugin diffusion --out runs/d --steps 2000 --set num_classes=10
      genkit train --plugin gpt --data pydoc --out runs/g --steps 3000
      genkit train --out runs/d --resume --steps 4000
      genkit train --plugin vae --out runs/v --num-processes 2
    """
    if num_processes < 1:
        raise click.BadParameter(f"must be at least 1, got {num_processes}",
                                 param_hint="--num-processes")
    if num_processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        code = launch_training(without_options(command_argv(), ("--num-processes",)),
                               num_processes, options.get("precision"))
        if code:
            sys.exit(code)
        return
    watch_parent()
    threads = apply_threads(options.pop("threads"), num_processes)
    generator, data_options = _generator_for_training(
        plugin, out, options.get("resume") or options.get("resume_from") is not None,
        options.get("resume_from") or options.get("init_from"), assignments(sets),
        options["seed"] or 0)
    report = generator.train(data, out=out, progress=not no_progress,
                             data_options=data_options, threads=threads, **options)
    end_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        verb = "stopped at" if report.interrupted else "trained to"
        loss = "no new steps" if report.final_loss is None else f"loss {report.final_loss:.4g}"
        click.echo(f"{generator.name}: {verb} step {report.steps} in {report.seconds:.1f} s "
                   f"({report.steps_per_second:.2f} steps/s), {loss}; "
                   f"checkpoint {report.checkpoint}", err=True)
        if report.interrupted:
            click.echo(f"Resume with: genkit train --out {out} --resume", err=True)
            sys.exit(INTERRUPTED)


def _generator_for_training(plugin: str | None, out: Path, resume: bool,
                            source: Path | None, sets: dict[str, str],
                            seed: int) -> tuple[Any, dict[str, str]]:
    """The generator to train and the data-source options found among the ``--set`` values.

    Resuming, or starting from a checkpoint (``--init-from``), the family and the config
    come from that checkpoint; ``--set`` values override the config where they may.
    """
    from genkit.api import create  # lazy: the API imports torch

    base: dict[str, Any] = {}
    if resume or source is not None:
        checkpoint = resolve_checkpoint_dir(source) if source is not None else resume_point(out)
        manifest = read_manifest(checkpoint)
        if plugin and plugin != manifest["generator"]:
            raise ConfigError(f"{checkpoint} holds a {manifest['generator']!r} model, not "
                              f"{plugin!r}; drop --plugin")
        plugin, base = manifest["generator"], manifest["config"]
    if not plugin:
        raise click.UsageError("--plugin is required (see 'genkit plugins')")
    cls = get_registry().generator(plugin).load_class()
    base = cls.saved_config(base) if base else base
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    data_options = {k: v for k, v in sets.items() if k in DATA_OPTIONS and k not in fields}
    config = {k: v for k, v in sets.items() if k not in data_options}
    return create(plugin, seed=seed, **{**base, **config}), data_options
