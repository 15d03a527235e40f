"""Parsing what the commands pass through to the API: ``--set`` values and plugin options."""

from __future__ import annotations

import json
from pathlib import Path
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




# ------------------------------------------------------------------------ config files
def read_config_file(path: str) -> dict[str, Any]:
    """A TOML, JSON or YAML file of command options (``--set`` values under ``set``)."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}",
                                 param_hint="--config") from None
    try:
        if file.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib

            data = tomllib.loads(text)
        elif file.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif file.suffix == ".json":
            data = json.loads(text)
        else:
            raise click.BadParameter(f"{file}: use a .toml, .json, .yaml or .yml file",
                                     param_hint="--config")
    except (ValueError, RecursionError) as exc:  # tomllib, json and yaml errors
        detail = " ".join(str(exc).split())[:160]
        raise click.BadParameter(f"{file} is not valid {file.suffix[1:]}: {detail}",
                                 param_hint="--config") from None
    except Exception as exc:  # yaml.YAMLError
        detail = " ".join(str(exc).split())[:160]
        raise click.BadParameter(f"{file} is not valid YAML: {detail}",
                                 param_hint="--config") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{file} must hold a table of options", param_hint="--config")
    return data


def config_option() -> Any:
    """``--config FILE``: the file's values become the command's defaults, so options given
    on the command line win. Keys are option names (``batch_size`` or ``batch-size``);
    ``set`` holds ``--set`` values as a table (``set = {num_classes = 10}``); other keys
    that are not options of the command pass through as plugin options where the command
    takes them (``genkit sample``)."""

    def load(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is None:
            return
        data = read_config_file(value)
        names = {p.name for p in ctx.command.params if p.name}
        defaults: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, item in data.items():
            name = str(key).replace("-", "_")
            if name == "set" and isinstance(item, dict):
                defaults["sets"] = [f"{k}={_scalar(v)}" for k, v in item.items()]
            elif name in names:
                defaults[name] = item
            elif ctx.command.allow_extra_args:
                extra[name] = _scalar(item)
            else:
                raise click.BadParameter(f"{value}: unknown option {key!r} for "
                                         f"'{ctx.command_path}'", param_hint="--config")
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
        ctx.meta[CONFIG_EXTRA] = extra

    return click.option("--config", type=click.Path(dir_okay=False), is_eager=True,
                        expose_value=False, callback=load,
                        help="TOML, JSON or YAML file of options; the command line wins.")


CONFIG_EXTRA = "genkit.config_extra"  # ctx.meta: plugin options read from --config


def _scalar(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
