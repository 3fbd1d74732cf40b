"""Link ends over UDP: one Ethernet frame per datagram (``udp:``) and VXLAN (``vxlan:``).

``udp:RHOST:RPORT@[LHOST:]LPORT`` is what qemu's ``-netdev dgram`` (and
``-netdev socket,udp=…,localaddr=…``), GNS3's ubridge (``add_nio_udp``) and
dynamips speak: each datagram is one whole frame, with no header.  The socket
is bound to the local port and *connected* to the remote one, so the kernel
delivers only the peer's datagrams (qemu sends from the port it receives on).

``vxlan:REMOTE[:PORT]/VNI[@[LHOST:]LPORT]`` is RFC 7348: an 8-byte header (flags
``0x08``, the 24-bit VNI) before the frame, sent with UDP checksum 0 over
IPv4 (as Linux's VXLAN devices do; both are accepted on receive; on IPv6 a checksum is sent, as IPv6 requires by default, and a
zero one accepted).  A VTEP sends from any source port (Linux hashes the inner flow
into its ephemeral range), so this socket is not connected: datagrams are
kept when they come from the remote address (any port) and carry the I flag
and this VNI; others are dropped and counted (``foreign``, ``bad_header``).
Sent datagrams leave from the local port (pinned: every VTEP accepts any
source port, and one link needs no ECMP spread).  The default port is IANA's
4789, what kernel devices (``dstport 4789``), switches and other VXLAN
software use unless told otherwise; containerlab's links use 14789 and are
reached with ``vxlan:HOST:14789/VNI``.

Both read in batches in the fast path (``recvmmsg``/``sendmmsg``), into the
port's frame buffer as length-prefixed frames, so a UDP end joins any other
end like a tap does.  A datagram carries up to 65507 bytes over IPv4 (65527
over IPv6), VXLAN's header included; above the path MTU the datagram leaves
in IP fragments (path MTU discovery is off for these sockets, so no DF bit)
and the far host's kernel reassembles it, so jumbo frames cross any network
that passes fragments.  A frame too large for a datagram, or refused by the
kernel, is dropped and counted (``tx_dropped``).

**Up and health.**  There is no connection: the port is up (frames are sent)
from the moment its socket is bound, and it never goes down while xcon runs
unless the socket itself fails.  It counts as *connected* in the health file
once a datagram from the peer has arrived, and until an ICMP port
unreachable says the peer's port is closed (a stopped qemu); it counts as
*ready* (healthy, "listening for a client") meanwhile, as a listening end does.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import struct
from typing import TYPE_CHECKING, Any

from xcon import native
from xcon.engines import Engine
from xcon.framing import FrameBuffer
from xcon.limits import FRAME_HEADER, VXLAN_HEADER
from xcon.native.abi import DGRAM_DROPS
from xcon.ports import fmt_addr
from xcon.ports.device import FATAL, DevicePort

if TYPE_CHECKING:
    from xcon.linkspec import UdpEnd, VxlanEnd
    from xcon.ports.services import PortServices

log = logging.getLogger("xcon.port")

#: Datagrams per read batch.
DGRAM_BATCH = 256
#: Receive buffer of a datagram end: room for many datagrams of the largest size.
DGRAM_BUFFER = 2 * 1024 * 1024
#: Socket buffers asked of the kernel (forced when privileged).
SOCKET_BUFFER = 4 * 1024 * 1024
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SO_NO_CHECK = 11  # IPv4: send UDP checksum 0
UDP_NO_CHECK6_RX = 102  # IPv6: accept UDP checksum 0
IP_MTU_DISCOVER, IPV6_MTU_DISCOVER, PMTUDISC_DONT = 10, 23, 0
VXLAN_FLAGS = 0x08


def vxlan_header(vni: int) -> bytes:
    """The 8 bytes before every frame of VNI ``vni``."""
    return bytes([VXLAN_FLAGS, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"


class DatagramPort(DevicePort):
    """A UDP socket carrying one frame per datagram (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        remote: str,
        port: int,
        local_port: int,
        local_host: str = "",
        vni: int | None = None,
        groups: VxlanGroups | None = None,
    ) -> None:
        if (vni is None) != (groups is None):
            raise ValueError("a VXLAN end has a VNI and the engine's VXLAN groups")
        super().__init__(engine, name, "")
        self.inbuf = FrameBuffer(DGRAM_BUFFER)
        self.remote = remote
        self.port = port
        self.local_port = local_port
        self.local_host = local_host
        self.vni = vni
        self.sock: socket.socket | None = None
        #: A datagram from the peer arrived (and no ICMP said it is gone since).
        self.heard = False
        self.refused = 0
        #: rx_dropped by reason (:data:`~xcon.native.abi.DGRAM_DROPS`).
        self.rx_dropped_by = dict.fromkeys(DGRAM_DROPS, 0)
        #: A VXLAN end's groups: the engine's VXLAN ends by shared local port.
        self.groups = groups
        self._addr: tuple[object, ...] | None = None
        self._peer: bytes | None = None
        self._group: tuple[int, str, int] | None = None  # VXLAN: its shared local port
        if vni is None:
            self._prefix = b""
            self._match: tuple[int, bytes, bytes] = (0, b"", b"")
        else:
            self._prefix = vxlan_header(vni)
            mask = bytes([VXLAN_FLAGS, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0])
            self._match = (VXLAN_HEADER, self._prefix, mask)

    @property
    def connected(self) -> bool:
        return self.up and self.heard

    @property
    def healthy(self) -> bool:
        return self.up

    def prepare(self) -> None:
        """Bind now (a socket has no MTU to log)."""
        self.open()

    # -- handover (a UDP end; a VXLAN end shares its socket with its group) -------------
    def handable_socket(self) -> socket.socket | None:
        return self.sock if self.vni is None else None

    def handover_state(self) -> dict[str, Any]:
        return {"heard": self.heard}

    def _take_handed(self) -> None:
        assert self.handed is not None
        sock, pending, _peer, stats, extra = self.handed
        self.handed = None
        family = sock.family
        addr = sock.getpeername()
        self._addr = None
        self._peer = socket.inet_pton(family, str(addr[0]).split("%", 1)[0])
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        if pending:
            self.inbuf.feed(pending)
        self._was_up = True
        log.info(
            "%s: taken over, UDP %s -> %s", self.name, fmt_addr(sock.getsockname()), fmt_addr(addr)
        )
        self._go_up()
        self.restore_stats(stats)
        self.heard = bool(extra.get("heard"))

    # -- DevicePort hooks -------------------------------------------------------------
    def _open(self) -> None:
        infos = socket.getaddrinfo(self.remote, self.port, type=socket.SOCK_DGRAM)
        if self.local_host:
            want = socket.AF_INET6 if ":" in self.local_host else socket.AF_INET
            infos = [i for i in infos if i[0] == want] or infos
        family, _t, _p, _c, addr = infos[0]
        local = self.local_host or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for force, plain in (
                (SO_RCVBUFFORCE, socket.SO_RCVBUF),
                (SO_SNDBUFFORCE, socket.SO_SNDBUF),
            ):
                try:
                    s.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
                except OSError:
                    s.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
            # Never DF: a frame above the path MTU goes out in IP fragments.
            if family == socket.AF_INET:
                s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DONT)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, PMTUDISC_DONT)
            if self.vni is not None:
                if family == socket.AF_INET:
                    s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
                else:
                    s.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_RX, 1)
            if self.vni is not None:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((local, self.local_port))
            if self.vni is None:
                s.connect(addr)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self._addr = None if self.vni is None else addr
        self._peer = socket.inet_pton(family, str(addr[0]).split("%", 1)[0])
        self.sock = s
        self.fd = s.fileno()
        if self.groups is not None:
            self._group = (family, local, self.local_port)
            self.groups.join(self)
        log.info(
            "%s: UDP %s -> %s%s",
            self.name,
            fmt_addr(s.getsockname()),
            fmt_addr(addr),
            f" (VXLAN VNI {self.vni})" if self.vni is not None else "",
        )

    def _open_error(self, e: OSError) -> str:
        if isinstance(e, socket.gaierror):
            return f"{self.name}: cannot resolve {self.remote!r} ({e.strerror or e})"
        if e.errno == errno.EADDRINUSE:
            hint = ""
            if self.vni is not None:
                hint = " (a kernel VXLAN device or another VTEP has it? choose another with @PORT)"
            return f"{self.name}: UDP port {self.local_port} is already in use{hint}"
        if e.errno == errno.EADDRNOTAVAIL:
            return f"{self.name}: {self.local_host} is not an address of this host"
        return f"{self.name}: cannot open the UDP socket: {e.strerror or e}"

    def _close_fd(self) -> None:
        if self._group is not None:
            assert self.groups is not None
            self.groups.leave(self)
            self._group = None
        s, self.sock = self.sock, None
        if s is not None:
            s.close()
        self.fd = -1

    def _error_event(self) -> None:
        assert self.sock is not None
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == errno.ECONNREFUSED:
            self._peer_gone()
        elif err in FATAL:
            self.fail(os.strerror(err))
        elif err:
            self._log_once(err, "the network refuses datagrams")

    def _read_into(self, view: memoryview) -> int:
        prefix_len, expect, mask = self._match
        pos, n, err, drops = native.recv_datagrams(
            self.fd, view, 0, len(view), DGRAM_BATCH, prefix_len, expect, mask, self._peer
        )
        if any(drops):
            for reason, count in zip(DGRAM_DROPS, drops, strict=True):
                self.rx_dropped_by[reason] += count
            self.rx_dropped += sum(drops)
        if n and not self.heard:
            self.heard = True
            log.info("%s: receiving from the peer", self.name)
            if self.owner is not None:
                self.owner.port_state(self)
        if err == errno.ECONNREFUSED:
            self._peer_gone()
        elif err and err != errno.ENOBUFS:
            if err in FATAL and not pos:
                self.fail(os.strerror(err))
                return -1
            self._log_once(err, "receiving failed")
        return int(pos)

    def _peer_gone(self) -> None:
        self.refused += 1
        if self.heard:
            self.heard = False
            log.warning("%s: the peer's port is closed (ICMP port unreachable)", self.name)
            if self.owner is not None:
                self.owner.port_state(self)

    # -- data ---------------------------------------------------------------------
    def send(self, view: memoryview) -> int:
        if self._failing is not None or self.fd < 0:
            return 0
        end = len(view)
        pos = 0
        while True:
            pos, _n, dropped, err = native.send_datagrams(
                self.fd, view, pos, end, self._prefix, self._addr
            )
            self.tx_dropped += dropped
            if not err:
                return pos
            if err in FATAL:
                self.fail(os.strerror(err))
                return pos
            self._log_once(err, "the network refuses datagrams")
            self.tx_dropped += 1
            pos += FRAME_HEADER + int.from_bytes(view[pos : pos + FRAME_HEADER], "big")

    def counter_text(self) -> str:
        drops = " ".join(f"{reason}={n}" for reason, n in self.rx_dropped_by.items())
        return f"{super().counter_text()} {drops} refused={self.refused}"


# -- VXLAN ends sharing one local port ---------------------------------------------------
#
# Several VXLAN ends (one per VNI) can share a local port, as Linux's VXLAN
# devices do (containerlab gives every inter-host link its own VNI on one
# port).  Each end keeps its own socket (``SO_REUSEPORT``), and a classic BPF
# program attached to the group steers each datagram by its VNI to the socket
# of that VNI; an unknown VNI goes to one of them, which drops and counts it.
# The program names sockets by their index in the kernel's group, which is
# the order they were bound in; when one leaves, the kernel moves the last one
# into its place, and :meth:`VxlanGroups.leave` does the same here.

SO_ATTACH_REUSEPORT_CBPF = 51
_BPF_LD_W_ABS = 0x00 | 0x00 | 0x20
_BPF_RSH_K = 0x04 | 0x70 | 0x00
_BPF_JEQ_K = 0x05 | 0x10 | 0x00
_BPF_RET_K = 0x06 | 0x00
_BPF_INSN = struct.Struct("HBBI")


def vni_steering(vnis: list[int]) -> bytes:
    """A reuseport program: the UDP payload's VNI (bytes 4..6) picks the socket."""
    insns = [_BPF_INSN.pack(_BPF_LD_W_ABS, 0, 0, 4), _BPF_INSN.pack(_BPF_RSH_K, 0, 0, 8)]
    for index, vni in enumerate(vnis):
        insns.append(_BPF_INSN.pack(_BPF_JEQ_K, 0, 1, vni))
        insns.append(_BPF_INSN.pack(_BPF_RET_K, 0, 0, index))
    insns.append(_BPF_INSN.pack(_BPF_RET_K, 0, 0, 0xFFFFFFFF))  # no such socket: any
    return b"".join(insns)


def _attach(group: list[DatagramPort]) -> None:
    code = vni_steering([p.vni for p in group if p.vni is not None])
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // _BPF_INSN.size, ctypes.addressof(buf))
    sock = group[0].sock
    assert sock is not None
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as e:
        log.error("cannot steer VXLAN datagrams by VNI on a shared port (%s)", e.strerror)


class VxlanGroups:
    """The VXLAN ends of one engine, by the local port they share (one per engine:
    :class:`~xcon.ports.services.PortServices`)."""

    def __init__(self) -> None:
        self.groups: dict[tuple[int, str, int], list[DatagramPort]] = {}

    def join(self, port: DatagramPort) -> None:
        assert port._group is not None
        group = self.groups.setdefault(port._group, [])
        group.append(port)
        if len(group) > 1:
            _attach(group)

    def leave(self, port: DatagramPort) -> None:
        assert port._group is not None
        group = self.groups.get(port._group, [])
        if port not in group:
            return
        i = group.index(port)
        last = group.pop()
        if last is not port:
            group[i] = last
        if len(group) > 1:
            _attach(group)
        elif not group:
            del self.groups[port._group]


def udp_port(services: PortServices, end: UdpEnd) -> DatagramPort:
    """``udp:RHOST:RPORT@[LHOST:]LPORT``: one frame per datagram."""
    return DatagramPort(
        services.engine, str(end), end.remote, end.port, end.local_port, end.local_host
    )


def vxlan_port(services: PortServices, end: VxlanEnd) -> DatagramPort:
    """``vxlan:REMOTE[:PORT]/VNI[@[LHOST:]LPORT]``: in the engine's VXLAN groups."""
    return DatagramPort(
        services.engine,
        str(end),
        end.remote,
        end.port,
        end.local_port,
        end.local_host,
        vni=end.vni,
        groups=services.vxlan,
    )
