"""The click group class that gives every genkit command the same error behaviour, and
imports each built-in command only when it runs (or its own help is asked for)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click
from click.utils import make_default_short_help

from genkit.errors import GenkitError

USER_ERROR = 2
INTERRUPTED = 130
ARGV_KEY = "genkit.argv"  # ctx.meta: the command line as given (children are started with it)


class GenkitGroup(click.Group):
    """Turns genkit's errors and click's usage errors into one line on stderr and exit
    status 2, and remembers the command line it was given.

    ``lazy`` maps a command's name to ``("module:attribute", one-line help)``: the module
    is imported when the command is looked up, so ``genkit --help`` lists every command
    from the one-line helps and imports none of them.
    """

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name][0].split(":")
            self.commands[cmd_name] = getattr(importlib.import_module(module), attribute)
        return self.commands.get(cmd_name)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if name in self.lazy and name not in self.commands:  # a plugin must not replace it
            raise ValueError(f"command {name} already exists; give the plugin's command "
                             "another name")
        super().add_command(cmd, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list, with the one-line helps of commands not imported yet."""
        limit = formatter.width - 6 - max(map(len, self.list_commands(ctx)), default=0)
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is not None and command.hidden:
                continue
            rows.append((name, command.get_short_help_str(limit) if command is not None
                         else make_default_short_help(self.lazy[name][1], limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

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
