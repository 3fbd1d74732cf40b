"""Waiting for a condition in tests: the one helper every ``wait_*`` uses.

A wait that times out raises :class:`WaitTimeout` (an ``AssertionError``, so
pytest shows it as a failed check) naming what was awaited and what was seen;
it never returns a flag that a caller could forget to check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class WaitTimeout(AssertionError):
    """A condition a test waited for did not come true in time."""


def wait_until(
    pred: Callable[[], bool],
    timeout: float,
    what: str | Callable[[], str],
    cond: threading.Condition | None = None,
    poll: float = 0.01,
) -> None:
    """Return once ``pred()`` is true; raise :class:`WaitTimeout` after ``timeout`` s.

    With ``cond``, ``pred`` is evaluated holding it and the wait wakes on its
    notifications (and at least every 50 ms); otherwise ``pred`` is polled.
    ``what`` (or what it returns, computed only on failure) names the condition
    and the state seen, for the failure message.
    """
    deadline = time.monotonic() + timeout
    if cond is not None:
        with cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                cond.wait(min(left, 0.05))
            else:
                return
    else:
        while not pred():
            if time.monotonic() >= deadline:
                break
            time.sleep(poll)
        else:
            return
    text = what() if callable(what) else what
    raise WaitTimeout(f"timed out after {timeout:g} s waiting for {text}")
