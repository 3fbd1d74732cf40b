"""Open-file limits for labs with many links.

Every p2p link holds two sockets and every hub port one, so a lab of a few
hundred links outgrows the usual soft limit of 1024 descriptors.  Without room,
``socket()`` fails with EMFILE and the links past the limit would only ever
retry.  At start xcon raises its soft limit as far as it needs (the hard limit
allows it for any user); if the hard limit itself is too low it refuses to
start and says which limit to raise.
"""

from __future__ import annotations

import logging
import resource

from xcon.errors import ModeError

log = logging.getLogger("xcon")

#: Descriptors beyond the ports' sockets: stdio, the log, epoll, wake-up pipes,
#: health-file writes, name resolution in helper threads, a listening socket.
HEADROOM = 64


def ensure_nofile(sockets: int) -> int:
    """Make room for ``sockets`` long-lived descriptors; return the soft limit now in force.

    Raises :class:`ModeError` (exit 1) when the hard limit is too low."""
    need = sockets + HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    if soft == inf or soft >= need:
        return soft
    if hard != inf and hard < need:
        raise ModeError(
            f"{sockets} sockets need about {need} open files, but the hard limit is {hard}: "
            "raise it (ulimit -Hn, LimitNOFILE= in systemd, docker run --ulimit nofile=N:N)",
            exit_code=1,
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != inf else need, hard))
    new = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    log.debug("open-file soft limit raised from %d to %d for %d sockets", soft, new, sockets)
    return new
