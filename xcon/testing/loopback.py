"""Loopback addresses for tests: each caller gets one no other caller in this
process has had, so fake NICs listening on ``HOST:10000+N`` never collide.

Linux routes the whole of 127.0.0.0/8 to ``lo``; the second byte is drawn once
per process (from its pid), so two test runs at once rarely share a /16.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

__all__ = ["free_udp_port", "new_host"]

_hosts = itertools.count(1)
_base = random.Random(os.getpid()).randrange(1, 250)


def new_host() -> str:
    """A loopback address no other caller in this process got (127.<base>.<n>/16)."""
    n = next(_hosts)
    return f"127.{_base}.{n // 250}.{n % 250 + 1}"


def free_udp_port(host: str) -> int:
    """A UDP port on ``host`` that nothing was bound to a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
