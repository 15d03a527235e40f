#!/usr/bin/env bash
# Create .venv with torch, genkit (editable, with test tools) and the example plugin.
#
#   bash scripts/setup.sh
#
# TORCH_SPEC chooses the torch build (default: torch==2.13.0; a CPU wheel where the
# machine provides one, else PyPI's default build for your platform).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
torch_spec=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
# torch first, so the project's torch range is already met and no other build is pulled.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  pip install "$torch_spec"
fi
pip install -e ".[dev]"
pip install -e ./examples/genkit-plugin-flow
.venv/bin/genkit plugins
