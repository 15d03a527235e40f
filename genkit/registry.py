"""Plugin discovery: entry points in the ``genkit`` group, loaded lazily and in isolation.

Discovery imports only each plugin's top-level module, which registers *specs* (names and
``"module:attr"`` paths). A plugin that fails to import, to validate or to register is
recorded with its error and skipped; every other plugin keeps working. Nothing heavy
(torch, diffusers, transformers) is imported here.

Environment variables (read when the registry is built):

- ``GENKIT_LOAD_PLUGINS``: comma list of plugin names to load; empty loads none.
- ``GENKIT_DISABLE_PLUGINS``: comma list of plugin names to skip.
- ``GENKIT_STRICT_PLUGINS=1``: any plugin failure raises :class:`PluginError` (for CI).
- ``GENKIT_TRACE_PLUGINS=1``: log every hook call and its duration to stderr.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from genkit import hookspecs
from genkit.errors import ConfigError, PluginClashError, PluginError

ENTRY_POINT_GROUP = "genkit"
MODALITIES = ("image", "text")


@dataclass
class PluginInfo:
    """One plugin as discovery saw it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    status: str = "ok"  # ok | disabled | failed: <reason> | incompatible: needs genkit <spec>
    import_ms: float = 0.0
    generators: list[str] = field(default_factory=list)
    data_sources: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
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

    def load_class(self) -> type:
        """Import and return the generator class (this is where torch gets imported)."""
        from genkit.generator import Generator

        cls = import_target(self.target, what=f"generator {self.name!r}")
        if not (isinstance(cls, type) and issubclass(cls, Generator)):
            raise PluginError(
                f"generator {self.name!r} of plugin {self.plugin!r}: {self.target} "
                "is not a genkit.plugin.Generator subclass"
            )
        return cls

    def default_checkpoint_path(self) -> str | None:
        """The shipped default checkpoint folder, or None when the plugin ships none."""
        if not self.default_checkpoint:
            return None
        package, _, folder = self.default_checkpoint.partition(":")
        from importlib import resources

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


def import_target(target: str, what: str) -> Any:
    """Import ``"module:attr"`` and return the attribute, with a clear error."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise PluginError(f"{what}: target {target!r} is not of the form 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(f"{what}: cannot import {module_name}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"{what}: {module_name} has no attribute {attr!r}") from None


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _genkit_requirement(dist: metadata.Distribution | None) -> str | None:
    """The specifier a distribution puts on ``genkit`` in its requirements, if any."""
    if dist is None:
        return None
    from packaging.requirements import InvalidRequirement, Requirement

    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.name.lower() == "genkit" and not req.marker and str(req.specifier):
            return str(req.specifier)
    return None


def _genkit_version() -> str:
    from genkit import __version__

    return __version__


class Registry:
    """Plugins, their generators and data sources, and their failures.

    Build one with :meth:`discover` (entry points) or empty (``Registry()``) and add
    plugin objects with :meth:`register_plugin`, as the conformance kit does.
    """

    def __init__(self, strict: bool | None = None, trace: bool | None = None) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._generators: dict[str, list[GeneratorSpec]] = {}
        self._sources: dict[str, list[DataSourceSpec]] = {}
        self.strict = _env_flag("GENKIT_STRICT_PLUGINS") if strict is None else strict
        if _env_flag("GENKIT_TRACE_PLUGINS") if trace is None else trace:
            self._enable_trace()
        from genkit import data

        for scheme, (loader, modality, summary) in data.BUILTIN_SOURCES.items():
            self._sources[scheme] = [DataSourceSpec(scheme, loader, modality, summary, "genkit")]

    # ----------------------------------------------------------------- discovery
    @classmethod
    def discover(cls, **kwargs: Any) -> Registry:
        """A registry holding every plugin installed under the ``genkit`` entry-point group."""
        registry = cls(**kwargs)
        allow = _env_list("GENKIT_LOAD_PLUGINS")
        deny = set(_env_list("GENKIT_DISABLE_PLUGINS") or [])
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                ep.name,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            if ep.name in registry.plugins:
                registry._fail(info, f"plugin name {ep.name!r} is also used by "
                               f"{registry.plugins[ep.name].distribution}")
                continue
            registry.plugins[ep.name] = info
            if (allow is not None and ep.name not in allow) or ep.name in deny:
                info.status = "disabled"
                continue
            needed = _genkit_requirement(dist)
            if needed and not _satisfies(_genkit_version(), needed):
                registry._fail(info, f"incompatible: needs genkit {needed}", prefix=False)
                continue
            start = time.perf_counter()
            try:
                module = ep.load()
            except Exception as exc:
                registry._fail(info, f"{type(exc).__name__}: {exc}")
                continue
            finally:
                info.import_ms = (time.perf_counter() - start) * 1000
            registry._register(module, info)
        return registry

    def register_plugin(self, plugin: Any, name: str | None = None,
                        distribution: str | None = None, version: str | None = None) -> PluginInfo:
        """Register a plugin object or module directly (tests, notebooks, embedding)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self.plugins and self.plugins[name].ok:
            raise PluginError(f"a plugin named {name!r} is already registered")
        info = PluginInfo(name, distribution=distribution, version=version)
        self.plugins[name] = info
        self._register(plugin, info)
        return info

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin and everything it registered."""
        self.plugins.pop(name, None)
        with contextlib.suppress(ValueError):
            self.pm.unregister(name=name)
        for table in (self._generators, self._sources):
            for key in list(table):
                table[key] = [s for s in table[key] if s.plugin != name]
                if not table[key]:
                    del table[key]

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        """Validate a plugin's hooks, then collect what it registers; all or nothing."""
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # pluggy.PluginValidationError and friends
            self._fail(info, f"{type(exc).__name__}: {exc}")
            return
        generators: list[GeneratorSpec] = []
        sources: list[DataSourceSpec] = []
        try:
            caller = self.pm.subset_hook_caller
            others = [p for n, p in self.pm.list_name_plugin() if n != info.name]
            caller("register_generators", others)(
                register=lambda *a, **k: generators.append(self._generator_spec(info, *a, **k)))
            caller("register_data_sources", others)(
                register=lambda *a, **k: sources.append(self._source_spec(info, *a, **k)))
        except Exception as exc:
            self.pm.unregister(name=info.name)
            self._fail(info, f"{type(exc).__name__}: {exc}")
            return
        for spec in generators:
            self._generators.setdefault(spec.name, []).append(spec)
            info.generators.append(spec.name)
        for src in sources:
            self._sources.setdefault(src.scheme, []).append(src)
            info.data_sources.append(src.scheme)
        for spec in generators:
            if len(self._generators[spec.name]) > 1:
                first = self._generators[spec.name][0]
                self._fail(info, f"generator {spec.name!r} clashes with plugin {first.plugin!r} "
                           f"({first.distribution or 'not installed'})", keep=True)

    def _generator_spec(self, info: PluginInfo, name: str, target: str, modality: str = "image",
                        summary: str = "", default_checkpoint: str | None = None) -> GeneratorSpec:
        if modality not in MODALITIES:
            raise PluginError(f"generator {name!r}: modality must be one of {MODALITIES}, "
                              f"got {modality!r}")
        return GeneratorSpec(name, target, modality, summary, info.name, info.distribution,
                             info.version, default_checkpoint)

    def _source_spec(self, info: PluginInfo, scheme: str, loader: str, modality: str = "image",
                     summary: str = "") -> DataSourceSpec:
        return DataSourceSpec(scheme, loader, modality, summary, info.name)

    def _fail(self, info: PluginInfo, reason: str, prefix: bool = True, keep: bool = False) -> None:
        info.status = f"failed: {reason}" if prefix else reason
        self.plugins.setdefault(info.name, info)
        if self.strict:
            raise PluginError(f"plugin {info.name!r} ({info.distribution or 'not installed'}): "
                              f"{info.status} (GENKIT_STRICT_PLUGINS is set)")
        if not keep:
            info.generators.clear()

    def _enable_trace(self) -> None:
        starts: dict[str, float] = {}

        def before(hook_name: str, impls: list, kwargs: dict) -> None:
            starts[hook_name] = time.perf_counter()

        def after(outcome: Any, hook_name: str, impls: list, kwargs: dict) -> None:
            ms = (time.perf_counter() - starts.pop(hook_name, time.perf_counter())) * 1000
            names = ",".join(i.plugin_name for i in impls) or "-"
            print(f"genkit trace: {hook_name} [{names}] {ms:.2f} ms", file=sys.stderr)

        self.pm.add_hookcall_monitoring(before, after)

    # ------------------------------------------------------------------ lookups
    def generator_names(self) -> list[str]:
        return sorted(self._generators)

    def generator_specs(self) -> list[GeneratorSpec]:
        return [specs[0] for _, specs in sorted(self._generators.items())]

    def generator(self, name: str) -> GeneratorSpec:
        """The spec of generator ``name``; a clear error when unknown or ambiguous."""
        specs = self._generators.get(name)
        if not specs:
            known = ", ".join(self.generator_names()) or "none installed"
            hint = self._hint_for_missing(name)
            raise PluginError(f"unknown generator {name!r}; available: {known}{hint}")
        if len(specs) > 1:
            who = " and ".join(f"{s.plugin} ({s.distribution or 'not installed'})" for s in specs)
            raise PluginClashError(
                f"generator {name!r} is provided by two plugins: {who}; uninstall one or "
                f"disable one with GENKIT_DISABLE_PLUGINS")
        return specs[0]

    def _hint_for_missing(self, name: str) -> str:
        info = self.plugins.get(name)
        if info is None or info.ok:
            return ""
        if info.status == "disabled":
            return f" (plugin {name!r} is disabled by GENKIT_LOAD_PLUGINS/GENKIT_DISABLE_PLUGINS)"
        return f" (plugin {name!r} did not load: {info.status}; see 'genkit plugins')"

    def data_source(self, scheme: str) -> DataSourceSpec:
        specs = self._sources.get(scheme)
        if not specs:
            known = ", ".join(sorted(self._sources))
            raise ConfigError(f"unknown data source {scheme!r}; available: {known}")
        return specs[-1]

    def data_source_specs(self) -> list[DataSourceSpec]:
        return [specs[-1] for _, specs in sorted(self._sources.items())]

    def add_commands(self, cli: Any) -> None:
        """Let every loaded plugin add its click commands; failures are recorded, not raised."""
        for name, plugin in self.pm.list_name_plugin():
            info = self.plugins.get(name)
            if info is None or not info.ok:
                continue
            others = [p for n, p in self.pm.list_name_plugin() if n != name]
            try:
                self.pm.subset_hook_caller("register_commands", others)(cli=cli)
            except Exception as exc:
                self._fail(info, f"register_commands: {type(exc).__name__}: {exc}", keep=True)


def _satisfies(version: str, specifier: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(specifier).contains(version, prereleases=True)
    except InvalidSpecifier:
        return False


_current: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _current
    if _current is None:
        _current = Registry.discover()
    return _current


@contextlib.contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the process-wide one inside the block (tests, embedding)."""
    global _current
    previous, _current = _current, registry
    try:
        yield registry
    finally:
        _current = previous


def reset_registry() -> None:
    """Forget the discovered registry; the next use discovers again."""
    global _current
    _current = None
