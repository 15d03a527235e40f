"""Test harness for genkit and its plugins: isolated registries and the CLI in process.

Importing this module is light (no torch): pytest loads it at start-up through
``genkit.testing``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genkit.discovery.hookspecs import hookimpl
from genkit.discovery.registry import Registry, use_registry

if TYPE_CHECKING:
    import click.testing


class ConformanceError(AssertionError):
    """A generator broke a promise of the plugin contract (the message says which)."""


# ------------------------------------------------------------------------- registries
@contextlib.contextmanager
def isolated_registry(*plugins: Any, discover: bool = False) -> Iterator[Registry]:
    """A fresh registry installed as the process-wide one for the ``with`` block.

    Installed plugins are not loaded unless ``discover=True`` (entry-point autoload is
    off), so a test sees exactly the plugins it registers. ``plugins`` are plugin objects
    or modules (``(name, plugin)`` pairs name them explicitly).

    Example::

        with isolated_registry(MyPlugin()) as registry:
            assert "mine" in registry.generator_names()
    """
    registry = Registry.discover() if discover else Registry()
    for plugin in plugins:
        name, obj = plugin if isinstance(plugin, tuple) else (None, plugin)
        info = registry.register_plugin(obj, name=name)
        if not info.ok:
            raise ConformanceError(f"plugin {info.name!r} did not register: {info.status}")
    with use_registry(registry):
        yield registry


class SingleClassPlugin:
    """A plugin offering one generator class under ``name`` (for check_generator(cls))."""

    def __init__(self, name: str, cls: type) -> None:
        self.name, self.cls = name, cls

    @hookimpl
    def register_generators(self, register: Any) -> None:
        register(self.name, target=f"{self.cls.__module__}:{self.cls.__qualname__}",
                 modality=getattr(self.cls, "modality", "image"), summary="under test")


# ----------------------------------------------------------------------------- the CLI
class CliRunner:
    """Run ``genkit`` commands in this process (click's ``CliRunner`` over ``genkit.cli``).

    Commands see the current process-wide registry, so inside :func:`isolated_registry`
    (or with the ``genkit_registry`` fixture) they see only the plugins a test
    registered. Plugin commands are added to a copy of the command group, never to the
    real one.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env or {})

    def invoke(self, args: Sequence[str], input: str | None = None,
               env: Mapping[str, str] | None = None,
               catch_exceptions: bool = True) -> click.testing.Result:
        """Run ``genkit ARGS``; returns click's ``Result`` (``exit_code``, ``stdout``,
        ``stderr``, ``output``)."""
        import click.testing

        from genkit.cli import cli  # lazy: the CLI module imports the whole API
        from genkit.discovery.registry import get_registry

        group = _copy_group(cli)
        get_registry().add_commands(group)
        runner = click.testing.CliRunner()
        return runner.invoke(group, list(args), input=input, env={**self.env, **(env or {})},
                             catch_exceptions=catch_exceptions, prog_name="genkit")


def _copy_group(group: Any) -> Any:
    import copy

    clone = copy.copy(group)
    clone.commands = dict(group.commands)
    return clone


def run_genkit(*args: str, env: Mapping[str, str] | None = None,
               python_path: Sequence[str | Path] = (), timeout: float = 300,
               python_flags: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``python -m genkit ARGS`` in a fresh process (real entry-point discovery).

    Args:
        args: the command line after ``genkit``.
        env: variables added to this process's environment (``GENKIT_LOAD_PLUGINS``, ...).
        python_path: folders put in front of ``PYTHONPATH`` (for example a folder holding
            a ``*.dist-info`` directory: a plugin installed without pip).
        timeout: seconds before the process is killed.
        python_flags: interpreter flags such as ``("-X", "importtime")``.

    Returns:
        The finished process, with ``returncode``, ``stdout`` and ``stderr`` as text.
    """
    full_env = {**os.environ, **(env or {})}
    paths = [str(p) for p in python_path]
    if full_env.get("PYTHONPATH"):
        paths.append(full_env["PYTHONPATH"])
    if paths:
        full_env["PYTHONPATH"] = os.pathsep.join(paths)
    cmd = [sys.executable, *python_flags, "-m", "genkit", *args]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout,
                          check=False)
