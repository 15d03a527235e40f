"""scripts/gpu_check.py skips cleanly where there is no CUDA GPU (its real run needs one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu_check.py"


def test_without_a_gpu_it_skips_with_exit_status_0() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: run scripts/gpu_check.py itself")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "no CUDA GPU: skipped"
