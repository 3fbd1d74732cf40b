"""A tap device as a link end (``--tap-listen``).

``/dev/net/tun`` with ``IFF_TAP | IFF_NO_PI``, non-blocking.
The tap exists while xcon holds it (it is not made persistent), so it
disappears when xcon exits.  The descriptor keeps working if the tap is moved
to another network namespace.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from typing import TYPE_CHECKING

from xcon import native
from xcon.engines import Engine
from xcon.limits import MAX_FRAME
from xcon.ports.device import DevicePort

if TYPE_CHECKING:
    from xcon.linkspec import TapEnd
    from xcon.ports.services import PortServices

# linux/if_tun.h
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


class TapPort(DevicePort):
    """A tap device (``IFF_TAP | IFF_NO_PI``) created by and for this process."""

    def __init__(self, engine: Engine, ifname: str) -> None:
        super().__init__(engine, f"tap:{ifname}", ifname)

    def _open(self) -> None:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(
                fd, TUNSETIFF, struct.pack("16sH", self.ifname.encode(), IFF_TAP | IFF_NO_PI)
            )
        except OSError:
            os.close(fd)
            raise
        self.fd = fd

    def _open_error(self, e: OSError) -> str:
        ifname = self.ifname
        if e.errno in (errno.EPERM, errno.EACCES):
            return f"creating the tap {ifname} needs root or CAP_NET_ADMIN ({e.strerror})"
        if e.errno == errno.ENOENT:
            return f"cannot create the tap {ifname}: /dev/net/tun is missing (no tun support)"
        if e.errno == errno.EBUSY:
            return f"cannot use the tap {ifname}: another process holds it"
        if e.errno == errno.EINVAL:
            return f"cannot create the tap {ifname}: an interface of another kind has that name"
        return f"cannot create the tap {ifname}: {e.strerror or e}"

    def _read_into(self, view: memoryview) -> int:
        pos, _n, err = native.read_frames(self.fd, view, 0, len(view), MAX_FRAME)
        if err and err != errno.ENOBUFS:
            if pos:
                return int(pos)  # keep what was read; the error comes back next time
            self.fail(os.strerror(err) if err > 0 else "end of file")
            return -1
        return int(pos)


def tap_port(services: PortServices, end: TapEnd) -> TapPort:
    """``tap:NAME``: a tap device xcon creates."""
    return TapPort(services.engine, end.name)
