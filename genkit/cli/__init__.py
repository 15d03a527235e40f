"""The ``genkit`` command line: thin click commands over the Python API.

Start-up is light: a command's module is imported only when that command runs (see
:class:`~genkit.cli.group.GenkitGroup`), and no command imports torch before its body
runs, so neither ``genkit --help`` nor ``genkit plugins`` imports torch. User errors
print one line on stderr and exit with status 2, click's own usage errors included.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from genkit.cli.group import INTERRUPTED, USER_ERROR, GenkitGroup
from genkit.discovery.registry import get_registry
from genkit.errors import GenkitError
from genkit.version import __version__

#: the built-in commands: where each lives and its one-line help (for ``genkit --help``;
#: tests/test_cli.py checks each against the command's own docstring)
COMMANDS = {
    "train": ("genkit.cli.train:train", "Train a generator and write checkpoints to --out."),
    "sample": ("genkit.cli.sample:sample", "Generate samples from a checkpoint (or a "
               "plugin's shipped default model)."),
    "edit": ("genkit.cli.edit:edit", "Edit images: inpainting, image-to-image, "
             "reconstruction."),
    "eval": ("genkit.cli.inspect:eval_", "Measure sample quality against held-out data, "
             "beside real data and a baseline."),
    "info": ("genkit.cli.inspect:info", "Show what a checkpoint is: generator, config, "
             "training and evaluation figures."),
    "plugins": ("genkit.cli.inspect:plugins", "List installed plugins, their generators "
                "and their status."),
    "serve": ("genkit.serve.command:serve", "Serve models over HTTP: a web page, a JSON API "
              "and OpenAI-compatible routes."),
    "push": ("genkit.cli.hub:push", "Publish a checkpoint to the Hugging Face Hub as "
             "ORG/NAME, with its model card."),
    "export": ("genkit.cli.hub:export", "Write CHECKPOINT's LoRA adapter merged into its "
               "base as a plain model in OUT."),
}


@click.group(cls=GenkitGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genkit")
def cli() -> None:
    """genkit: train and sample generative models (diffusion, GAN, VAE, GPT, and plugins).

    \b
    Quick start:
      genkit sample --plugin diffusion -n 16 --out samples/
      genkit train --plugin diffusion --out runs/d --steps 2000
      genkit plugins
    """



def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``genkit`` console script; ``argv`` defaults to ``sys.argv[1:]``."""
    try:
        get_registry().add_commands(cli)
    except GenkitError as exc:  # GENKIT_STRICT_PLUGINS=1 and a broken plugin
        click.echo(f"Error: {exc}", err=True)
        sys.exit(USER_ERROR)
    cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="genkit")


__all__ = ["COMMANDS", "INTERRUPTED", "USER_ERROR", "cli", "main"]

