"""Ctrl-C during training: the first asks the run to stop after its step (it saves a
checkpoint and says how to resume); the second stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def stop_on_interrupt(request_stop: Callable[[], None]) -> Iterator[None]:
    """Inside the block the first SIGINT calls ``request_stop``; a second one raises
    ``KeyboardInterrupt``. Outside the main thread (signals cannot be caught there) it
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    requested = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True
        request_stop()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
