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
* *Offloads are finished here.*  A frame the host's stack sends out of a
  device with checksum offload and TSO/GSO (a veth, as docker gives a
  container, has both on) reaches the packet socket as the stack left it for
  the hardware: the TCP/UDP checksum partial, and TCP data as super-frames of
  up to 64 KiB.  A router behind xcon would drop the first and cannot take the
  second, so ping works and TCP does not.  With ``PACKET_VNET_HDR`` each packet
  comes with a ``struct virtio_net_hdr`` saying what is left to do, and
  :func:`xcon.native.read_packets` does it while reading: checksums
  completed, super-frames (TCP over IPv4/IPv6, UDP) cut into frames of the
  size the stack chose (its MSS), the VLAN tag put back on each.  Packets
  with an offload it cannot finish are dropped and counted (``gso_dropped``,
  ``malformed``), never forwarded broken; the user does not have to turn the
  offloads off with ethtool.  A kernel without ``PACKET_VNET_HDR`` (said
  once in the log) gets the frames as they come, as before.
* *Sending.*  The socket with ``PACKET_VNET_HDR`` expects the header before
  each frame it sends too: :func:`xcon.native.write_packets` puts a zero one
  (no offload asked for) in front of each frame with one ``writev``.  One
  socket does both, so frames xcon writes are still never seen by xcon
  itself, and writability is that of the socket the engine watches.

Counters (``counter_text``): ``truncated``, ``outgoing_ignored``, and the
offload work: ``csum_completed`` (frames whose checksum was completed),
``gso_split`` (super-frames cut into frames), ``gso_dropped`` (super-frames
of a kind not split, or whose segments would not fit the read buffer),
``malformed`` (offload fields that do not match the frame), ``bad_frame``
(empty, or no room for the VLAN tag); all drops are in ``rx_dropped`` too.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from typing import TYPE_CHECKING

from xcon import native
from xcon.engines import Engine
from xcon.native.abi import WriteResult
from xcon.ports.device import FATAL, DevicePort

if TYPE_CHECKING:
    from xcon.linkspec import RawEnd
    from xcon.ports.services import PortServices

log = logging.getLogger("xcon.port")

#: Packets read per batch (one system call each).
RAW_BATCH = 256

# linux/if_packet.h, linux/if_ether.h
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
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
        self.csum_completed = 0
        self.gso_split = 0
        self.gso_dropped = 0
        self.malformed = 0
        self.bad_frame = 0
        #: The kernel lacks PACKET_IGNORE_OUTGOING: outgoing frames are skipped here.
        self.userspace_outgoing_filter = False
        #: Packets come with a virtio_net_hdr and offloads are finished here.
        self.vnet_hdr = False
        self._vnet_logged = False

    def _open(self) -> None:
        # Protocol 0 until bound: nothing is queued before the options are set.
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            try:
                s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                vnet_hdr = True
            except OSError as e:
                vnet_hdr = False
                if not self._vnet_logged:
                    self._vnet_logged = True
                    log.warning(
                        "%s: no PACKET_VNET_HDR (%s): frames the host leaves to the device's "
                        "offloads (partial checksums, TSO super-frames) go out unfinished; "
                        "turn them off with 'ethtool -K %s tx off tso off gso off'",
                        self.name,
                        e.strerror or e,
                        self.ifname,
                    )
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
        self.vnet_hdr = vnet_hdr

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
        pos, _n, err, counters = native.read_packets(
            self.fd, view, 0, len(view), RAW_BATCH, self.vnet_hdr
        )
        truncated, outgoing, csum, split, gso_dropped, malformed, bad = counters
        self.truncated += truncated
        self.outgoing_ignored += outgoing
        self.csum_completed += csum
        self.gso_split += split
        self.gso_dropped += gso_dropped
        self.malformed += malformed
        self.bad_frame += bad
        self.rx_dropped += truncated + gso_dropped + malformed + bad
        if err and err != errno.ENOBUFS:  # ENOBUFS: no room now; the bridge drains it
            if err in FATAL:
                if pos:
                    return int(pos)  # keep what was read; the error comes back next time
                self.fail(os.strerror(err))
                return -1
            log.warning("%s: %s", self.name, os.strerror(err))
        return int(pos)

    def handling(self) -> str:
        note = "promiscuous, outgoing frames ignored"
        if self.userspace_outgoing_filter:
            note += " (filtered in user space)"
        if self.vnet_hdr:
            note += ", checksum and segmentation offloads finished here"
        return note

    def _write(self, fd: int, view: memoryview, start: int, end: int) -> WriteResult:
        if self.vnet_hdr:
            return native.write_packets(fd, view, start, end)
        return native.write_frames(fd, view, start, end)

    def counter_text(self) -> str:
        return (
            f"{super().counter_text()} truncated={self.truncated} "
            f"outgoing_ignored={self.outgoing_ignored} csum_completed={self.csum_completed} "
            f"gso_split={self.gso_split} gso_dropped={self.gso_dropped} "
            f"malformed={self.malformed} bad_frame={self.bad_frame}"
        )


def raw_port(services: PortServices, end: RawEnd) -> RawPort:
    """``raw:IFNAME``: an existing interface."""
    return RawPort(services.engine, end.name)
