"""Per-plugin help: ``genkit train --plugin X --help`` lists that family's config keys
(``--set KEY=VALUE``), ``genkit sample --plugin X --help`` its sampling options, each with
its default and the comment written beside it in the plugin's dataclass."""

from __future__ import annotations

from collections.abc import Callable

import click

from genkit.config import field_help
from genkit.discovery.registry import get_registry
from genkit.errors import GenkitError

PLUGIN_HINT = "genkit.plugin_hint"


def _value_after(args: list[str], option: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def plugin_help_command(section: str, dataclass_of: Callable[[type], type],
                        heading: Callable[[str], str]) -> type[click.Command]:
    """A click command class whose ``--help`` ends with the options of the ``--plugin``
    named on the same command line (``section``: "config" or "sampling")."""

    class PluginHelpCommand(click.Command):
        def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
            ctx.meta[PLUGIN_HINT] = _value_after(args, "--plugin")
            return super().parse_args(ctx, args)

        def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            super().format_help(ctx, formatter)
            name = ctx.meta.get(PLUGIN_HINT)
            if not name:
                formatter.write(f"\n  Add --plugin NAME to list that family's {section} "
                                "options.\n")
                return
            try:
                cls = dataclass_of(get_registry().generator(name).load_class())
            except GenkitError as exc:
                formatter.write(f"\n  ({exc})\n")
                return
            rows = [(f"{n}={d}", f"{t}. {c}" if c else t)
                    for n, t, d, c in field_help(cls)]
            with formatter.section(heading(name)):
                formatter.write_dl(rows) if rows else formatter.write_text("none")

    return PluginHelpCommand


TrainHelp = plugin_help_command(
    "config", lambda cls: cls.Config,
    lambda name: f"{name} config (--set KEY=VALUE, default shown)")
SampleHelp = plugin_help_command(
    "sampling", lambda cls: cls.SampleOptions,
    lambda name: f"{name} sampling options (--KEY VALUE, default shown)")
