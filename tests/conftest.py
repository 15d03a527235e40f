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
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def toy_registry():
    """The installed plugins plus the toy generator, as the process-wide registry."""
    from toy import ToyPlugin

    from genkit.registry import Registry, use_registry

    registry = Registry.discover()
    registry.register_plugin(ToyPlugin(), name="toy", distribution="genkit-tests")
    with use_registry(registry):
        yield registry
