"""The ``genkit`` command line: thin click commands over the Python API.

Start-up is light: neither ``genkit --help`` nor ``genkit plugins`` imports torch (each
command imports the API inside its body). User errors print one line on stderr and exit
with status 2, click's own usage errors included.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from genkit.cli.edit import edit
from genkit.cli.group import INTERRUPTED, USER_ERROR, GenkitGroup
from genkit.cli.hub import export, push
from genkit.cli.inspect import eval_, info, plugins
from genkit.cli.sample import sample
from genkit.cli.train import train
from genkit.discovery.registry import get_registry
from genkit.errors import GenkitError
from genkit.serve.command import serve
from genkit.version import __version__


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


for _command in (plugins, train, sample, edit, info, eval_, serve, push, export):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``genkit`` console script; ``argv`` defaults to ``sys.argv[1:]``."""
    try:
        get_registry().add_commands(cli)
    except GenkitError as exc:  # GENKIT_STRICT_PLUGINS=1 and a broken plugin
        click.echo(f"Error: {exc}", err=True)
        sys.exit(USER_ERROR)
    cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="genkit")


__all__ = ["INTERRUPTED", "USER_ERROR", "cli", "main"]

