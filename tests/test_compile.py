"""torch.compile in training: when it is on by default, where its kernels are cached, and
that a compiled run trains and saves exactly the weights an eager run would."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import genkit
from genkit.compiling import (
    AUTO_COMPILE_MIN_SECONDS,
    AUTO_COMPILE_MIN_STEPS,
    compile_cache_dir,
    should_compile,
)
from genkit.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_compile_is_on_by_default_only_for_long_cuda_runs():
    assert not should_compile(None, CPU, 10 * AUTO_COMPILE_MIN_STEPS)
    assert should_compile(None, CUDA, AUTO_COMPILE_MIN_STEPS)
    assert not should_compile(None, CUDA, AUTO_COMPILE_MIN_STEPS - 1)
    assert should_compile(None, CUDA, 1, budget_seconds=AUTO_COMPILE_MIN_SECONDS)
    assert not should_compile(None, CUDA, 10**6, budget_seconds=60)
    # what the user asks for wins either way
    assert should_compile(True, CPU, 1) and not should_compile(False, CUDA, 10**6)


def test_compiled_kernels_go_to_genkits_cache_unless_the_user_chose(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("GENKIT_CACHE", str(tmp_path / "gk"))
    assert compile_cache_dir() == tmp_path / "gk" / "inductor"
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "gk" / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine"


def test_compile_option_is_checked_and_reaches_the_cli(toy_registry):
    with pytest.raises(ConfigError):
        genkit.create("toy").train(steps=1, compile="yes please", log_with="none",
                                   progress=False, device="cpu")
    from click.testing import CliRunner

    from genkit.cli import cli

    text = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "--compile / --no-compile" in text


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_a_compiled_run_matches_the_eager_run(toy_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    runs = {}
    for compiled in (False, True):
        g = genkit.create("toy")
        report = g.train(steps=40, batch_size=32, device="cpu", compile=compiled,
                         log_with="none", progress=False, out=tmp_path / f"run-{compiled}")
        runs[compiled] = (g, report)
    eager, compiled = runs[False][0], runs[True][0]
    assert runs[True][1].final_loss < runs[True][1].first_loss
    for name, value in eager.net.state_dict().items():
        torch.testing.assert_close(compiled.net.state_dict()[name], value, rtol=1e-4, atol=1e-5)
    summary = json.loads((tmp_path / "run-True" / "model" / "genkit.json").read_text())
    assert summary["training"]["compiled"] is True
    reloaded = genkit.load(tmp_path / "run-True" / "model")  # no _orig_mod. prefixes
    torch.testing.assert_close(reloaded.net.state_dict(), compiled.net.state_dict())
    assert any((tmp_path / "inductor").iterdir())  # the kernels were cached there
