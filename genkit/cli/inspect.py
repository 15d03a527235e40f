"""Commands that look: ``genkit plugins``, ``genkit info`` and ``genkit eval``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from genkit.cli.options import extra_options
from genkit.discovery.registry import get_registry
from genkit.store.checkpoint import checkpoint_identity, read_manifest, resolve_checkpoint_dir


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed plugins, their generators and their status.

    \b
    Example:
      genkit plugins
      GENKIT_DISABLE_PLUGINS=gan genkit plugins --json
    """
    registry = get_registry()
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


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print genkit.json as JSON.")
def info(path: Path, as_json: bool) -> None:
    """Show what a checkpoint is: generator, config, training and evaluation figures.

    \b
    Example:
      genkit info runs/d
    """
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


@click.command(name="eval", context_settings={"ignore_unknown_options": True,
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
@click.option("--model-draws", type=int, default=1, show_default=True,
              help="Draws of n samples to average for the model row (FD ± its spread).")
@click.option("--no-record", is_flag=True, help="Do not write the figures into the checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_context
def eval_(ctx: click.Context, path: Path, data: str | None, n: int, seed: int,
          batch_size: int | None, device: str, features: Path | None, draws: int,
          model_draws: int, no_record: bool, as_json: bool) -> None:
    """Measure sample quality against held-out data, beside real data and a baseline.

    Sampling options of the plugin pass through (e.g. --scheduler ddim --steps 25).
    The figures are recorded in the checkpoint's genkit.json and model card.

    \b
    Examples:
      genkit eval runs/d --data digits -n 500
      genkit eval runs/g --data pydoc --json
    """
    from genkit.api import evaluate  # lazy: the API imports torch

    result = evaluate(path, data=data, n=n, seed=seed, batch_size=batch_size, device=device,
                      features=features, draws=draws, model_draws=model_draws,
                      record=not no_record,
                      **extra_options(ctx.args))
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.report())


