"""``genkit edit``: inpaint, vary or reconstruct images with a checkpoint (or a plugin's
shipped model), into a resumable folder like ``genkit sample`` writes."""

from __future__ import annotations

from pathlib import Path

import click

from genkit.cli.options import CONFIG_EXTRA, assignments, config_option, extra_options
from genkit.cli.sample import _load_for_sampling
from genkit.contract import EDIT_TASKS
from genkit.devices import apply_threads


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@config_option()
@click.option("--plugin", help="Generator family (read from the checkpoint when left out).")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Checkpoint or run directory (default: the plugin's shipped model).")
@click.option("--task", type=click.Choice(EDIT_TASKS), required=True,
              help="img2img: vary the images (toward --label/--prompt); inpaint: fill the "
                   "white region of each mask; reconstruct: the model's rendering of each image.")
@click.option("--images", required=True, type=click.Path(path_type=Path),
              help="An image file or a folder of them (taken in file-name order).")
@click.option("--masks", type=click.Path(path_type=Path),
              help="inpaint: a folder of masks named like the images, or one mask for all; "
                   "white (255) = fill, black (0) = keep, each the size of its image.")
@click.option("--strength", type=float,
              help="How far an edit may move from the input, 0 to 1 (diffusion: share of "
                   "the noise schedule; default 0.8 for img2img, 1 for inpaint).")
@click.option("--label", type=int, help="Class of every edit (class-conditional models).")
@click.option("--labels", help="Comma list of labels, cycled over the images.")
@click.option("--prompt", help="Prompt of every edit (text-conditioned models).")
@click.option("--seed", type=int, default=0, show_default=True, help="Edit i uses (seed, i).")
@click.option("--batch-size", type=int, help="Images per batch.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder: one file per input, manifest.jsonl, grid.png.")
@click.option("--format", "fmt", type=click.Choice(["png", "npy"]), help="Files: png (default) or npy.")
@click.option("--grid", type=click.Path(path_type=Path),
              help="Before/after contact sheet (default: OUT/grid.png).")
@click.option("--no-grid", is_flag=True, help="Write no contact sheet.")
@click.option("--device", default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the edits of a different run in --out.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Edit option (repeatable); options also work as --key value.")
@click.option("--threads", type=int, help="torch CPU threads (default: the free cores).")
@click.option("--no-progress", is_flag=True)
@click.pass_context
def edit(ctx: click.Context, plugin: str | None, checkpoint: Path | None, task: str,
         images: Path, masks: Path | None, strength: float | None, label: int | None,
         labels: str | None, prompt: str | None, seed: int, batch_size: int | None, out: Path,
         fmt: str | None, grid: Path | None, no_grid: bool, device: str, overwrite: bool,
         sets: tuple[str, ...], threads: int | None, no_progress: bool) -> None:
    """Edit images: inpainting, image-to-image, reconstruction.

    Images of another size or mode than the model's are resized and converted as
    training converts its data (a note says so); masks must be black and white and the
    size of their image. Family options pass through (--scheduler ddim --steps 50
    --inpaint repaint for diffusion, --iterations 50 for vae). Rerunning the same
    command into the same --out resumes and writes only the missing edits.

    \b
    Examples:
      genkit edit --plugin diffusion --task inpaint --images damaged/ --masks holes/ --out fixed/
      genkit edit --plugin diffusion --task img2img --images in/ --strength 0.9 --label 3 --out threes/
      genkit edit --plugin vae --task reconstruct --images in/ --out rebuilt/
    """
    options = {**ctx.meta.get(CONFIG_EXTRA, {}), **assignments(sets), **extra_options(ctx.args)}
    apply_threads(threads, 1)
    generator = _load_for_sampling(plugin, checkpoint, device)
    conditions = {k: v for k, v in (("label", label), ("labels", labels), ("prompt", prompt))
                  if v is not None}
    sheet = False if no_grid else grid
    report = generator.edit_to(out, images, task, masks, strength, seed, batch_size,
                               format=fmt, grid=sheet, overwrite=overwrite,
                               progress=not no_progress,
                               note=lambda line: click.echo(f"Note: {line}", err=True),
                               **conditions, **options)
    click.echo(report.summary(), err=True)
    if not no_grid:
        click.echo(f"grid: {grid or out / 'grid.png'}", err=True)
