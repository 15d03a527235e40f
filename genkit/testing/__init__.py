"""genkit's test kit: the conformance check and test helpers for plugin authors.

A plugin author adds one test::

    from genkit.testing import check_generator

    def test_conformance():
        check_generator("flow", config={"hidden": 16, "num_coupling": 2}, steps=5)

This package is also a pytest plugin (entry point ``pytest11``), so installing genkit
gives every test suite these fixtures:

- ``genkit_registry``: an isolated, empty plugin registry (installed plugins are not
  loaded); add plugins with ``genkit_registry.register_plugin(obj, name=...)``.
- ``genkit_cli``: a :class:`CliRunner` that runs ``genkit`` commands in process.

Importing it is light (no torch): pytest loads it at start-up; the conformance check
(which imports the whole API) loads when first used.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from genkit.testing.harness import CliRunner, ConformanceError, isolated_registry, run_genkit

if TYPE_CHECKING:
    from genkit.discovery.registry import Registry
    from genkit.testing.conformance import ConformanceReport, check_generator

__all__ = [
    "CliRunner",
    "ConformanceError",
    "ConformanceReport",
    "check_generator",
    "isolated_registry",
    "run_genkit",
]


def __getattr__(name: str) -> Any:
    if name in ("check_generator", "ConformanceReport"):
        from genkit.testing import conformance  # lazy: it imports the whole API (torch)

        return getattr(conformance, name)
    raise AttributeError(f"module 'genkit.testing' has no attribute {name!r}")


# ---------------------------------------------------------------------- pytest plugin
# The fixtures exist when pytest is running (it loads this module through the ``pytest11``
# entry point); a plain script that imports the kit does not pay for importing pytest.
if "pytest" in sys.modules:
    import pytest

    @pytest.fixture
    def genkit_registry() -> Iterator[Registry]:
        """An empty, isolated genkit registry (installed plugins are not loaded), made the
        process-wide one for the test; register plugins with ``.register_plugin``."""
        with isolated_registry() as registry:
            yield registry

    @pytest.fixture
    def genkit_cli() -> CliRunner:
        """Runs ``genkit`` commands in process: ``genkit_cli.invoke(["plugins", "--json"])``."""
        return CliRunner()
