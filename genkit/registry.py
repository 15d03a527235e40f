"""Plugin discovery: entry points in the ``genkit`` group, loaded lazily and in isolation.

Discovery imports only each plugin's top-level module, which registers *specs* (names and
``"module:attr"`` paths). A plugin that fails to import, to validate or to register is
recorded with its error and skipped; every other plugin keeps working. Nothing heavy
(torch, diffusers, transformers) is imported here.

Environment variables (read when the registry is built):

- ``GENKIT_LOAD_PLUGINS``: comma list of plugins to load (entry-point or distribution
  names); empty loads none.
- ``GENKIT_DISABLE_PLUGINS``: comma list of plugins to skip (wins over the allow list).
- ``GENKIT_STRICT_PLUGINS=1``: any plugin failure raises :class:`PluginError` (for CI).
- ``GENKIT_TRACE_PLUGINS=1``: log every hook call and its duration to stderr.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
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


def _check_target(target: Any, what: str) -> None:
    if not isinstance(target, str) or target.count(":") != 1 or target.startswith(":") \
            or target.endswith(":"):
        raise PluginError(f"{what}: target {target!r} is not of the form 'module:attribute'")


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


def _normalise(name: str) -> str:
    """A distribution or plugin name in PEP 503 form (``Genkit_Plugin.Flow`` -> ``genkit-plugin-flow``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class _DistributionFacts:
    """What discovery needs from a distribution's metadata, read once per distribution."""

    name: str | None
    version: str | None
    genkit_requirement: str | None  # e.g. ">=0.2,<1" when it declares one


def _distribution_facts(dist: metadata.Distribution | None) -> _DistributionFacts:
    if dist is None:
        return _DistributionFacts(None, None, None)
    meta = dist.metadata
    return _DistributionFacts(meta["Name"], meta["Version"],
                              _genkit_requirement(meta.get_all("Requires-Dist") or []))


def _genkit_requirement(requires: list[str]) -> str | None:
    """The specifier a distribution puts on ``genkit`` in its requirements, if any.

    ``packaging`` is imported only when a line names genkit (its specifier module only,
    and its marker module only when the line has a marker), which keeps discovery light.
    A requirement under an environment marker counts when the marker holds here (extras
    do not: they are optional).
    """
    specifiers = []
    for line in requires:
        match = _GENKIT_LINE.match(line)
        if not match:
            continue
        spec, marker = match.group("spec").strip(), match.group("marker")
        if spec.startswith("@") or (marker and not _marker_holds(marker)):
            continue  # a direct URL names no version; a marker may not hold here
        if spec:
            specifiers.append(spec)
    return ",".join(specifiers) or None


#: ``genkit [extras] (specifier) ; marker`` as written in Requires-Dist
_GENKIT_LINE = re.compile(r"^\s*genkit(?![A-Za-z0-9._-])\s*(?:\[[^\]]*\])?"  # name, extras
                          r"\s*\(?(?P<spec>[^;()]*)\)?\s*(?:;(?P<marker>.*))?$",  # spec; marker
                          re.IGNORECASE)


def _marker_holds(marker: str) -> bool:
    from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName

    try:
        return Marker(marker.strip()).evaluate({"extra": ""})
    except (InvalidMarker, UndefinedEnvironmentName):
        return False


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
        self._clashing: set[str] = set()  # plugins whose status is a name clash
        self.strict = _env_flag("GENKIT_STRICT_PLUGINS") if strict is None else strict
        self.trace = _env_flag("GENKIT_TRACE_PLUGINS") if trace is None else trace
        if self.trace:
            self._enable_trace()
        from genkit import data

        for scheme, (loader, modality, summary) in data.BUILTIN_SOURCES.items():
            self._sources[scheme] = [DataSourceSpec(scheme, loader, modality, summary, "genkit")]

    # ----------------------------------------------------------------- discovery
    @classmethod
    def discover(cls, **kwargs: Any) -> Registry:
        """A registry holding every plugin installed under the ``genkit`` entry-point group.

        ``GENKIT_LOAD_PLUGINS`` / ``GENKIT_DISABLE_PLUGINS`` are applied before a plugin is
        imported; they match a plugin's entry-point name or its distribution's name (so
        ``GENKIT_DISABLE_PLUGINS=genkit`` turns off every built-in family).
        """
        registry = cls(**kwargs)
        allow = _env_list("GENKIT_LOAD_PLUGINS")
        deny = _env_list("GENKIT_DISABLE_PLUGINS") or []
        facts: dict[int, _DistributionFacts] = {}
        entries = []
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            if id(dist) not in facts:
                facts[id(dist)] = _distribution_facts(dist)
            entries.append((ep, facts[id(dist)]))
        # Sorted by plugin name, then distribution: the order never depends on sys.path.
        for ep, dist_facts in sorted(entries, key=lambda e: (e[0].name, e[1].name or "")):
            registry._load_entry_point(ep, dist_facts, allow, deny)
        return registry

    def _load_entry_point(self, ep: metadata.EntryPoint, facts: _DistributionFacts,
                          allow: list[str] | None, deny: list[str]) -> None:
        """Import one plugin (unless disabled or incompatible) and register it.

        Two distributions may use one entry-point name: the second is registered as
        ``"NAME (DISTRIBUTION)"``; both work (generator names are what must be unique).
        """
        name = ep.name if ep.name not in self.plugins else f"{ep.name} ({facts.name})"
        info = PluginInfo(name, distribution=facts.name, version=facts.version)
        self.plugins[name] = info
        names = {_normalise(ep.name), _normalise(facts.name or "")}
        if (allow is not None and not names & {_normalise(a) for a in allow}) \
                or names & {_normalise(d) for d in deny}:
            info.status = "disabled"
            self._trace(f"plugin {name!r} disabled by GENKIT_LOAD_PLUGINS/GENKIT_DISABLE_PLUGINS")
            return
        needed = facts.genkit_requirement
        if needed and not _satisfies(_genkit_version(), needed):
            self._fail(info, f"incompatible: needs genkit {needed} (this is genkit "
                       f"{_genkit_version()})", prefix=False)
            return
        start = time.perf_counter()
        try:
            module = ep.load()
        except Exception as exc:
            info.import_ms = (time.perf_counter() - start) * 1000
            self._fail(info, f"{type(exc).__name__}: {exc}")
            return
        info.import_ms = (time.perf_counter() - start) * 1000
        self._trace(f"import plugin {name!r} ({ep.value}) {info.import_ms:.2f} ms")
        self._register(module, info)

    def register_plugin(self, plugin: Any, name: str | None = None,
                        distribution: str | None = None, version: str | None = None) -> PluginInfo:
        """Register a plugin object or module directly (tests, notebooks, embedding).

        Failures are recorded in the returned :class:`PluginInfo` (``status``), as for
        installed plugins; in strict mode they raise :class:`PluginError`.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if self.pm.get_plugin(name) is not None:
            raise PluginError(f"a plugin named {name!r} is already registered; "
                              "unregister_plugin it first")
        info = PluginInfo(name, distribution=distribution, version=version)
        self.plugins[name] = info
        self._register(plugin, info)
        return info

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin and everything it registered."""
        self.plugins.pop(name, None)
        self._clashing.discard(name)
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        for table in (self._generators, self._sources):
            for key in list(table):
                table[key] = [s for s in table[key] if s.plugin != name]
                if not table[key]:
                    del table[key]
        self._update_clashes()

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        """Validate a plugin's hooks, then collect what it registers; all or nothing."""
        try:
            self.pm.register(plugin, name=info.name)
            self._check_hook_names(plugin)
        except Exception as exc:  # pluggy.PluginValidationError and friends
            if self.pm.get_plugin(info.name) is not None:
                self.pm.unregister(name=info.name)
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
        self._update_clashes()

    def _check_hook_names(self, plugin: Any) -> None:
        """A hook implementation whose name is no genkit hook is a typo: report it."""
        unknown = sorted(
            caller.name for caller in self.pm.get_hookcallers(plugin) or []
            if not caller.has_spec()
            and any(impl.plugin is plugin and not impl.optionalhook
                    for impl in caller.get_hookimpls()))
        if unknown:
            known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("register_")))
            raise PluginError(f"unknown hook {', '.join(unknown)}; genkit's hooks are {known}")

    def _update_clashes(self) -> None:
        """Mark every plugin that offers a generator or data source another one offers too.

        Both sides are marked (the outcome does not depend on discovery order); their
        other generators keep working, and asking for the contested name is an error that
        names both. A plugin whose clash went away (unregistered rival) is ``ok`` again.
        """
        reasons: dict[str, list[str]] = {}
        for kind, table in (("generator", self._generators), ("data source", self._sources)):
            for key, specs in table.items():
                for spec in specs if len(specs) > 1 else ():
                    rivals = [self._describe(s.plugin) for s in specs if s.plugin != spec.plugin]
                    reasons.setdefault(spec.plugin, []).append(
                        f"{kind} {key!r} is also provided by {' and '.join(rivals)}")
        for name in self._clashing - set(reasons):
            if name in self.plugins:
                self.plugins[name].status = "ok"
        self._clashing &= set(reasons)
        for name, why in reasons.items():
            info = self.plugins.get(name)
            if info is None:
                continue
            status = f"failed: {'; '.join(why)}; disable one with GENKIT_DISABLE_PLUGINS"
            if info.status != status and (info.ok or name in self._clashing):
                self._clashing.add(name)
                self._fail(info, status, prefix=False, keep=True)

    def _describe(self, plugin: str) -> str:
        info = self.plugins.get(plugin)
        if info is None:
            return f"plugin {plugin!r} (built in)" if plugin == "genkit" else f"plugin {plugin!r}"
        where = f"{info.distribution} {info.version or ''}".strip() if info.distribution \
            else "not installed"
        return f"plugin {plugin!r} ({where})"

    def _generator_spec(self, info: PluginInfo, name: str, target: str, modality: str = "image",
                        summary: str = "", default_checkpoint: str | None = None) -> GeneratorSpec:
        if modality not in MODALITIES:
            raise PluginError(f"generator {name!r}: modality must be one of {MODALITIES}, "
                              f"got {modality!r}")
        _check_target(target, f"generator {name!r}")
        return GeneratorSpec(name, target, modality, summary, info.name, info.distribution,
                             info.version, default_checkpoint)

    def _source_spec(self, info: PluginInfo, scheme: str, loader: str, modality: str = "image",
                     summary: str = "") -> DataSourceSpec:
        _check_target(loader, f"data source {scheme!r}")
        return DataSourceSpec(scheme, loader, modality, summary, info.name)

    def _fail(self, info: PluginInfo, reason: str, prefix: bool = True, keep: bool = False) -> None:
        """Record that a plugin failed (``keep``: its generators stay listed); in strict
        mode raise instead."""
        reason = " ".join(reason.split())  # one line, whatever the exception said
        info.status = f"failed: {reason}" if prefix else reason
        self._trace(f"plugin {info.name!r}: {info.status}")
        if self.strict:
            raise PluginError(f"plugin {info.name!r} ({info.distribution or 'not installed'}): "
                              f"{info.status} (GENKIT_STRICT_PLUGINS is set)")
        if not keep:
            info.generators.clear()
            info.data_sources.clear()

    def _trace(self, message: str) -> None:
        if self.trace:
            print(f"genkit trace: {message}", file=sys.stderr)

    def _enable_trace(self) -> None:
        starts: dict[str, float] = {}

        def before(hook_name: str, impls: list, kwargs: dict) -> None:
            starts[hook_name] = time.perf_counter()

        def after(outcome: Any, hook_name: str, impls: list, kwargs: dict) -> None:
            if not impls:
                return
            ms = (time.perf_counter() - starts.pop(hook_name, time.perf_counter())) * 1000
            names = ",".join(i.plugin_name for i in impls) or "-"
            error = "" if outcome.exception is None else f" raised {type(outcome.exception).__name__}"
            print(f"genkit trace: hook {hook_name} [{names}] {ms:.2f} ms{error}", file=sys.stderr)

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
            who = " and ".join(self._describe(s.plugin) for s in specs)
            raise PluginClashError(
                f"generator {name!r} is provided by {who}; uninstall one or disable one "
                "with GENKIT_DISABLE_PLUGINS")
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
        if len(specs) > 1:
            who = " and ".join(self._describe(s.plugin) for s in specs)
            raise PluginClashError(f"data source {scheme!r} is provided by {who}; uninstall "
                                   "one or disable it with GENKIT_DISABLE_PLUGINS")
        return specs[0]

    def data_source_specs(self) -> list[DataSourceSpec]:
        return [specs[0] for _, specs in sorted(self._sources.items())]

    def add_commands(self, cli: Any) -> None:
        """Let every loaded plugin add its click commands; failures are recorded, not raised
        (except in strict mode). A plugin may add commands, never replace one."""
        for name, _plugin in self.pm.list_name_plugin():
            info = self.plugins.get(name)
            if info is None or not info.ok:
                continue
            others = [p for n, p in self.pm.list_name_plugin() if n != name]
            before = dict(cli.commands)
            try:
                self.pm.subset_hook_caller("register_commands", others)(cli=cli)
            except Exception as exc:
                cli.commands.clear()
                cli.commands.update(before)
                self._fail(info, f"register_commands: {type(exc).__name__}: {exc}", keep=True)
                continue
            replaced = sorted(k for k, cmd in before.items() if cli.commands.get(k) is not cmd)
            if replaced:
                cli.commands.update({k: before[k] for k in replaced})
                self._fail(info, f"register_commands: command {', '.join(replaced)} already "
                           "exists; give the plugin's command another name", keep=True)


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
