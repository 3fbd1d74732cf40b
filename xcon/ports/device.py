"""Ports over descriptors that carry one Ethernet frame per read/write: the
base of a tap device (:mod:`xcon.ports.tap`) and an AF_PACKET socket
(:mod:`xcon.ports.raw`).

Both look like any other :class:`~xcon.ports.Port` to a bridge: a readable
descriptor is read in a batch into the port's frame buffer as length-prefixed
frames (the stream format of the TCP side, so the p2p flow sends the span to
TCP zero-copy) and handed on with ``received``; ``send(view)`` writes each
length-prefixed frame of ``view`` as one frame and returns the bytes
consumed.  A batch reads until the descriptor runs dry (EAGAIN) or the buffer
has no room for another frame of the largest size.

**Frame sizes.** Every read offers room for the largest frame qemu accepts
(69632 bytes), whatever the interface's MTU: a frame is never cut, even when
the MTU is raised while xcon runs (a tap's MTU is at most 65521, so its
frames with a VLAN tag always fit).  The MTU is read and logged at start.

**Frames that cannot be delivered** to the interface (the tap or the
interface is administratively down, a frame above its MTU, a full queue) are
dropped one by one and counted (``tx_dropped``); writing goes on with the
next frame, so one bad frame never stalls the link.  Only an error that means
the descriptor itself is gone (the tap or the interface was deleted) takes the
port down; it is then re-opened every second until it works again, and
``on_open`` (the tap's addressing) runs again.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from collections.abc import Callable

from xcon import native
from xcon.engines import ERRORS, READ, WRITE, Engine, Registration, TimerHandle
from xcon.limits import FRAME_HEADER, MAX_FRAME
from xcon.native.abi import WriteResult
from xcon.ports import Port

log = logging.getLogger("xcon.port")

#: Re-open attempts of a descriptor that went away.
REOPEN_DELAY = 1.0
#: errno values meaning the descriptor itself is unusable (device gone).
FATAL = frozenset({errno.EBADF, errno.EBADFD, errno.ENODEV, errno.ENXIO, errno.EPIPE})
_LEN = struct.Struct(">I")


class DevicePort(Port):
    """A port whose descriptor delivers and takes one frame per system call."""

    def __init__(self, engine: Engine, name: str, ifname: str) -> None:
        super().__init__(engine, name)
        self.ifname = ifname
        self.fd = -1
        self.mtu = 0
        self.tx_dropped = 0
        self.rx_dropped = 0
        #: Run after a successful re-open (the tap's addressing is lost with it).
        self.on_open: Callable[[], object] | None = None
        self._reg: Registration | None = None
        self._timer: TimerHandle | None = None
        self._logged: set[int] = set()

    # -- subclass hooks ---------------------------------------------------------------
    def _open(self) -> None:
        """Open ``self.fd`` (raise OSError)."""
        raise NotImplementedError

    def _open_error(self, e: OSError) -> str:
        """One line for the user about a failed open."""
        raise NotImplementedError

    def _read_into(self, view: memoryview) -> int:
        """Read a batch of frames into ``view`` as length-prefixed frames; the
        bytes written (0: nothing now, -1: the descriptor failed)."""
        raise NotImplementedError

    def _write(self, fd: int, view: memoryview, start: int, end: int) -> WriteResult:
        """Write the frames of ``view[start:end]`` (:func:`xcon.native.write_frames`)."""
        return native.write_frames(fd, view, start, end)

    def _close_fd(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.fd = -1

    def _error_event(self) -> None:
        self.fail("device gone (deleted?)")

    def handling(self) -> str:
        """What this port does to frames beyond passing them (for the start-up
        log line); empty when nothing."""
        return ""

    # -- life cycle ---------------------------------------------------------------------
    def open(self) -> None:
        """Open now; a failure is a :class:`~xcon.errors.ModeError` (a start-up check)."""
        from xcon.errors import ModeError

        try:
            self._open()
        except OSError as e:
            raise ModeError(self._open_error(e)) from None

    def prepare(self) -> None:
        """Open now, then read and log the interface's MTU."""
        self.open()
        self.mtu = interface_mtu(self.ifname)
        handling = self.handling()
        log.info(
            "%s: MTU %d (reads take any frame up to %d bytes)%s",
            self.name,
            self.mtu,
            MAX_FRAME,
            f"; {handling}" if handling else "",
        )

    def start(self) -> None:
        self._closed = False
        if self.handed is not None:
            self._take_handed()
            return
        if self.fd < 0:
            self._reopen()
            return
        self._go_up()

    def _take_handed(self) -> None:
        """Start on the descriptor handed over (a kind that can take one)."""
        raise NotImplementedError

    def _go_up(self) -> None:
        self._reg = self.engine.register(self.fd, self, READ)
        self._became_up()

    def _reopen(self) -> None:
        self._timer = None
        if self._closed:
            return
        try:
            self._open()
        except OSError as e:
            self.stats.last_error = e.strerror or str(e)
            self._timer = self.engine.call_later(REOPEN_DELAY, self._reopen)
            return
        log.info("%s: open again", self.name)
        self._go_up()
        hook = self.on_open
        if hook is not None:
            try:
                hook()
            except Exception as e:  # noqa: BLE001 - logged, the port keeps running
                log.error("%s: %s", self.name, e)

    def _interest(self) -> None:
        if self._reg is not None:
            self._reg.set((READ if self.reading else 0) | (WRITE if self._writing else 0))

    def _quiet(self) -> None:
        if self._reg is not None:
            self._reg.set(0)

    def _release(self) -> None:
        if self._reg is not None:
            self._reg.close()
            self._reg = None
        self._close_fd()

    def _went_down(self, reason: str) -> None:
        log.error("%s: down (%s); re-opening every %.0f s", self.name, reason, REOPEN_DELAY)

    def _again(self, reason: str) -> None:
        self._timer = self.engine.call_later(REOPEN_DELAY, self._reopen)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().close()

    # -- events -----------------------------------------------------------------------
    def handle_event(self, events: int) -> None:
        if events & ERRORS:
            self._error_event()
        if self._failing is not None or not self.up:
            return
        owner = self.owner
        assert owner is not None
        if events & READ and self._reading and not self._frozen:
            buf = self.inbuf
            n = self._read_into(buf.room())
            if n > 0:
                buf.filled(n)  # headers written here: always whole, valid frames
                owner.received(self)
            if self._failing is not None or not self.up:
                return
        if events & WRITE and self._writing:
            owner.writable(self)

    def _log_once(self, err: int, msg: str) -> None:
        if err not in self._logged:
            self._logged.add(err)
            log.warning("%s: %s (%s); such frames are dropped", self.name, msg, os.strerror(err))

    # -- data -------------------------------------------------------------------------
    def send(self, view: memoryview) -> int:
        """Write each frame of ``view``; returns the bytes consumed."""
        if self._failing is not None or self.fd < 0:
            return 0
        fd = self.fd
        end = len(view)
        pos = 0
        write = self._write
        while True:
            pos, _n, dropped, err = write(fd, view, pos, end)
            if dropped:
                self.tx_dropped += dropped
            if not err:
                return pos  # all written, or EAGAIN at ``pos``
            if err in FATAL:
                self.fail(os.strerror(err))
                return pos
            # The device refused this frame (down, no carrier, queue full): drop it.
            self._log_once(err, "the interface refuses frames")
            self.tx_dropped += 1
            (length,) = _LEN.unpack_from(view, pos)
            pos += FRAME_HEADER + length

    def counter_text(self) -> str:
        return f"tx_dropped={self.tx_dropped} rx_dropped={self.rx_dropped}"


def interface_mtu(ifname: str) -> int:
    """The MTU of ``ifname`` in this network namespace, or 0 when it cannot be read."""
    from xcon.netconf import get_mtu

    try:
        return get_mtu(ifname)
    except OSError:
        return 0
