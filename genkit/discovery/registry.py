"""Plugin discovery: entry points in the ``genkit`` group, loaded lazily and in isolation.

Discovery imports only each plugin's top-level module, which registers *specs* (names and
``"module:attr"`` paths). A plugin that fails to import, to validate or to register is
recorded with its error and skipped; every other plugin keeps working, whatever the
plugin raised (``SystemExit`` included) and whatever it printed (sent to stderr, so
``genkit plugins --json`` stays JSON). Nothing heavy (torch, diffusers, transformers) is
imported here.

genkit's own data sources are a plugin too (:data:`BUILTIN_PLUGINS`), registered through
the same hook as third-party ones, as llm registers its default plugins.

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
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any, TypeVar

import pluggy

from genkit.discovery import hookspecs
from genkit.discovery.requirements import (
    DistributionFacts,
    distribution_facts,
    normalise,
    satisfies,
)
from genkit.discovery.specs import (
    MODALITIES,
    DataSourceSpec,
    GeneratorSpec,
    PluginInfo,
    PluginState,
    PluginStatus,
    check_target,
)
from genkit.errors import DataError, PluginClashError, PluginError
from genkit.version import __version__

ENTRY_POINT_GROUP = "genkit"
BUILTIN = "genkit"  # the plugin name of genkit's own data sources
#: modules of genkit itself that register through the plugin hooks
BUILTIN_PLUGINS = ("genkit.data.builtin",)

T = TypeVar("T")


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, whatever the exception said."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what plugin code writes to stdout, through Python or straight to file
    descriptor 1 (C extensions), to stderr instead."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedding host): Python-level only
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _guarded(fn: Callable[[], T]) -> T:
    """Run plugin code: its prints go to stderr (stdout may be JSON), and every exception
    it raises, ``SystemExit`` included, comes back as a plain ``Exception`` (Ctrl-C still
    interrupts)."""
    try:
        with _stdout_to_stderr():
            return fn()
    except KeyboardInterrupt:
        raise
    except Exception:
        raise
    except BaseException as exc:  # SystemExit, GeneratorExit: a plugin must not end genkit
        raise PluginError(_one_line(exc)) from exc


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
        for module in BUILTIN_PLUGINS:  # not listed in self.plugins: they are genkit itself
            self._register(importlib.import_module(module), PluginInfo(BUILTIN))

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
        facts: dict[int, DistributionFacts] = {}
        entries = []
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            if id(dist) not in facts:
                facts[id(dist)] = distribution_facts(dist)
            entries.append((ep, facts[id(dist)]))
        # Sorted by plugin name, then distribution: the order never depends on sys.path.
        for ep, dist_facts in sorted(entries, key=lambda e: (e[0].name, e[1].name or "")):
            registry._load_entry_point(ep, dist_facts, allow, deny)
        return registry

    def _load_entry_point(self, ep: metadata.EntryPoint, facts: DistributionFacts,
                          allow: list[str] | None, deny: list[str]) -> None:
        """Import one plugin (unless disabled or incompatible) and register it.

        Two distributions may use one entry-point name: the second is registered as
        ``"NAME (DISTRIBUTION)"``; both work (generator names are what must be unique).
        """
        name = ep.name if ep.name not in self.plugins else f"{ep.name} ({facts.name})"
        info = PluginInfo(name, distribution=facts.name, version=facts.version)
        self.plugins[name] = info
        names = {normalise(ep.name), normalise(facts.name or "")}
        if (allow is not None and not names & {normalise(a) for a in allow}) \
                or names & {normalise(d) for d in deny}:
            info.status = PluginStatus(PluginState.DISABLED)
            self._trace(f"plugin {name!r} disabled by GENKIT_LOAD_PLUGINS/GENKIT_DISABLE_PLUGINS")
            return
        needed = facts.genkit_requirement
        if needed and not satisfies(__version__, needed):
            self._fail(info, f"needs genkit {needed} (this is genkit {__version__})",
                       PluginState.INCOMPATIBLE)
            return
        start = time.perf_counter()
        try:
            module = _guarded(ep.load)
        except Exception as exc:
            info.import_ms = (time.perf_counter() - start) * 1000
            self._fail(info, _one_line(exc.__cause__ if isinstance(exc, PluginError)
                                       and exc.__cause__ else exc))
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
            self._fail(info, _one_line(exc))
            return
        generators: list[GeneratorSpec] = []
        sources: list[DataSourceSpec] = []
        caller = self.pm.subset_hook_caller
        others = [p for n, p in self.pm.list_name_plugin() if n != info.name]
        try:
            _guarded(lambda: caller("register_generators", others)(
                register=lambda *a, **k: generators.append(self._generator_spec(info, *a, **k))))
            _guarded(lambda: caller("register_data_sources", others)(
                register=lambda *a, **k: sources.append(self._source_spec(info, *a, **k))))
        except Exception as exc:
            self.pm.unregister(name=info.name)
            self._fail(info, _one_line(exc))
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
                self.plugins[name].status = PluginStatus()
        self._clashing &= set(reasons)
        for name, why in reasons.items():
            info = self.plugins.get(name)
            if info is None:
                continue
            reason = f"{'; '.join(why)}; disable one with GENKIT_DISABLE_PLUGINS"
            if info.status.reason != reason and (info.ok or name in self._clashing):
                self._clashing.add(name)
                self._fail(info, reason, keep=True)

    def _describe(self, plugin: str) -> str:
        info = self.plugins.get(plugin)
        if info is None:
            return f"plugin {plugin!r} (built in)" if plugin == BUILTIN else f"plugin {plugin!r}"
        where = f"{info.distribution} {info.version or ''}".strip() if info.distribution \
            else "not installed"
        return f"plugin {plugin!r} ({where})"

    def _generator_spec(self, info: PluginInfo, name: str, target: str, modality: str = "image",
                        summary: str = "", default_checkpoint: str | None = None) -> GeneratorSpec:
        if modality not in MODALITIES:
            raise PluginError(f"generator {name!r}: modality must be one of {MODALITIES}, "
                              f"got {modality!r}")
        check_target(target, f"generator {name!r}")
        return GeneratorSpec(name, target, modality, summary, info.name, info.distribution,
                             info.version, default_checkpoint)

    def _source_spec(self, info: PluginInfo, scheme: str, loader: str, modality: str = "image",
                     summary: str = "") -> DataSourceSpec:
        check_target(loader, f"data source {scheme!r}")
        return DataSourceSpec(scheme, loader, modality, summary, info.name)

    def _fail(self, info: PluginInfo, reason: str, state: PluginState = PluginState.FAILED,
              keep: bool = False) -> None:
        """Record that a plugin failed (``keep``: its generators stay listed); in strict
        mode raise instead."""
        info.status = PluginStatus(state, " ".join(reason.split()))  # one line, always
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
        if info.status.state is PluginState.DISABLED:
            return f" (plugin {name!r} is disabled by GENKIT_LOAD_PLUGINS/GENKIT_DISABLE_PLUGINS)"
        return f" (plugin {name!r} did not load: {info.status}; see 'genkit plugins')"

    def data_source(self, scheme: str) -> DataSourceSpec:
        specs = self._sources.get(scheme)
        if not specs:
            known = ", ".join(sorted(self._sources))
            raise DataError(f"unknown data source {scheme!r}; available: {known}")
        if len(specs) > 1:
            who = " and ".join(self._describe(s.plugin) for s in specs)
            raise PluginClashError(f"data source {scheme!r} is provided by {who}; uninstall "
                                   "one or disable it with GENKIT_DISABLE_PLUGINS")
        return specs[0]

    def data_source_specs(self) -> list[DataSourceSpec]:
        return [specs[0] for _, specs in sorted(self._sources.items())]

    def training_callbacks(self) -> list[tuple[str, Any]]:
        """``(plugin name, callback)`` for every training callback the loaded plugins
        register (called per training run: callbacks may hold state). A plugin whose hook
        fails is recorded, not raised (except in strict mode)."""
        found: list[tuple[str, Any]] = []
        for name, _plugin in self.pm.list_name_plugin():
            info = self.plugins.get(name)
            if info is None or not info.ok:
                continue
            others = [p for n, p in self.pm.list_name_plugin() if n != name]
            hook = self.pm.subset_hook_caller("register_callbacks", others)
            try:
                _guarded(lambda: hook(register=lambda cb: found.append((name, cb))))  # noqa: B023
            except Exception as exc:
                self._fail(info, f"register_callbacks: {_one_line(exc)}", keep=True)
        return found

    def add_commands(self, cli: Any) -> None:
        """Let every loaded plugin add its click commands; failures are recorded, not raised
        (except in strict mode). A plugin may add commands, never replace one."""
        for name, _plugin in self.pm.list_name_plugin():
            info = self.plugins.get(name)
            if info is None or not info.ok:
                continue
            others = [p for n, p in self.pm.list_name_plugin() if n != name]
            before = dict(cli.commands)
            hook = self.pm.subset_hook_caller("register_commands", others)
            try:
                _guarded(lambda: hook(cli=cli))  # noqa: B023 (called at once)
            except Exception as exc:
                cli.commands.clear()
                cli.commands.update(before)
                self._fail(info, f"register_commands: {_one_line(exc)}", keep=True)
                continue
            replaced = sorted(k for k, cmd in before.items() if cli.commands.get(k) is not cmd)
            if replaced:
                cli.commands.update({k: before[k] for k in replaced})
                self._fail(info, f"register_commands: command {', '.join(replaced)} already "
                           "exists; give the plugin's command another name", keep=True)


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
