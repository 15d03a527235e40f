"""Where genkit keeps what it can rebuild: its cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """genkit's cache folder: ``$GENKIT_CACHE``, else ``$XDG_CACHE_HOME/genkit``, else
    ``~/.cache/genkit``."""
    if os.environ.get("GENKIT_CACHE"):
        return Path(os.environ["GENKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "genkit"
