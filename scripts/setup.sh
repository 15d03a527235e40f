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
# an editable install leaves genkit's own modules uncompiled; where PYTHONDONTWRITEBYTECODE
# is set, every start-up would compile them again (~0.1 s of `genkit --help`)
.venv/bin/python -m compileall -q genkit plugins examples/genkit-plugin-flow >/dev/null
# Chromium for the browser test of `genkit serve`'s page (tests/test_serve_browser.py): Debian's
# package, since Playwright's own browser download needs a host we may not reach. Best effort:
# without apt-get, or if the install fails, setup goes on and that one test skips.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1; then
  sudo_=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_="sudo -n"; fi
  { $sudo_ apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -q chromium; } \
    >/dev/null 2>&1 || echo "setup: could not install chromium; the browser test will skip" >&2
fi
.venv/bin/genkit plugins
