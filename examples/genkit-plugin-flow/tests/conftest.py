"""Tests of the example plugin run offline, on the CPU, against the *installed* package
(genkit must find it through its entry point: pip install ./examples/genkit-plugin-flow)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
