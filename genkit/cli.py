"""The ``genkit`` command line: thin click commands over the Python API.

Start-up is light: neither ``genkit --help`` nor ``genkit plugins`` imports torch. User
errors print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from genkit import __version__
from genkit.errors import GenkitError

USER_ERROR = 2
INTERRUPTED = 130


class GenkitGroup(click.Group):
    """A click group that turns genkit's errors into one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GenkitError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(USER_ERROR)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(INTERRUPTED)


@click.group(cls=GenkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genkit")
def cli() -> None:
    """genkit: train and sample generative models (diffusion, GAN, VAE, GPT, and plugins).

    \b
    Quick start:
      genkit sample --plugin diffusion -n 16 --out samples/
      genkit train --plugin diffusion --out runs/d --steps 2000
      genkit plugins
    """


# ------------------------------------------------------------------------------ helpers
def _registry() -> Any:
    from genkit.registry import get_registry

    return get_registry()


def _assignments(values: tuple[str, ...]) -> dict[str, str]:
    from genkit.config import parse_assignments

    return parse_assignments(values)


def _extra_options(args: list[str]) -> dict[str, Any]:
    """``--steps 50 --scheduler=ddim --flag`` → {"steps": "50", "scheduler": "ddim", "flag": "true"}."""
    options: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise click.UsageError(f"unexpected argument {arg!r}")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
                i += 1
            else:
                value = "true"
        options[key.replace("-", "_")] = value
        i += 1
    return options


def _forward_argv(drop: tuple[str, ...]) -> list[str]:
    """This command's argv without the options in ``drop`` (and their values)."""
    argv = sys.argv[2:]
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in drop:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


# ------------------------------------------------------------------------------ plugins
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed plugins, their generators and their status.

    \b
    Example:
      genkit plugins
      GENKIT_DISABLE_PLUGINS=gan genkit plugins --json
    """
    registry = _registry()
    infos = sorted(registry.plugins.values(), key=lambda p: p.name)
    if as_json:
        specs = {s.name: s for s in registry.generator_specs()}
        rows = []
        for info in infos:
            row = info.as_dict()
            row["generators"] = [
                {"name": g, "modality": specs[g].modality, "summary": specs[g].summary}
                for g in info.generators if g in specs]
            rows.append(row)
        click.echo(json.dumps(rows, indent=2))
        return
    if not infos:
        click.echo("No plugins installed.")
        return
    rows = [("PLUGIN", "DISTRIBUTION", "GENERATORS", "STATUS")]
    rows += [(info.name, f"{info.distribution or '-'} {info.version or ''}".strip(),
              ", ".join(info.generators) or "-", info.status) for info in infos]
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    for name, dist, gens, status in rows:  # status last: a failure reason can be long
        click.echo(f"{name:<{widths[0]}}  {dist:<{widths[1]}}  {gens:<{widths[2]}}  {status}")


# -------------------------------------------------------------------------------- train
@cli.command()
@click.option("--plugin", "plugin", help="Generator family to train (see 'genkit plugins').")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Run directory: checkpoints/, model/, logs/, metrics.jsonl.")
@click.option("--data", help="Data source: digits, folder:PATH, text:PATH, pydoc, hf:PATH.")
@click.option("--steps", type=int, help="Optimizer steps to train for.")
@click.option("--epochs", type=int, help="Whole passes over the data (instead of --steps).")
@click.option("--batch-size", type=int, help="Global batch size of one step.")
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N, mps.")
@click.option("--precision", type=click.Choice(["no", "fp16", "bf16"]), help="Mixed precision.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
@click.option("--checkpoint-every", type=int, help="Save a checkpoint every N steps.")
@click.option("--keep", type=int, help="Keep only the newest N checkpoints.")
@click.option("--grad-accum", type=int, help="Gradient accumulation steps.")
@click.option("--clip-grad", type=float, help="Clip the gradient norm to this value.")
@click.option("--warmup-steps", type=int, help="Learning-rate warm-up steps.")
@click.option("--lr-schedule", type=click.Choice(["constant", "linear", "cosine"]))
@click.option("--ema-decay", type=float, help="EMA decay of the weights (0 turns EMA off).")
@click.option("--num-workers", type=int, help="DataLoader worker processes.")
@click.option("--log-every", type=int, help="Log every N steps.")
@click.option("--sample-every", type=int, help="Log an image grid every N steps.")
@click.option("--eval-every", type=int, help="Run held-out evaluation every N steps.")
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
    if num_processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        _launch_training(num_processes, options.get("precision"))
        return
    generator, data_options = _generator_for_training(plugin, out, options.get("resume", False),
                                                      _assignments(sets), options["seed"])
    report = generator.train(data, out=out, progress=not no_progress,
                             data_options=data_options, **options)
    _end_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        verb = "stopped at" if report.interrupted else "trained to"
        click.echo(f"{generator.name}: {verb} step {report.steps} in {report.seconds:.1f} s "
                   f"({report.steps_per_second:.2f} steps/s), loss {report.final_loss:.4g}; "
                   f"checkpoint {report.checkpoint}", err=True)
        if report.interrupted:
            click.echo(f"Resume with: genkit train --out {out} --resume", err=True)
            sys.exit(INTERRUPTED)


def _end_process_group() -> None:
    """Leave the process group cleanly under ``accelerate launch`` (avoids gloo aborts at exit)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import gc

    import torch.distributed as dist

    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _generator_for_training(plugin: str | None, out: Path, resume: bool,
                            sets: dict[str, str], seed: int) -> tuple[Any, dict[str, str]]:
    """The generator to train and the data-source options found among the ``--set`` values."""
    import dataclasses

    import genkit
    from genkit.checkpoint import read_manifest, step_checkpoints
    from genkit.data import DATA_OPTIONS
    from genkit.errors import ConfigError

    base: dict[str, Any] = {}
    if resume:
        steps = step_checkpoints(out)
        if not steps:
            raise ConfigError(f"--resume: {out} holds no training checkpoint; drop --resume "
                              "to start a new run")
        manifest = read_manifest(steps[-1])
        if plugin and plugin != manifest["generator"]:
            raise ConfigError(f"--resume: {out} is a {manifest['generator']!r} run, not {plugin!r}")
        plugin, base = manifest["generator"], manifest["config"]
    if not plugin:
        raise click.UsageError("--plugin is required (see 'genkit plugins')")
    fields = {f.name for f in dataclasses.fields(_registry().generator(plugin).load_class().Config)}
    data_options = {k: v for k, v in sets.items() if k in DATA_OPTIONS and k not in fields}
    config = {k: v for k, v in sets.items() if k not in data_options}
    return genkit.create(plugin, seed=seed, **{**base, **config}), data_options


def _launch_training(processes: int, precision: str | None) -> None:
    """Re-run this command under ``accelerate launch`` with ``processes`` processes."""
    import subprocess

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", precision or "no", "--dynamo_backend", "no",
           "-m", "genkit", "train", *_forward_argv(("--num-processes",))]
    code = subprocess.call(cmd)
    if code:
        sys.exit(code)


# ------------------------------------------------------------------------------- sample
@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--plugin", help="Generator family (read from the checkpoint when left out).")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Checkpoint or run directory (default: the plugin's shipped model).")
@click.option("-n", "n", type=int, help="Number of samples.  [default: 16 images, 1 text]")
@click.option("--batch-size", type=int, help="Samples per generation batch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sample i uses (seed, i).")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output directory (images default to samples/; text goes to stdout).")
@click.option("--format", "fmt", type=click.Choice(["png", "npy", "jsonl", "txt"]),
              help="Sample files: png|npy for images, jsonl|txt for text.")
@click.option("--grid", type=click.Path(path_type=Path), help="Contact sheet of the first images.")
@click.option("--prompt", help="Prompt (text-conditioned generators).")
@click.option("--prompts", "prompts_file", type=click.Path(), help="File of prompts, one a line.")
@click.option("--label", type=int, help="Class label (class-conditional generators).")
@click.option("--labels", help="Comma list of labels to spread the samples over.")
@click.option("--labels-file", type=click.Path(), help="File of labels, one a line.")
@click.option("--per-condition", type=int, help="Samples per label/prompt (sets -n).")
@click.option("--device", default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace samples of a different run in --out.")
@click.option("--shard", help="Do only share i/K of the samples (for jobs across machines).")
@click.option("--num-processes", type=int, default=1, show_default=True,
              help="Split the work over N processes.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Sampling option (repeatable); options also work as --key value.")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def sample(ctx: click.Context, plugin: str | None, checkpoint: Path | None, n: int | None,
           batch_size: int | None, seed: int, out: Path | None, fmt: str | None,
           grid: Path | None, prompt: str | None, prompts_file: str | None, label: int | None,
           labels: str | None, labels_file: str | None, per_condition: int | None, device: str,
           overwrite: bool, shard: str | None, num_processes: int, sets: tuple[str, ...],
           no_progress: bool) -> None:
    """Generate samples from a checkpoint (or a plugin's shipped default model).

    Sampling options of the plugin pass straight through, e.g. --scheduler ddim --steps 50
    for diffusion or --temperature 0.8 --max-new-tokens 200 for gpt. Rerunning the same
    command into the same --out resumes and writes only the missing samples.

    \b
    Examples:
      genkit sample --plugin diffusion -n 16 --out samples/
      genkit sample --plugin diffusion --labels 0,1,2 --per-condition 100 --out synth/
      genkit sample --plugin gpt --prompt "The return statement" --max-new-tokens 120
      genkit sample --checkpoint runs/d -n 10000 --batch-size 256 --out big/ --num-processes 2
    """
    options = {**_assignments(sets), **_extra_options(ctx.args)}
    generator = _load_for_sampling(plugin, checkpoint, device)
    conditions = {"prompt": prompt, "prompts_file": prompts_file, "label": label,
                  "labels": labels, "labels_file": labels_file, "per_condition": per_condition}
    conditions = {k: v for k, v in conditions.items() if v is not None}
    if generator.modality == "text" and out is None:
        _print_text(generator, n, seed, batch_size, conditions, options)
        return
    out = out or Path("samples")
    if grid is None and generator.modality == "image" and out is not None:
        grid = out / "grid.png"
    if n is None and per_condition is None:
        n = 16 if generator.modality == "image" else 1
    if num_processes > 1:
        from genkit.sampling import run_sharded, sample_to

        # Validate everything and write run.json once, before the shards start.
        sample_to(generator, out, n=n, seed=seed, batch_size=batch_size, format=fmt,
                  overwrite=overwrite, shard=(0, 1 << 30), progress=False, **conditions, **options)
        run_sharded(_forward_argv(("--num-processes", "--overwrite")), num_processes, out)
        report = sample_to(generator, out, n=n, seed=seed, batch_size=batch_size, format=fmt,
                           grid=grid, progress=False, **conditions, **options)
    else:
        report = generator.sample_to(out, n=n, seed=seed, batch_size=batch_size, format=fmt,
                                     grid=grid if shard is None else None, overwrite=overwrite,
                                     shard=shard, progress=not no_progress,
                                     **conditions, **options)
    from genkit.sampling import write_extras

    for extra in write_extras(generator, generator.options(options), seed, out):
        click.echo(f"wrote {extra}", err=True)
    click.echo(report.summary(), err=True)
    if grid is not None and shard is None and generator.modality == "image":
        click.echo(f"grid: {grid}", err=True)


def _load_for_sampling(plugin: str | None, checkpoint: Path | None, device: str) -> Any:
    from genkit.checkpoint import load_checkpoint
    from genkit.errors import CheckpointError

    if checkpoint is None:
        if not plugin:
            raise click.UsageError("give --checkpoint DIR, or --plugin NAME for its default model")
        spec = _registry().generator(plugin)
        path = spec.default_checkpoint_path()
        if not path or not Path(path, "genkit.json").is_file():
            raise CheckpointError(f"plugin {plugin!r} ships no default model; pass --checkpoint "
                                  f"DIR (train one with: genkit train --plugin {plugin} --out DIR)")
        click.echo(f"Using the default {plugin} model shipped with {spec.distribution or plugin} "
                   "(pass --checkpoint DIR for your own).", err=True)
        checkpoint = Path(path)
    return load_checkpoint(checkpoint, device=device, plugin=plugin)


def _print_text(generator: Any, n: int | None, seed: int, batch_size: int | None,
                conditions: dict[str, Any], options: dict[str, Any]) -> None:
    single = (n or 1) == 1 and not {"labels", "labels_file", "prompts_file", "per_condition"} & set(conditions)
    if single:
        stream_started = []

        def stream(piece: str) -> None:
            stream_started.append(True)
            click.echo(piece, nl=False)
            sys.stdout.flush()

        samples = generator.sample(1, seed=seed, batch_size=batch_size, stream=stream,
                                   **conditions, **options)
        if not stream_started:
            click.echo(samples[0], nl=False)
        click.echo()
        return
    for record in generator.iter_samples(n, seed=seed, batch_size=batch_size,
                                         **conditions, **options):
        click.echo(record.output)
        click.echo("-" * 40)


# --------------------------------------------------------------------------------- info
@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print genkit.json as JSON.")
def info(path: Path, as_json: bool) -> None:
    """Show what a checkpoint is: generator, config, training and evaluation figures.

    \b
    Example:
      genkit info runs/d
    """
    from genkit.checkpoint import checkpoint_identity, read_manifest, resolve_checkpoint_dir

    directory = resolve_checkpoint_dir(path)
    manifest = read_manifest(directory)
    if as_json:
        click.echo(json.dumps({"path": str(directory), "identity": checkpoint_identity(directory),
                               **manifest}, indent=2))
        return
    plugin = manifest.get("plugin") or {}
    size = sum(w["bytes"] for w in manifest["weights"].values())
    lines = [f"checkpoint  {directory}",
             f"generator   {manifest['generator']} ({manifest.get('modality', '?')}), plugin "
             f"{plugin.get('name')} {plugin.get('distribution') or ''} {plugin.get('version') or ''}".rstrip(),
             f"identity    {checkpoint_identity(directory)}",
             f"weights     {len(manifest['weights'])} files, {size / 1e6:.2f} MB",
             f"created     {manifest.get('created')} with genkit "
             f"{manifest.get('versions', {}).get('genkit')}",
             "config      " + ", ".join(f"{k}={v}" for k, v in manifest["config"].items())]
    training = manifest.get("training") or {}
    if training:
        keys = ("data", "steps", "batch_size", "lr", "seed", "device", "precision",
                "num_processes", "seconds", "final_loss")
        lines.append("training    " + ", ".join(f"{k}={training[k]}" for k in keys if k in training))
        if training.get("eval"):
            lines.append("held-out    " + ", ".join(f"{k}={v:.4g}" for k, v in training["eval"].items()))
    evaluation = manifest.get("evaluation") or {}
    if evaluation:
        lines.append("evaluation  " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in evaluation.items() if not isinstance(v, (dict, list))))
    click.echo("\n".join(lines))


# --------------------------------------------------------------------------------- eval
@cli.command(name="eval", context_settings={"ignore_unknown_options": True,
                                             "allow_extra_args": True})
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--data", help="Held-out data source (default: the one it was trained on).")
@click.option("-n", "n", type=int, default=500, show_default=True, help="Samples to draw.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int)
@click.option("--device", default="auto", show_default=True)
@click.option("--features", type=click.Path(path_type=Path),
              help="A local Inception network directory to use for image features.")
@click.option("--draws", type=int, default=3, show_default=True,
              help="Draws of the real and noise rows to average.")
@click.option("--no-record", is_flag=True, help="Do not write the figures into the checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_context
def eval_(ctx: click.Context, path: Path, data: str | None, n: int, seed: int,
          batch_size: int | None, device: str, features: Path | None, draws: int,
          no_record: bool, as_json: bool) -> None:
    """Measure sample quality against held-out data, beside real data and a baseline.

    Sampling options of the plugin pass through (e.g. --scheduler ddim --steps 25).
    The figures are recorded in the checkpoint's genkit.json and model card.

    \b
    Examples:
      genkit eval runs/d --data digits -n 500
      genkit eval runs/g --data pydoc --json
    """
    from genkit.evaluation import evaluate, format_report

    result = evaluate(path, data=data, n=n, seed=seed, batch_size=batch_size, device=device,
                      features=features, draws=draws, record=not no_record,
                      **_extra_options(ctx.args))
    click.echo(json.dumps(result, indent=2) if as_json else format_report(result))


# --------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``genkit`` console script."""
    try:
        _registry().add_commands(cli)
    except GenkitError as exc:  # GENKIT_STRICT_PLUGINS=1 and a broken plugin
        click.echo(f"Error: {exc}", err=True)
        sys.exit(USER_ERROR)
    cli.main(args=argv, prog_name="genkit")


if __name__ == "__main__":
    main()
