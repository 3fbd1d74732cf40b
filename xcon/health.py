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
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("xcon.health")


def health_text(connected: int, total: int, ready: int | None = None) -> str:
    """The file's content: ``connected`` of ``total`` ports up, ``ready`` of them
    up or listening for a client (default: the connected ones)."""
    if connected >= total:
        return f"0\nAll {total} sockets connected\n"
    if ready is not None and ready >= total:
        return f"0\nReady: {connected} of {total} sockets connected, listening for a client\n"
    return f"1\nExpected {total} sockets but only {connected} connected\n"


class HealthFile:
    """Writes the health file when (and only when) its content changes."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._last: str | None = None
        self._final = False

    def update(self, connected: int, total: int, ready: int | None = None) -> None:
        if not self._final:
            self._write(health_text(connected, total, ready))

    def stopped(self, why: str) -> None:
        """xcon is ending: unhealthy from now on, whatever is reported later."""
        self._final = True
        self._write(f"1\nxcon is not running ({why})\n")

    def _write(self, text: str) -> None:
        if text == self._last or not self.path:
            return
        self._last = text
        tmp = f"{self.path}.tmp.{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except OSError as e:
            log.error("cannot write health file %s: %s", self.path, e)
