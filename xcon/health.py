"""The health file read by the container's HEALTHCHECK.

First line: the exit code (0 healthy, 1 not); second line: a message in the
format users of vr-xcon's successor know ("All N sockets connected" /
"Expected N sockets but only M connected").  Rewritten atomically (write a
temporary file, then rename over) so a reader never sees half a file.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("xcon.health")


def health_text(connected: int, total: int) -> str:
    if connected >= total:
        return f"0\nAll {total} sockets connected\n"
    return f"1\nExpected {total} sockets but only {connected} connected\n"


class HealthFile:
    """Writes the health file when (and only when) its content changes."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._last: str | None = None

    def update(self, connected: int, total: int) -> None:
        text = health_text(connected, total)
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
