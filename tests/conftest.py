"""Shared fixtures: offline hub, and the toy generator registered in an isolated registry."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch thread: tiny models on a shared 2-core machine run fastest so, and commands
# run in process (which pick threads from the machine) must not change it between tests.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def toy_registry():
    """The installed plugins plus the toy generator, as the process-wide registry."""
    from toy import ToyPlugin

    from genkit.discovery.registry import Registry, use_registry

    registry = Registry.discover()
    registry.register_plugin(ToyPlugin(), name="toy", distribution="genkit-tests")
    with use_registry(registry):
        yield registry


@pytest.fixture(scope="session")
def toy_env(tmp_path_factory):
    """Environment for subprocesses in which the toy generator is an installed plugin
    (a dist-info folder with an entry point, found by importlib.metadata)."""
    site = tmp_path_factory.mktemp("toy_site")
    info = site / "genkit_toy-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: genkit-toy\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[genkit]\ntoy = toy\n")
    tests_dir = Path(__file__).parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(tests_dir), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env
