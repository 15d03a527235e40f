"""The conformance kit itself: it passes a correct generator, catches each way of breaking
the contract with a message that says what to fix, and its pytest fixtures isolate."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from toy import ToyConfig, ToyGenerator, ToyPlugin

import genkit
from genkit.discovery.registry import get_registry
from genkit.testing import ConformanceError, check_generator, isolated_registry

FAST = {"steps": 2, "batch_size": 8, "n": 3}


# ----------------------------------------------- generators that break one promise each
class BatchDependent(ToyGenerator):
    def generate(self, seeds, conditions, options, stream=None):
        return super().generate([s + len(seeds) for s in seeds], conditions, options)


class GlobalRandom(ToyGenerator):
    def generate(self, seeds, conditions, options, stream=None):
        shift = [int(torch.randint(0, 1000, ())) for _ in seeds]  # the global RNG
        return super().generate([s + d for s, d in zip(seeds, shift)], conditions, options)


class SeedIgnoring(ToyGenerator):
    def generate(self, seeds, conditions, options, stream=None):
        return super().generate([7] * len(seeds), conditions, options)


class Forgetful(ToyGenerator):
    def load_weights(self, directory):
        """Reads nothing back: a reloaded model keeps its random initial weights."""


class Pickler(ToyGenerator):
    def save_weights(self, directory):
        super().save_weights(directory)
        torch.save(self.net.state_dict(), directory / "net.pt")


class Frozen(ToyGenerator):
    def training_step(self, batch, ctx):
        return {"loss": ctx.models["net"](batch["image"].flatten(1)).sum() * 0.0}


@dataclasses.dataclass
class LaxConfig(ToyConfig):
    def __post_init__(self) -> None:
        """No range checks: hidden=-1 reaches torch."""


class Unchecked(ToyGenerator):
    Config = LaxConfig


@pytest.mark.parametrize("cls, message", [
    (BatchDependent, "sample 0 differs when drawn alone and in a batch"),
    (GlobalRandom, "(or it reads the global RNG)"),
    (SeedIgnoring, "another seed gave the very same samples"),
    (Forgetful, "save_weights/load_weights must round-trip every weight"),
    (Pickler, "pickle-format files ['net.pt']"),
    (Frozen, "training did not change any weight"),
    (Unchecked, "hidden=-1 crashed with RuntimeError"),
])
def test_each_broken_promise_is_caught_with_a_fix(cls, message):
    with pytest.raises(ConformanceError) as info:
        check_generator(cls, name="broken-toy", **FAST)
    assert str(info.value).startswith("generator 'broken-toy': ")
    assert message in str(info.value)


def test_a_correct_generator_class_passes_without_touching_the_process_registry():
    before = get_registry()
    report = check_generator(ToyGenerator, name="toy-class", steps=30, batch_size=16,
                             expect_lower_loss=True, bad_configs=[{"hidden": 0}])
    assert report.final_loss < report.first_loss
    assert [c.split(":")[0] for c in report.checks] == [
        "class", "create", "config", "train", "sample", "save/load"]
    assert get_registry() is before and "toy-class" not in before.generator_names()


def test_a_bad_config_that_is_accepted_fails_the_check():
    with pytest.raises(ConformanceError, match=r"the bad config \{'noise': 0.0\} was accepted"):
        check_generator(ToyGenerator, name="toy", bad_configs=[{"noise": 0.0}], **FAST)


# ------------------------------------------------------------------ fixtures and helpers
def test_genkit_registry_fixture_is_empty_and_isolated(genkit_registry):
    assert get_registry() is genkit_registry
    assert genkit.generators() == []  # installed plugins were not loaded
    genkit_registry.register_plugin(ToyPlugin(), name="toy")
    assert [s.name for s in genkit.generators()] == ["toy"]
    genkit_registry.unregister_plugin("toy")
    assert genkit.generators() == []


def test_isolated_registry_restores_the_previous_one():
    before = get_registry()
    with isolated_registry(("toy", ToyPlugin())) as registry:
        assert get_registry() is registry and registry.generator_names() == ["toy"]
    assert get_registry() is before


def test_genkit_cli_fixture_runs_commands_against_the_isolated_registry(genkit_registry,
                                                                        genkit_cli):
    genkit_registry.register_plugin(ToyPlugin(), name="toy", distribution="genkit-tests")
    result = genkit_cli.invoke(["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["name"], r["distribution"], r["status"]) for r in rows] == [
        ("toy", "genkit-tests", "ok")]
    result = genkit_cli.invoke(["sample", "--plugin", "nope"])
    assert result.exit_code == 2 and "unknown generator 'nope'; available: toy" in result.stderr


def test_the_kit_is_a_pytest_plugin_that_imports_no_torch(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("genkit")
    probe = "import sys, genkit.testing; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "False"


def test_a_class_defined_in_a_function_is_refused_with_a_fix():
    class Local(ToyGenerator):
        pass

    with pytest.raises(ConformanceError, match="define the generator class at module level"):
        check_generator(Local)


def test_the_check_leaves_the_global_rng_as_it_was():
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    check_generator(ToyGenerator, name="toy", **FAST)  # training and sampling reseed inside
    assert torch.equal(torch.rand(3), expected)
