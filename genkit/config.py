"""Typed configuration records: validation and parsing of ``key=value`` strings.

Each generator declares its hyper-parameters as a dataclass. ``build_config`` checks
every key and type on creation, so a typo is an error that lists the valid keys instead
of a silently ignored setting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

from genkit.errors import ConfigError

_NONE_WORDS = ("none", "null")


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def build_config(cls: type, values: Mapping[str, Any] | None = None, what: str = "config") -> Any:
    """An instance of dataclass ``cls`` from ``values``, each checked against its field type.

    Strings are parsed into the field's type (so CLI ``--set key=value`` works); any other
    value must already have the right type. ``__post_init__`` runs for range checks.
    """
    values = dict(values or {})
    types_ = field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ConfigError(f"unknown {what} key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))}; valid keys: {', '.join(types_)}")
    checked = {key: coerce(value, types_[key], f"{what} {key!r}") for key, value in values.items()}
    try:
        return cls(**checked)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {what}: {exc}") from exc


def replace_config(config: Any, values: Mapping[str, Any], what: str = "config") -> Any:
    """A copy of ``config`` with ``values`` applied and validated."""
    merged = {**dataclasses.asdict(config), **values}
    return build_config(type(config), merged, what)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    return json_ready(dataclasses.asdict(config))


def config_from_dict(cls: type, values: Mapping[str, Any], what: str = "config") -> Any:
    """The inverse of :func:`config_to_dict`, validated."""
    return build_config(cls, values, what)


def json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}``, with a clear error on a missing ``=``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def coerce(value: Any, tp: Any, what: str) -> Any:
    """``value`` as type ``tp`` (parsing strings), or a ConfigError saying what was expected."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in _NONE_WORDS):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, what)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{what}: invalid value {value!r}")
    if origin is typing.Literal:
        if isinstance(value, str) and value not in args:
            for choice in args:  # "3" for Literal[3]
                if str(choice) == value:
                    return choice
        if value not in args:
            raise ConfigError(f"{what} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{what} must be a comma list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [coerce(v.strip() if isinstance(v, str) else v, item_tp, what) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{what} must be true or false, got {value!r}")
    if tp is int or tp is float:
        return _number(value, tp, what)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{what} must be a string, got {value!r}")
    if isinstance(value, tp):
        return value
    raise ConfigError(f"{what} must be of type {getattr(tp, '__name__', tp)}, got {value!r}")


def _number(value: Any, tp: type, what: str) -> Any:
    """An int or float field's value: numbers as they are (no bools; an int field takes
    no float), strings parsed."""
    word = "an integer" if tp is int else "a finite number"
    number: Any = None
    if isinstance(value, int) and not isinstance(value, bool) or \
            tp is float and isinstance(value, float):
        number = tp(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = tp(value)
    if number is None or (tp is float and not math.isfinite(number)):
        raise ConfigError(f"{what} must be {word}, got {value!r}")
    return number


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``condition``: for ``__post_init__`` range checks."""
    if not condition:
        raise ConfigError(message)


def field_help(cls: type) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, comment)`` of each field of dataclass ``cls``: the comment
    is the ``# ...`` written after the field in the source (what per-plugin ``--help``
    shows)."""
    import inspect
    import io
    import tokenize

    comments: dict[int, str] = {}
    try:
        source, start = inspect.getsourcelines(cls)
        for tok in tokenize.generate_tokens(io.StringIO("".join(source)).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
        tree_lines = {}
        for i, line in enumerate(source, 1):
            name = line.strip().split(":", 1)[0]
            if name.isidentifier():
                tree_lines.setdefault(name, i)
    except (OSError, TypeError, tokenize.TokenError):
        tree_lines = {}
    hints = field_types(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        tp = hints[f.name]
        type_name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        rows.append((f.name, type_name, json_ready_text(default),
                     comments.get(tree_lines.get(f.name, -1), "")))
    return rows


def json_ready_text(value: Any) -> str:
    """A default as it is typed on the command line (``none``, ``1,2``, ``true``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)
