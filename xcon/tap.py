"""Ports over descriptors that carry one Ethernet frame per read/write: a tap
device (``--tap-listen``) and an AF_PACKET socket (``--raw-listen``).

Both look like any other :class:`~xcon.ports.Port` to a bridge:
``recv_into(view)`` fills ``view`` with length-prefixed frames (the stream
format of the TCP side, so the p2p :class:`~xcon.bridge.DirectFlow` sends the
span to TCP zero-copy) and returns the bytes written; ``send(view)`` writes
each length-prefixed frame of ``view`` as one frame and returns the bytes
consumed.  Reads are batched: one call reads until the descriptor runs dry
(EAGAIN) or the buffer has no room for another frame of the largest size.

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

**TapPort.** ``/dev/net/tun`` with ``IFF_TAP | IFF_NO_PI``, non-blocking.
The tap exists while xcon holds it (it is not made persistent), so it
disappears when xcon exits.  The descriptor keeps working if the tap is moved
to another network namespace.

**RawPort.** ``AF_PACKET``/``SOCK_RAW`` bound to one interface with
``ETH_P_ALL``, with promiscuous membership (``PACKET_MR_PROMISC``) while it
is open (dropped explicitly on close; the kernel also drops it when the
socket closes).

* *Outgoing frames are not forwarded.*  A packet socket also sees frames the
  host's own stack sends out of the interface (``PACKET_OUTGOING``).  xcon
  ignores them (``PACKET_IGNORE_OUTGOING``, and a check of ``sll_pkttype`` on
  kernels without that option): the router's NIC stands in for the far end of
  the interface's wire, so it gets what arrives *on* the wire.  Forwarding the
  host's own traffic would only leak it one way: the router's answers are
  transmitted out of the interface by xcon and never reach the host's stack.
  Frames xcon itself writes are never seen again (the kernel skips the socket
  that sent them), so there is no loop.
* *VLAN tags are restored.*  The kernel moves the outer 802.1Q/802.1ad tag of
  every received frame into metadata; with ``PACKET_AUXDATA`` each frame
  comes with ``tp_vlan_tci``/``tp_vlan_tpid``, and when ``TP_STATUS_VLAN_VALID``
  is set the 4-byte tag is put back after the MAC addresses before the frame
  is forwarded (``TP_STATUS_VLAN_TPID_VALID`` says whether the TPID is given;
  otherwise it is 0x8100).  A frame is never forwarded cut: a truncated read
  (``MSG_TRUNC``) is dropped and counted.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Callable

from xcon import native
from xcon.engine import ERRORS, READ, WRITE, EpollEngine, Timer
from xcon.errors import ModeError
from xcon.ports import Port, PortOwner

log = logging.getLogger("xcon.port")

MAX_FRAME = native.MAX_FRAME
HDR = 4
#: Re-open attempts of a descriptor that went away.
REOPEN_DELAY = 1.0
#: Frames per raw batch (the tap's batch is native.READ_BATCH).
RAW_BATCH = 256

# linux/if_tun.h
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000

# linux/if_packet.h, linux/if_ether.h
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_AUXDATA = 8
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
ETH_P_8021Q = 0x8100
_AUXDATA = struct.Struct("=IIIHHHH")
_TAG = struct.Struct(">HH")
_LEN = struct.Struct(">I")
RAW_RCVBUF = 4 * 1024 * 1024
SO_RCVBUFFORCE = 33

#: errno values meaning the descriptor itself is unusable (device gone).
FATAL = frozenset({errno.EBADF, errno.EBADFD, errno.ENODEV, errno.ENXIO, errno.EPIPE})


class DgramPort(Port):
    """A port whose descriptor delivers and takes one frame per system call."""

    def __init__(self, engine: EpollEngine, name: str, owner: PortOwner | None = None) -> None:
        super().__init__(engine, name, owner)
        self.fd = -1
        self.mtu = 0
        self.tx_dropped = 0
        self.rx_dropped = 0
        #: Run after a successful re-open (the tap's addressing is lost with it).
        self.on_open: Callable[[], None] | None = None
        self._timer: Timer | None = None
        self._closed = False
        self._logged: set[int] = set()

    # -- subclass hooks ---------------------------------------------------------------
    def _open(self) -> None:
        """Open ``self.fd`` (raise OSError)."""
        raise NotImplementedError

    def _close_fd(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.fd = -1

    def open(self) -> None:
        """Open now; failures are ModeError (a start-up check)."""
        raise NotImplementedError

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._closed = False
        if self.fd < 0:
            self._reopen()
            return
        self._go_up()

    def _go_up(self) -> None:
        self.up = True
        self.stats.connects += 1
        self._reading, self._writing = True, False
        self._reg = self.engine.register(self.fd, self, self._mask())
        assert self.owner is not None
        self.owner.port_up(self)

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

    def fail(self, reason: str) -> None:
        if not self.up:
            return
        self.up = False
        self.stats.drops += 1
        self.stats.last_error = reason
        if self._reg is not None:
            self._reg.close()
            self._reg = None
        self._close_fd()
        log.error("%s: down (%s); re-opening every %.0f s", self.name, reason, REOPEN_DELAY)
        assert self.owner is not None
        self.owner.port_down(self, reason)
        if not self._closed:
            self._timer = self.engine.call_later(REOPEN_DELAY, self._reopen)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        was_up = self.up
        self.up = False
        if self._reg is not None:
            self._reg.close()
            self._reg = None
        self._close_fd()
        if was_up and self.owner is not None:
            self.owner.port_down(self, "closed")

    # -- events -----------------------------------------------------------------------
    def handle_event(self, events: int) -> None:
        owner = self.owner
        assert owner is not None
        if events & ERRORS:
            self._error_event()
            if not self.up:
                return
        if events & READ:
            owner.readable(self)
            if not self.up:
                return
        if events & WRITE:
            owner.writable(self)

    def _error_event(self) -> None:
        self.fail("device gone (deleted?)")

    def _log_once(self, err: int, msg: str) -> None:
        if err not in self._logged:
            self._logged.add(err)
            log.warning("%s: %s (%s); such frames are dropped", self.name, msg, os.strerror(err))

    # -- data -------------------------------------------------------------------------
    def send(self, view: memoryview) -> int:
        """Write each frame of ``view``; returns the bytes consumed (-1: went down)."""
        fd = self.fd
        end = len(view)
        pos = 0
        write_frames = native.write_frames
        while True:
            pos, _n, dropped, err = write_frames(fd, view, pos, end)
            if dropped:
                self.tx_dropped += dropped
            if not err:
                return pos  # all written, or EAGAIN at ``pos``
            if err in FATAL:
                self.fail(os.strerror(err))
                return -1
            # The device refused this frame (down, no carrier, queue full): drop it.
            self._log_once(err, "the interface refuses frames")
            self.tx_dropped += 1
            (length,) = _LEN.unpack_from(view, pos)
            pos += HDR + length

    def counter_text(self) -> str:
        return f"tx_dropped={self.tx_dropped} rx_dropped={self.rx_dropped}"


class TapPort(DgramPort):
    """A tap device (``IFF_TAP | IFF_NO_PI``) created by and for this process."""

    kind = "tap"

    def __init__(self, engine: EpollEngine, ifname: str, owner: PortOwner | None = None) -> None:
        super().__init__(engine, f"tap:{ifname}", owner)
        self.ifname = ifname

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

    def open(self) -> None:
        try:
            self._open()
        except OSError as e:
            raise ModeError(_tap_error(self.ifname, e)) from None

    def recv_into(self, view: memoryview) -> int:
        pos, _n, err = native.read_frames(self.fd, view, 0, len(view), MAX_FRAME)
        if err and err != errno.ENOBUFS:
            if pos:
                return int(pos)  # keep what was read; the error comes back next time
            self.fail(os.strerror(err) if err > 0 else "end of file")
            return -1
        return int(pos)


def _tap_error(ifname: str, e: OSError) -> str:
    if e.errno in (errno.EPERM, errno.EACCES):
        return f"creating the tap {ifname} needs root or CAP_NET_ADMIN ({e.strerror})"
    if e.errno == errno.ENOENT:
        return f"cannot create the tap {ifname}: /dev/net/tun is missing (no tun support)"
    if e.errno == errno.EBUSY:
        return f"cannot use the tap {ifname}: another process holds it"
    if e.errno == errno.EINVAL:
        return f"cannot create the tap {ifname}: an interface of another kind has that name"
    return f"cannot create the tap {ifname}: {e.strerror or e}"


class RawPort(DgramPort):
    """An AF_PACKET socket on one interface (see the module docstring)."""

    kind = "raw"

    def __init__(self, engine: EpollEngine, ifname: str, owner: PortOwner | None = None) -> None:
        super().__init__(engine, f"raw:{ifname}", owner)
        self.ifname = ifname
        self.sock: socket.socket | None = None
        self.ifindex = 0
        self.outgoing_ignored = 0
        self.truncated = 0
        self.userspace_outgoing_filter = False
        self._ancsize = socket.CMSG_SPACE(_AUXDATA.size)

    def _open(self) -> None:
        # Protocol 0 until bound: nothing is queued before the options are set.
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            try:
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                self.userspace_outgoing_filter = True
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RAW_RCVBUF)
            except OSError:
                pass
            s.bind((self.ifname, ETH_P_ALL))
            self.ifindex = socket.if_nametoindex(self.ifname)
            mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self.sock = s
        self.fd = s.fileno()

    def open(self) -> None:
        try:
            self._open()
        except OSError as e:
            raise ModeError(_raw_error(self.ifname, e)) from None

    def _close_fd(self) -> None:
        s = self.sock
        if s is None:
            return
        try:
            mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
            s.setsockopt(SOL_PACKET, PACKET_DROP_MEMBERSHIP, mreq)
        except OSError:
            pass
        s.close()
        self.sock = None
        self.fd = -1

    def _error_event(self) -> None:
        # The interface went down (ENETDOWN is queued on the socket): reading
        # the error clears it.  Anything else is fatal for the descriptor.
        assert self.sock is not None
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err in FATAL:
            self.fail(os.strerror(err))
        elif err:
            log.warning("%s: %s", self.name, os.strerror(err))
        else:
            self.fail("device error")

    def recv_into(self, view: memoryview) -> int:
        sock = self.sock
        assert sock is not None
        recvmsg_into = sock.recvmsg_into
        ancsize = self._ancsize
        limit = len(view) - (2 * HDR + MAX_FRAME)  # room: header, frame, a restored tag
        pos = 0
        count = 0
        while pos <= limit and count < RAW_BATCH:
            start = pos + HDR
            try:
                n, anc, flags, addr = recvmsg_into([view[start : start + MAX_FRAME]], ancsize)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno in FATAL:
                    if pos:
                        break
                    self.fail(e.strerror or str(e))
                    return -1
                log.warning("%s: %s", self.name, e.strerror or e)
                break
            if flags & socket.MSG_TRUNC:
                self.truncated += 1
                self.rx_dropped += 1
                continue
            if addr[2] == PACKET_OUTGOING:  # only without PACKET_IGNORE_OUTGOING
                self.outgoing_ignored += 1
                continue
            for level, kind, data in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                    status, _l, _s, _m, _n, tci, tpid = _AUXDATA.unpack_from(data)
                    if status & TP_STATUS_VLAN_VALID:
                        if n + 4 > MAX_FRAME or n < 12:
                            self.rx_dropped += 1
                            n = -1
                            break
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = ETH_P_8021Q
                        view[start + 16 : start + 4 + n] = view[start + 12 : start + n]
                        _TAG.pack_into(view, start + 12, tpid, tci)
                        n += 4
            if n <= 0:
                continue
            _LEN.pack_into(view, pos, n)
            pos = start + n
            count += 1
        return pos

    def counter_text(self) -> str:
        return (
            f"{super().counter_text()} truncated={self.truncated} "
            f"outgoing_ignored={self.outgoing_ignored}"
        )


def _raw_error(ifname: str, e: OSError) -> str:
    if e.errno in (errno.EPERM, errno.EACCES):
        return f"a raw socket on {ifname} needs root or CAP_NET_RAW ({e.strerror})"
    if e.errno in (errno.ENODEV, errno.ENXIO):
        return f"no interface named {ifname}"
    return f"cannot open a raw socket on {ifname}: {e.strerror or e}"


def interface_mtu(ifname: str) -> int:
    """The MTU of ``ifname`` in this network namespace, or 0 when it cannot be read."""
    from xcon.netconf import get_mtu

    try:
        return get_mtu(ifname)
    except OSError:
        return 0
