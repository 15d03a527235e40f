"""What discovery records: plugins with a typed status, and lazy generator and data specs.

A spec names a ``"module:attr"`` target and imports it only when asked (:meth:`load_class`,
:meth:`DataSourceSpec.load`), so describing every installed plugin never imports torch.
"""

from __future__ import annotations

import enum
import importlib
from dataclasses import dataclass, field
from typing import Any

from genkit.contract import GeneratorContract
from genkit.errors import PluginError

MODALITIES = ("image", "text")


class PluginState(enum.Enum):
    """Where a plugin stands after discovery."""

    OK = "ok"
    DISABLED = "disabled"  # by GENKIT_LOAD_PLUGINS / GENKIT_DISABLE_PLUGINS
    FAILED = "failed"  # import, validation, registration or a name clash
    INCOMPATIBLE = "incompatible"  # its genkit requirement excludes this genkit


@dataclass(frozen=True)
class PluginStatus:
    """A plugin's state and, unless it is ok or disabled, why (one line).

    ``str(status)`` is the form ``genkit plugins`` prints: ``ok``, ``disabled``,
    ``failed: <reason>`` or ``incompatible: needs genkit <spec> (...)``.
    """

    state: PluginState = PluginState.OK
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.state is PluginState.OK

    def __str__(self) -> str:
        return f"{self.state.value}: {self.reason}" if self.reason else self.state.value


@dataclass
class PluginInfo:
    """One plugin as discovery saw it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    status: PluginStatus = field(default_factory=PluginStatus)
    import_ms: float = 0.0
    generators: list[str] = field(default_factory=list)
    data_sources: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status.ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": str(self.status),
            "import_ms": round(self.import_ms, 2),
            "generators": list(self.generators),
            "data_sources": list(self.data_sources),
        }


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator a plugin offers, described without importing it."""

    name: str
    target: str  # "package.module:Class", imported only when needed
    modality: str
    summary: str
    plugin: str
    distribution: str | None = None
    version: str | None = None
    default_checkpoint: str | None = None  # "package:folder" holding a shipped checkpoint

    def load_class(self) -> Any:
        """Import and return the generator class (this is where torch gets imported)."""
        cls = import_target(self.target, what=f"generator {self.name!r}")
        if not (isinstance(cls, type) and issubclass(cls, GeneratorContract)):
            raise PluginError(
                f"generator {self.name!r} of plugin {self.plugin!r}: {self.target} "
                "is not a genkit.plugin.Generator subclass"
            )
        return cls

    def default_checkpoint_path(self) -> str | None:
        """The shipped default checkpoint folder, or None when the plugin ships none."""
        if not self.default_checkpoint:
            return None
        from importlib import resources

        package, _, folder = self.default_checkpoint.partition(":")
        return str(resources.files(package).joinpath(folder))


@dataclass(frozen=True)
class DataSourceSpec:
    """A data source scheme (``digits``, ``folder:PATH``, ...) and its lazy loader."""

    scheme: str
    loader: str  # "module:function"
    modality: str
    summary: str
    plugin: str

    def load(self, argument: str | None, split: str, **options: Any) -> Any:
        fn = import_target(self.loader, what=f"data source {self.scheme!r}")
        return fn(argument, split=split, **options)


def check_target(target: Any, what: str) -> None:
    """A ``"module:attribute"`` string, or a PluginError saying what is wrong with it."""
    if not isinstance(target, str) or target.count(":") != 1 or target.startswith(":") \
            or target.endswith(":"):
        raise PluginError(f"{what}: target {target!r} is not of the form 'module:attribute'")


def import_target(target: str, what: str) -> Any:
    """Import ``"module:attr"`` and return the attribute, with a clear error."""
    check_target(target, what)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(f"{what}: cannot import {module_name}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"{what}: {module_name} has no attribute {attr!r}") from None
