"""Hold SIGINT and SIGTERM over a short critical section: the driver's finalisation after a stop.

A first Ctrl-C (or SIGTERM) stops a search; the driver then marks the trials in flight interrupted and writes
summary.json. A second Ctrl-C a moment later (an impatient user, a terminal sending SIGINT to Ray's processes and the
driver alike, a supervisor's SIGTERM after SIGINT) must not cut that short: the run would be left without a summary
and with trials RUNNING. Inside :func:`signals_held` such signals are recorded, not acted on; the previous handlers
come back afterwards. Only the main thread can install handlers; elsewhere the section runs unprotected.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_held(signums: tuple[int, ...] = HELD) -> Iterator[list[int]]:
    """Run the body with ``signums`` recorded instead of handled; yields the list of those that arrived."""
    arrived: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return

    def hold(signum, frame) -> None:
        arrived.append(signum)

    previous = {}
    try:
        for signum in signums:
            previous[signum] = signal.signal(signum, hold)
        yield arrived
    finally:
        for signum, handler in previous.items():
            if handler is None:     # installed from C (not restorable): Python's defaults
                handler = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, handler)


__all__ = ["HELD", "signals_held"]
