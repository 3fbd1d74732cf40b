"""The health file read by the container's HEALTHCHECK.

First line: the exit code (0 healthy, 1 not); second line: a message in the
format users of vr-xcon's successor know ("All N sockets connected" /
"Expected N sockets but only M connected").  When xcon ends (any signal it
can handle, or an error), the file says ``1`` / ``xcon is not running (...)``
before the process exits, so it never outlives xcon as healthy.

What healthy means depends on the mode.  ``--p2p`` and ``--hub``: every
router connection is up.  ``--tap-listen`` / ``--raw-listen``: xcon plays a
router's NIC there, so it is healthy once it is ready for a client (the
device is open and the TCP port listens), as a router container is before
anything is linked to it; the message then says "Ready: M of N sockets
connected, listening for a client" until the client is there.  Rewritten atomically (write a
temporary file, then rename over) so a reader never sees half a file.

A write can fail (a full filesystem, say).  The content counts as written
only once the rename succeeded; until then it is tried again every
:data:`RETRY_EVERY` seconds, the failure is shown (``error``, ``errors``:
the API's ``/health`` and the metrics) and logged once when it starts and
once when a write succeeds again.  A file that says healthy when xcon has
something unhealthy to say and cannot is removed (removing needs no room;
a missing file is unhealthy to the check), and so is the file at exit if
``xcon is not running`` cannot be written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("xcon.health")

#: Seconds between tries while the file cannot be written.
RETRY_EVERY = 1.0
#: ``_written`` when xcon removed the file.
_GONE = ""


def healthy(connected: int, total: int, ready: int | None = None) -> bool:
    """Whether xcon is healthy with ``connected`` of ``total`` ports up and
    ``ready`` of them up or listening for a client (default: the connected
    ones): every port is up, or every port is ready."""
    return connected >= total or (ready is not None and ready >= total)


def health_status(connected: int, total: int, ready: int | None = None) -> tuple[int, str]:
    """The file's code (0 healthy, 1 not) and message, by :func:`healthy`."""
    if not healthy(connected, total, ready):
        return 1, f"Expected {total} sockets but only {connected} connected"
    if connected >= total:
        return 0, f"All {total} sockets connected"
    return 0, f"Ready: {connected} of {total} sockets connected, listening for a client"


def health_text(connected: int, total: int, ready: int | None = None) -> str:
    """The file's content: its code and message, a line each."""
    code, message = health_status(connected, total, ready)
    return f"{code}\n{message}\n"


class HealthFile:
    """Writes the health file when its content changes, and again until a
    write succeeds (``call_later(seconds, fn)``: the engine's, for the retries)."""

    def __init__(
        self, path: str | None, call_later: Callable[[float, Callable[[], None]], Any] | None = None
    ) -> None:
        self.path = path
        self.call_later = call_later
        self._want: str | None = None  # what the file should say
        self._written: str | None = None  # what it says, as written by xcon (None: unknown)
        self._final = False
        self._retry: Any = None
        #: The last write's error while the file is not what it should be, else None.
        self.error: str | None = None
        #: Writes that failed, all told.
        self.errors = 0
        self._failed = 0  # in this failure period
        self._failing_since = 0.0

    @property
    def ok(self) -> bool:
        """The file says what it should (or there is no file to write)."""
        return self.error is None

    def update(self, connected: int, total: int, ready: int | None = None) -> None:
        if not self._final:
            self._write(health_text(connected, total, ready))

    def say(self, code: int, message: str) -> None:
        """Make the file say ``code`` and ``message`` (the supervisor of
        ``--workers``: the workers' counts, and which worker is starting)."""
        if not self._final:
            self._write(f"{code}\n{message}\n")

    def stopped(self, why: str) -> None:
        """xcon is ending: unhealthy from now on, whatever is reported later.
        If that cannot be written, the file is removed (or that is logged)."""
        self._final = True
        self._cancel()
        if self._write(f"1\nxcon is not running ({why})\n") or not self.path:
            return
        if self._written == _GONE:
            return  # removed already (see _fail)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return
        except OSError as e:
            log.error(
                "cannot remove health file %s either (%s): it may still say what it said",
                self.path,
                e.strerror or e,
            )
            return
        log.error("removed health file %s: xcon could not write that it stopped", self.path)

    # -- writing ------------------------------------------------------------------
    def _write(self, text: str) -> bool:
        """Make the file say ``text``; returns whether it does."""
        if not self.path:
            return True
        if text == self._written:
            self._want = text
            self._succeeded()
            return True
        if text == self._want and self._retry is not None:
            return False  # failed already: the retry writes it
        self._want = text
        return self._try()

    def _try(self) -> bool:
        path, text = self.path, self._want
        assert path is not None and text is not None
        tmp = f"{path}.tmp.{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            self._fail(e)
            return False
        self._written = text
        self._succeeded()
        return True

    def _succeeded(self) -> None:
        self._cancel()
        if self.error is not None:
            log.warning(
                "health file %s written again, after %d failed writes in %.1f s",
                self.path,
                self._failed,
                time.monotonic() - self._failing_since,
            )
            self.error = None
            self._failed = 0

    def _fail(self, e: OSError) -> None:
        self.errors += 1
        self._failed += 1
        first = self.error is None
        self.error = f"cannot write {self.path}: {e.strerror or e}"
        if first:
            self._failing_since = time.monotonic()
            log.error(
                "health file: %s%s",
                self.error,
                "" if self._final else f"; retrying every {RETRY_EVERY:g} s",
            )
        want, written = self._want or "", self._written
        if want.startswith("1") and (written is None or written.startswith("0")):
            # The file may say healthy: better no file (unhealthy to the check).
            assert self.path is not None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                self._written = _GONE
            except OSError as e2:
                log.error("cannot remove health file %s either: %s", self.path, e2.strerror or e2)
            else:
                self._written = _GONE
                log.error(
                    "removed health file %s until it can be written (it must not say healthy)",
                    self.path,
                )
        if not self._final and self._retry is None and self.call_later is not None:
            self._retry = self.call_later(RETRY_EVERY, self._again)

    def _again(self) -> None:
        self._retry = None
        if self._want is not None and self._want != self._written:
            self._try()

    def _cancel(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
