"""The plugin hooks: what a genkit plugin may register.

Every hook receives a ``register`` callable and calls it once per thing it adds. Hooks
only *describe* what a plugin offers (names and lazy ``"module:attr"`` paths): nothing
heavy is imported until a command actually needs it, so listing plugins stays fast.
genkit's own data sources register through these same hooks (:mod:`genkit.data.builtin`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "genkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_generators(register: Callable[..., None]) -> None:
    """Add generators: ``register(name, target="module:Class", modality="image"|"text",
    summary="one line", default_checkpoint="module:folder" | None)``."""


@hookspec
def register_data_sources(register: Callable[..., None]) -> None:
    """Add data sources: ``register(scheme, loader="module:function", modality=..., summary=...)``;
    the loader is called as ``loader(argument, split=..., **options)``."""


@hookspec
def register_callbacks(register: Callable[..., None]) -> None:
    """Add training callbacks: ``register(obj)``, where ``obj`` has any of
    ``on_step_end(event)``, ``on_evaluate(event)``, ``on_checkpoint(event)`` (see
    :class:`genkit.train.callbacks.TrainEvent`); they run in every training run."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``genkit`` click group (``cli.add_command(...)``)."""
