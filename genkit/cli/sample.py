"""``genkit sample``: draw samples from a checkpoint (or a plugin's shipped model)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from genkit.cli.group import command_argv
from genkit.cli.options import CONFIG_EXTRA, assignments, config_option, extra_options
from genkit.cli.plugin_help import SampleHelp
from genkit.devices import apply_threads
from genkit.discovery.registry import get_registry
from genkit.errors import CheckpointError
from genkit.launch import run_sharded, watch_parent, without_options
from genkit.sample.plan import write_extras


@click.command(cls=SampleHelp,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@config_option()
@click.option("--plugin", help="Generator family (read from the checkpoint when left out); "
              "with --help, lists its sampling options.")
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
@click.option("--threads", type=int, help="torch CPU threads (default: the free cores).")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def sample(ctx: click.Context, plugin: str | None, checkpoint: Path | None, n: int | None,
           batch_size: int | None, seed: int, out: Path | None, fmt: str | None,
           grid: Path | None, prompt: str | None, prompts_file: str | None, label: int | None,
           labels: str | None, labels_file: str | None, per_condition: int | None, device: str,
           overwrite: bool, shard: str | None, num_processes: int, sets: tuple[str, ...],
           threads: int | None, no_progress: bool) -> None:
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
    options = {**ctx.meta.get(CONFIG_EXTRA, {}), **assignments(sets),
               **extra_options(ctx.args)}
    if num_processes < 1:
        raise click.BadParameter(f"must be at least 1, got {num_processes}",
                                 param_hint="--num-processes")
    watch_parent()
    apply_threads(threads, num_processes)
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
        import torch  # lazy: a GPU count, once the model is loaded anyway

        # Validate everything and write run.json once, before the shards start.
        generator.sample_to(out, n=n, seed=seed, batch_size=batch_size, format=fmt,
                            overwrite=overwrite, shard=(0, 1 << 30), progress=False,
                            **conditions, **options)
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        run_sharded(without_options(command_argv(), ("--num-processes", "--overwrite")),
                    num_processes, out, gpus)
        report = generator.sample_to(out, n=n, seed=seed, batch_size=batch_size, format=fmt,
                                     grid=grid, progress=False, **conditions, **options)
    else:
        report = generator.sample_to(out, n=n, seed=seed, batch_size=batch_size, format=fmt,
                                     grid=grid if shard is None else None, overwrite=overwrite,
                                     shard=shard, progress=not no_progress,
                                     **conditions, **options)
    for extra in write_extras(generator, generator.options(options), seed, out):
        click.echo(f"wrote {extra}", err=True)
    click.echo(report.summary(), err=True)
    if grid is not None and shard is None and generator.modality == "image":
        click.echo(f"grid: {grid}", err=True)


def _load_for_sampling(plugin: str | None, checkpoint: Path | None, device: str) -> Any:
    from genkit.api import load  # lazy: the API imports torch

    if checkpoint is None:
        if not plugin:
            raise click.UsageError("give --checkpoint DIR, or --plugin NAME for its default model")
        spec = get_registry().generator(plugin)
        path = spec.default_checkpoint_path()
        if not path or not Path(path, "genkit.json").is_file():
            raise CheckpointError(f"plugin {plugin!r} ships no default model; pass --checkpoint "
                                  f"DIR (train one with: genkit train --plugin {plugin} --out DIR)")
        click.echo(f"Using the default {plugin} model shipped with {spec.distribution or plugin} "
                   "(pass --checkpoint DIR for your own).", err=True)
        checkpoint = Path(path)
    return load(checkpoint, device=device, plugin=plugin)


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


