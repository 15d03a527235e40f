"""Typed config records: validation, parsing of CLI strings, clear errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from genkit.config import build_config, check, coerce, parse_assignments
from genkit.errors import ConfigError


@dataclass
class Example:
    size: int = 16
    rate: float = 0.1
    name: str = "x"
    widths: tuple[int, ...] = (8, 16)
    base: str | None = None
    flag: bool = False

    def __post_init__(self) -> None:
        check(self.size > 0, "size must be positive")


def test_strings_are_parsed_into_field_types():
    cfg = build_config(Example, {"size": "32", "rate": "1e-3", "widths": "4,8,8",
                                 "base": "none", "flag": "true"})
    assert cfg == Example(size=32, rate=1e-3, widths=(4, 8, 8), base=None, flag=True)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="unknown config key 'sise'; valid keys: size, rate"):
        build_config(Example, {"sise": 3})


@pytest.mark.parametrize("values, message", [
    ({"size": "big"}, "config 'size' must be an integer, got 'big'"),
    ({"size": 1.5}, "must be an integer"),
    ({"flag": "maybe"}, "must be true or false"),
    ({"size": -1}, "size must be positive"),
    ({"name": 3}, "must be a string"),
])
def test_bad_values_are_clear_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(Example, values)


def test_literal_choices():
    from typing import Literal

    assert coerce("b", Literal["a", "b"], "x") == "b"
    with pytest.raises(ConfigError, match="must be one of a, b"):
        coerce("c", Literal["a", "b"], "x")


def test_parse_assignments():
    assert parse_assignments(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_assignments(["novalue"])
