"""Parsing what the commands pass through to the API: ``--set`` values and plugin options."""

from __future__ import annotations

from typing import Any

import click

from genkit.config import parse_assignments


def assignments(values: tuple[str, ...]) -> dict[str, str]:
    """``--set key=value`` pairs as a dict (a missing ``=`` is a one-line error)."""
    return parse_assignments(values)


def extra_options(args: list[str]) -> dict[str, Any]:
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


