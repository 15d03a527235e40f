"""Plugin discovery and control: entry points, failure isolation, allow/deny lists,
strict and trace modes, plugin commands, and a light start-up.

Broken, incompatible, clashing and duplicate plugins are real installed distributions
(``tests/fixtures/<case>/``: a ``*.dist-info`` folder beside the package, no pip): a test
puts the folder on ``sys.path`` (or ``PYTHONPATH`` for a subprocess) and discovers.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import click
import pytest

from genkit.discovery.registry import Registry
from genkit.errors import PluginClashError, PluginError
from genkit.plugin import hookimpl
from genkit.testing import CliRunner, isolated_registry, run_genkit

FIXTURES = Path(__file__).parent / "fixtures"
BUILTINS = ("diffusion", "gan", "gpt", "vae")
FIXTURE_MODULES = ("genkit_broken_plugin", "genkit_future_plugin", "genkit_clash_plugin",
                   "genkit_badhook_plugin", "genkit_dupe_plugin")
CONTROL_VARS = ("GENKIT_LOAD_PLUGINS", "GENKIT_DISABLE_PLUGINS", "GENKIT_STRICT_PLUGINS",
                "GENKIT_TRACE_PLUGINS")


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    """No plugin-control variables from the caller's shell; fixture modules forgotten after."""
    for var in CONTROL_VARS:
        monkeypatch.delenv(var, raising=False)
    yield
    for name in list(sys.modules):
        if name.split(".")[0] in FIXTURE_MODULES:
            del sys.modules[name]


@pytest.fixture
def install(monkeypatch):
    """``install("broken", "clash")`` puts those fixture distributions on sys.path."""

    def add(*cases: str) -> None:
        for case in cases:
            monkeypatch.syspath_prepend(str(FIXTURES / case))

    return add


def statuses(registry: Registry) -> dict[str, str]:
    return {key: str(info.status) for key, info in registry.plugins.items()}


# --------------------------------------------------------------------------- discovery
def test_builtin_families_are_plugins_found_through_entry_points():
    registry = Registry.discover()
    for name in BUILTINS:
        info = registry.plugins[name]
        assert str(info.status) == "ok", info.status
        assert (info.distribution, info.generators) == ("genkit", [name])
        assert registry.generator(name).target.startswith(f"genkit_{name}.")


def test_broken_plugin_is_reported_and_every_other_plugin_works(install):
    install("broken")
    registry = Registry.discover()
    info = registry.plugins["broken"]
    assert str(info.status).startswith("failed: ModuleNotFoundError")
    assert "genkit_no_such_dependency" in str(info.status)
    assert (info.distribution, info.version, info.generators) == ("genkit-broken-plugin",
                                                                  "0.1.0", [])
    assert all(registry.plugins[name].ok for name in BUILTINS)
    assert set(BUILTINS) <= set(registry.generator_names())


def test_incompatible_plugin_is_skipped_without_being_imported(install):
    install("incompatible")
    registry = Registry.discover()
    info = registry.plugins["future"]
    assert str(info.status).startswith("incompatible: needs genkit >=99 (this is genkit 0.1.0")
    assert "genkit_future_plugin" not in sys.modules  # importing it raises
    assert all(registry.plugins[name].ok for name in BUILTINS)


def test_generator_name_clash_names_both_plugins_and_the_rest_keeps_working(install,
                                                                              monkeypatch):
    install("clash")
    registry = Registry.discover()
    assert "genkit-clash-plugin" in str(registry.plugins["gan"].status)
    assert "plugin 'gan' (genkit 0.1.0)" in str(registry.plugins["clash"].status)
    with pytest.raises(PluginClashError, match="genkit-clash-plugin.*GENKIT_DISABLE_PLUGINS"):
        registry.generator("gan")
    assert registry.generator("clash-extra").plugin == "clash"  # its other generator works
    assert registry.generator("vae").plugin == "vae"

    monkeypatch.setenv("GENKIT_DISABLE_PLUGINS", "clash")
    registry = Registry.discover()
    assert registry.plugins["gan"].ok and str(registry.plugins["clash"].status) == "disabled"
    assert registry.generator("gan").target == "genkit_gan.generator:GANGenerator"


def test_hookspec_validation_error_is_reported_on_one_line(install):
    install("badhook")
    registry = Registry.discover()
    status = str(registry.plugins["badhook"].status)
    assert status.startswith("failed: PluginValidationError") and "'add'" in status
    assert "\n" not in status
    assert "badhook" not in registry.generator_names()


def test_duplicate_entry_point_name_loads_both_distributions(install):
    install("dupe")
    registry = Registry.discover()
    assert registry.plugins["gan"].distribution == "genkit"  # the order is by distribution
    twin = registry.plugins["gan (genkit-dupe-plugin)"]
    assert twin.ok and twin.generators == ["dupe"]
    assert registry.generator("gan").plugin == "gan"


@pytest.mark.parametrize("requires, needed", [
    (["torch>=2", "genkit>=99"], ">=99"),
    (["genkit (>=0.1,<0.2)"], ">=0.1,<0.2"),
    (["genkit-extras>=3", "genkit_other"], None),  # other distributions
    (["genkit"], None),  # no version constraint
    (["genkit[cli]>=1 ; python_version >= '3'"], ">=1"),  # a marker that holds
    (["genkit>=5 ; extra == 'test'"], None),  # an optional extra
    (["genkit @ https://example.org/genkit.whl"], None),
])
def test_genkit_requirement_is_read_from_metadata(requires, needed):
    from genkit.discovery.requirements import genkit_requirement

    assert genkit_requirement(requires) == needed


class _Offers:
    """A plugin object that registers whatever it is given (for in-process cases)."""

    def __init__(self, generators=(), sources=()) -> None:
        self.generators, self.sources = generators, sources

    @hookimpl
    def register_generators(self, register):
        for args in self.generators:
            register(*args)

    @hookimpl
    def register_data_sources(self, register):
        for args in self.sources:
            register(*args)


class _Typo:
    @hookimpl
    def register_generator(self, register):  # not a genkit hook: a typo
        register("typo", target="x:Y")


@pytest.mark.parametrize("plugin, message", [
    (_Typo(), "failed: PluginError: unknown hook register_generator; genkit's hooks are "),
    (_Offers([("bad", "no_colon_here")]), "not of the form 'module:attribute'"),
    (_Offers([("bad", "m:C", "video")]), "modality must be one of"),
    (_Offers([("bad",)]), "failed: TypeError"),
])
def test_invalid_plugins_fail_alone(plugin, message):
    registry = Registry()
    good = registry.register_plugin(_Offers([("good", "m:C")]), name="good")
    info = registry.register_plugin(plugin, name="bad")
    assert message in str(info.status)
    assert good.ok and registry.generator_names() == ["good"]
    assert registry.pm.get_plugin("bad") is None


def test_clash_clears_when_the_rival_is_unregistered():
    registry = Registry()
    registry.register_plugin(_Offers([("x", "a:X"), ("y", "a:Y")]), name="a")
    registry.register_plugin(_Offers([("x", "b:X")]), name="b")
    assert not registry.plugins["a"].ok and not registry.plugins["b"].ok
    assert registry.generator("y").target == "a:Y"
    with pytest.raises(PluginClashError, match="plugin 'a'.*plugin 'b'"):
        registry.generator("x")
    registry.unregister_plugin("b")
    assert registry.plugins["a"].ok and registry.generator("x").target == "a:X"


def test_data_source_clash_is_an_error_naming_both():
    registry = Registry()
    info = registry.register_plugin(_Offers(sources=[("digits", "m:load")]), name="mine")
    assert "data source 'digits' is also provided by plugin 'genkit' (built in)" in str(info.status)
    with pytest.raises(PluginClashError, match="'digits'"):
        registry.data_source("digits")
    assert registry.data_source("pydoc").plugin == "genkit"


def test_registering_a_name_twice_is_refused():
    registry = Registry()
    registry.register_plugin(_Offers([("x", "m:X")]), name="p")
    with pytest.raises(PluginError, match="already registered"):
        registry.register_plugin(_Offers(), name="p")


# ----------------------------------------------------------------- allow and deny lists
@pytest.mark.parametrize("env, enabled", [
    ({"GENKIT_LOAD_PLUGINS": "gpt, vae"}, {"gpt", "vae"}),
    ({"GENKIT_LOAD_PLUGINS": ""}, set()),
    ({"GENKIT_DISABLE_PLUGINS": "broken,gan"}, {"diffusion", "gpt", "vae"}),
    ({"GENKIT_DISABLE_PLUGINS": "genkit"}, {"broken"}),  # a distribution name: all built-ins
    ({"GENKIT_LOAD_PLUGINS": "Genkit_Broken.Plugin,GPT"}, {"broken", "gpt"}),  # any spelling
    ({"GENKIT_LOAD_PLUGINS": "gan,gpt", "GENKIT_DISABLE_PLUGINS": "gan"}, {"gpt"}),
])
def test_allow_and_deny_lists_apply_before_import(install, monkeypatch, env, enabled):
    install("broken")
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    registry = Registry.discover()
    found = statuses(registry)
    for name in (*BUILTINS, "broken"):
        if name not in enabled:
            assert found[name] == "disabled", name  # broken was never imported
        elif name == "broken":
            assert found[name].startswith("failed: ModuleNotFoundError")  # it was imported
        else:
            assert found[name] == "ok", name
    assert set(registry.generator_names()) & set(BUILTINS) == enabled - {"broken"}


def test_a_disabled_generator_says_why_it_is_missing(monkeypatch):
    monkeypatch.setenv("GENKIT_DISABLE_PLUGINS", "gan")
    with pytest.raises(PluginError, match="plugin 'gan' is disabled by GENKIT_LOAD_PLUGINS"):
        Registry.discover().generator("gan")


# ------------------------------------------------------------------ strict and trace
@pytest.mark.parametrize("case, plugin", [("broken", "broken"), ("incompatible", "future"),
                                          ("clash", "gan"), ("badhook", "badhook")])
def test_strict_mode_turns_any_plugin_failure_into_an_error(install, monkeypatch, case, plugin):
    install(case)
    monkeypatch.setenv("GENKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=rf"plugin '{plugin}' .*GENKIT_STRICT_PLUGINS is set"):
        Registry.discover()


def test_strict_mode_passes_when_every_plugin_loads(monkeypatch):
    monkeypatch.setenv("GENKIT_STRICT_PLUGINS", "1")
    assert all(info.ok for info in Registry.discover().plugins.values())


def test_trace_mode_logs_imports_and_hook_calls_with_timings(install, monkeypatch, capsys):
    install("broken")
    monkeypatch.setenv("GENKIT_TRACE_PLUGINS", "1")
    monkeypatch.setenv("GENKIT_DISABLE_PLUGINS", "diffusion")
    Registry.discover()
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("genkit trace: import plugin 'gpt' (genkit_gpt) ")
               and line.endswith(" ms") for line in lines)
    assert any(line.startswith("genkit trace: hook register_generators [gpt] ") for line in lines)
    assert "genkit trace: plugin 'diffusion' disabled by GENKIT_LOAD_PLUGINS/" \
           "GENKIT_DISABLE_PLUGINS" in lines
    assert any(line.startswith("genkit trace: plugin 'broken': failed: ModuleNotFound")
               for line in lines)


# ---------------------------------------------------------------------- plugin commands
class _Commands:
    @hookimpl
    def register_commands(self, cli):
        @cli.command(name="hello")
        def hello() -> None:
            """Say hello (a plugin command)."""
            click.echo("hello from a plugin")


class _Hijack:
    @hookimpl
    def register_commands(self, cli):
        @cli.command(name="train")
        def train() -> None:
            click.echo("hijacked")


def test_plugins_add_commands_but_cannot_replace_one():
    with isolated_registry(("commands", _Commands()), ("hijack", _Hijack())) as registry:
        runner = CliRunner()
        assert runner.invoke(["hello"]).stdout == "hello from a plugin\n"
        result = runner.invoke(["train", "--help"])
        assert "hijacked" not in result.output and "--out" in result.output
        assert registry.plugins["commands"].ok
        assert str(registry.plugins["hijack"].status) == (
            "failed: register_commands: command train already exists; give the plugin's "
            "command another name")
    from genkit.cli import cli

    assert "hello" not in cli.commands  # the real command group is untouched


# ---------------------------------------------------------------- the CLI, for real
def test_genkit_plugins_json_reports_every_failure_while_the_cli_works():
    paths = [FIXTURES / case for case in ("broken", "incompatible", "clash")]
    result = run_genkit("plugins", "--json", python_path=paths)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["broken"]["status"].startswith("failed: ModuleNotFoundError")
    assert rows["future"]["status"].startswith("incompatible: needs genkit >=99")
    assert rows["clash"]["status"].startswith("failed: generator 'gan' is also provided by")
    assert rows["broken"]["distribution"] == "genkit-broken-plugin"
    for name in ("diffusion", "gpt", "vae"):
        assert rows[name]["status"] == "ok"
        assert rows[name]["generators"][0]["name"] == name
        assert rows[name]["import_ms"] >= 0
    assert rows["gpt"]["generators"][0]["modality"] == "text"
    help_text = run_genkit("--help", python_path=paths)
    assert help_text.returncode == 0 and "train" in help_text.stdout


def test_strict_mode_cli_exits_2_with_one_line():
    result = run_genkit("plugins", python_path=[FIXTURES / "broken"],
                        env={"GENKIT_STRICT_PLUGINS": "1"})
    assert result.returncode == 2
    assert result.stderr.startswith("Error: plugin 'broken' (genkit-broken-plugin): failed: ")
    assert len(result.stderr.strip().splitlines()) == 1


HEAVY = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "sklearn",
         "tokenizers", "PIL", "numpy")
_PROBE = f"""
import sys
from genkit.cli import main
for argv in (["--help"], ["plugins", "--json"]):
    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code, exc.code
print("HEAVY=" + ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
"""


def test_help_and_plugins_never_import_the_model_libraries():
    import subprocess

    paths = [str(FIXTURES / case) for case in ("broken", "incompatible", "clash")]
    env = {**__import__("os").environ, "PYTHONPATH": ":".join(paths)}
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "HEAVY="


# ------------------------------------------------------------ the example third party
def test_example_flow_plugin_is_found_only_through_its_entry_point(monkeypatch):
    try:
        dist = metadata.distribution("genkit-plugin-flow")
    except metadata.PackageNotFoundError:
        pytest.skip("genkit-plugin-flow is not installed: pip install ./examples/genkit-plugin-flow")
    assert [(ep.name, ep.value) for ep in dist.entry_points if ep.group == "genkit"] == [
        ("flow", "genkit_flow")]
    own = metadata.distribution("genkit").entry_points
    assert "flow" not in [ep.name for ep in own if ep.group == "genkit"]
    registry = Registry.discover()
    spec = registry.generator("flow")
    assert (spec.distribution, spec.modality, spec.plugin) == ("genkit-plugin-flow", "image",
                                                               "flow")
    monkeypatch.setenv("GENKIT_DISABLE_PLUGINS", "genkit-plugin-flow")
    assert "flow" not in Registry.discover().generator_names()
