"""No progress bars from transformers and diffusers while genkit opens or saves a model.

"Loading weights", "Loading pipeline components" and "Writing model shards" bars on
stderr would interleave with genkit's own progress and one-line messages; every plugin
that opens Hugging Face models wraps the call in :func:`quiet_progress`. Download bars
(``huggingface_hub``) are left alone: a multi-gigabyte fetch should show progress.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

_LIBRARIES = ("transformers.utils.logging", "diffusers.utils.logging")


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Inside the block transformers and diffusers (those installed) show no progress
    bars; each is restored afterwards as it was."""
    restore = []
    for name in _LIBRARIES:
        try:
            logging = importlib.import_module(name)
        except ImportError:
            continue
        if logging.is_progress_bar_enabled():
            logging.disable_progress_bar()
            restore.append(logging)
    try:
        yield
    finally:
        for logging in restore:
            logging.enable_progress_bar()
