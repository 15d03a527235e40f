"""The click group class that gives every genkit command the same error behaviour."""

from __future__ import annotations

import sys
from typing import Any

import click

from genkit.errors import GenkitError

USER_ERROR = 2
INTERRUPTED = 130
ARGV_KEY = "genkit.argv"  # ctx.meta: the command line as given (children are started with it)


class GenkitGroup(click.Group):
    """Turns genkit's errors and click's usage errors into one line on stderr and exit
    status 2, and remembers the command line it was given."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> click.Context:
        argv = list(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:  # a bad option before any command runs
            _usage_error(exc)
        ctx.meta[ARGV_KEY] = argv
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GenkitError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(USER_ERROR)
        except click.UsageError as exc:
            _usage_error(exc)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(INTERRUPTED)


def _usage_error(exc: click.UsageError) -> None:
    """One line: the problem and where to read more (click prints usage + hint + error)."""
    command = exc.ctx.command_path if exc.ctx is not None else "genkit"
    message = " ".join(exc.format_message().split())
    click.echo(f"Error: {message} (see '{command} --help')", err=True)
    sys.exit(USER_ERROR)


def command_argv() -> list[str]:
    """The arguments of the running subcommand, as given on the command line (or to
    :func:`genkit.cli.main`), never ``sys.argv``."""
    ctx = click.get_current_context()
    argv = ctx.meta.get(ARGV_KEY, [])
    return argv[1:] if argv else []  # drop the subcommand's name
