"""An interface as a link end through an AF_PACKET socket (``--raw-listen``).

``AF_PACKET``/``SOCK_RAW`` bound to one interface with
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
import logging
import os
import socket
import struct

from xcon.engines import Engine
from xcon.limits import FRAME_HEADER, MAX_FRAME
from xcon.ports.device import FATAL, DevicePort

log = logging.getLogger("xcon.port")

#: Frames per batch.
RAW_BATCH = 256

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


class RawPort(DevicePort):
    """An AF_PACKET socket on one interface (see the module docstring)."""

    def __init__(self, engine: Engine, ifname: str) -> None:
        super().__init__(engine, f"raw:{ifname}", ifname)
        self.sock: socket.socket | None = None
        self.ifindex = 0
        self.outgoing_ignored = 0
        self.truncated = 0
        #: The kernel lacks PACKET_IGNORE_OUTGOING: outgoing frames are skipped here.
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

    def _open_error(self, e: OSError) -> str:
        ifname = self.ifname
        if e.errno in (errno.EPERM, errno.EACCES):
            return f"a raw socket on {ifname} needs root or CAP_NET_RAW ({e.strerror})"
        if e.errno in (errno.ENODEV, errno.ENXIO):
            return f"no interface named {ifname}"
        return f"cannot open a raw socket on {ifname}: {e.strerror or e}"

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

    def _read_into(self, view: memoryview) -> int:
        sock = self.sock
        assert sock is not None
        recvmsg_into = sock.recvmsg_into
        ancsize = self._ancsize
        limit = len(view) - (2 * FRAME_HEADER + MAX_FRAME)  # room: header, frame, a restored tag
        pos = 0
        count = 0
        while pos <= limit and count < RAW_BATCH:
            start = pos + FRAME_HEADER
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
