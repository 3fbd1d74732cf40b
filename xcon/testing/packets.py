"""IP packets in Ethernet frames for the offload tests.

TCP, UDP and SCTP over IPv4 and IPv6 with every length and checksum right;
the form a stack with offloads hands them to an AF_PACKET socket in (the
transport checksum left partial, a super-frame of many segments) together with
the ``struct virtio_net_hdr`` describing it; and :func:`check_frame`, which
reads a frame back and names anything wrong with it.  The checksums here are
written the plain way (the 16-bit words summed and folded, a bitwise CRC32c)
so that they check the fast path rather than repeat it.
"""

from __future__ import annotations

import array
import ipaddress
import struct
import sys
from dataclasses import dataclass

DST_MAC = bytes.fromhex("020000000b02")
SRC_MAC = bytes.fromhex("020000000a01")
SRC4 = "10.9.0.1"
DST4 = "10.9.0.2"
SRC6 = "2001:db8:9::1"
DST6 = "2001:db8:9::2"

TCP, UDP, SCTP = 6, 17, 132
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# linux/virtio_net.h
F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80
_VNET = struct.Struct("=BBHHHH")

#: TCP options of a Linux data segment: NOP, NOP, timestamps.
TS_OPTIONS = b"\x01\x01\x08\x0a" + struct.pack(">II", 0x01020304, 0x0A0B0C0D)


def ones_sum(data: bytes) -> int:
    """The 16-bit ones' complement sum of ``data`` (a last odd byte padded with 0)."""
    if len(data) % 2:
        data += b"\0"
    words = array.array("H", data)
    if sys.byteorder == "little":
        words.byteswap()
    s = sum(words)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def inet_checksum(data: bytes) -> int:
    return ~ones_sum(data) & 0xFFFF


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for byte in data:
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def vnet_hdr(
    flags: int = 0,
    gso_type: int = GSO_NONE,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> bytes:
    """A ``struct virtio_net_hdr`` as a packet socket gives it (host byte order)."""
    return _VNET.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def _addr(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def pseudo_header(version: int, src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if version == 4:
        return src + dst + struct.pack(">BBH", 0, proto, length)
    return src + dst + struct.pack(">IxxxB", length, proto)


@dataclass
class Packet:
    """A frame and where its headers are."""

    frame: bytes
    l3: int
    l4: int
    version: int
    proto: int
    hlen: int  # up to the end of the transport header

    @property
    def payload(self) -> bytes:
        return self.frame[self.hlen :]

    @property
    def csum_offset(self) -> int:
        return {TCP: 16, UDP: 6, SCTP: 8}[self.proto]

    def partial(self) -> bytes:
        """The frame with the transport checksum left to the device: the field
        holds the (folded, not complemented) sum of the pseudo-header."""
        f = bytearray(self.frame)
        at = self.l4 + self.csum_offset
        if self.proto == SCTP:
            f[at : at + 4] = b"\0\0\0\0"
            return bytes(f)
        src, dst = self._addrs()
        length = len(f) - self.l4
        struct.pack_into(
            ">H", f, at, ones_sum(pseudo_header(self.version, src, dst, self.proto, length))
        )
        return bytes(f)

    def needs_csum(self) -> bytes:
        """The header of :meth:`partial`."""
        return vnet_hdr(F_NEEDS_CSUM, csum_start=self.l4, csum_offset=self.csum_offset)

    def gso(self, gso_size: int, ecn: bool = False) -> bytes:
        """The header of this frame as a super-frame of ``gso_size`` segments."""
        kind = GSO_UDP_L4 if self.proto == UDP else GSO_TCPV4 if self.version == 4 else GSO_TCPV6
        return vnet_hdr(
            F_NEEDS_CSUM,
            kind | (GSO_ECN if ecn else 0),
            self.hlen,
            gso_size,
            self.l4,
            self.csum_offset,
        )

    def _addrs(self) -> tuple[bytes, bytes]:
        f, l3 = self.frame, self.l3
        if self.version == 4:
            return f[l3 + 12 : l3 + 16], f[l3 + 16 : l3 + 20]
        return f[l3 + 8 : l3 + 24], f[l3 + 24 : l3 + 40]


def ip_packet(
    version: int,
    proto: int,
    l4: bytes,
    *,
    tags: bytes = b"",
    ip_options: bytes = b"",
    ident: int = 0x4242,
    ext: bytes = b"",
    ext_nh: int = 0,
    src: str | None = None,
    dst: str | None = None,
    src_mac: bytes = SRC_MAC,
    dst_mac: bytes = DST_MAC,
) -> tuple[bytes, int]:
    """Ethernet + IP header + ``l4``; the frame and the IP header's offset.
    IPv6 ``ext`` are extension headers, ``ext_nh`` the first one's number;
    ``src`` and ``dst`` default to SRC4/DST4 (SRC6/DST6)."""
    l3 = 14 + len(tags)
    if version == 4:
        assert len(ip_options) % 4 == 0
        ihl = 5 + len(ip_options) // 4
        total = ihl * 4 + len(l4)
        hdr = struct.pack(
            ">BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            min(total, 0xFFFF),
            ident,
            0x4000,
            64,
            proto,
            0,
            _addr(src or SRC4),
            _addr(dst or DST4),
        )
        hdr += ip_options
        hdr = hdr[:10] + struct.pack(">H", inet_checksum(hdr)) + hdr[12:]
        et = 0x0800
    else:
        nh = ext_nh if ext else proto
        hdr = struct.pack(
            ">IHBB16s16s",
            0x60000000,
            min(len(ext) + len(l4), 0xFFFF),
            nh,
            64,
            _addr(src or SRC6),
            _addr(dst or DST6),
        )
        hdr += ext
        et = 0x86DD
    return dst_mac + src_mac + tags + struct.pack(">H", et) + hdr + l4, l3


def _with_l4_checksum(
    version: int, proto: int, l4: bytes, at: int, frame_l4_addrs: tuple[bytes, bytes]
) -> bytes:
    src, dst = frame_l4_addrs
    c = inet_checksum(pseudo_header(version, src, dst, proto, len(l4)) + l4)
    if proto == UDP and c == 0:
        c = 0xFFFF
    return l4[:at] + struct.pack(">H", c) + l4[at + 2 :]


def _addrs_of(version: int) -> tuple[bytes, bytes]:
    if version == 4:
        return _addr(SRC4), _addr(DST4)
    return _addr(SRC6), _addr(DST6)


def tcp_packet(
    version: int,
    payload: bytes,
    *,
    seq: int = 0x10000000,
    ack: int = 0x20000000,
    flags: int = ACK | PSH,
    options: bytes = TS_OPTIONS,
    sport: int = 40000,
    dport: int = 5201,
    tags: bytes = b"",
    ip_options: bytes = b"",
    ident: int = 0x4242,
    ext: bytes = b"",
    ext_nh: int = 0,
) -> Packet:
    """A TCP segment (any size: a super-frame too) with every checksum right."""
    assert len(options) % 4 == 0
    doff = 5 + len(options) // 4
    seg = (
        struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65000, 0, 0)
        + options
        + payload
    )
    seg = _with_l4_checksum(version, TCP, seg, 16, _addrs_of(version))
    frame, l3 = ip_packet(
        version, TCP, seg, tags=tags, ip_options=ip_options, ident=ident, ext=ext, ext_nh=ext_nh
    )
    l4 = len(frame) - len(seg)
    return Packet(frame, l3, l4, version, TCP, l4 + doff * 4)


def udp_packet(
    version: int,
    payload: bytes,
    *,
    sport: int = 40001,
    dport: int = 5202,
    tags: bytes = b"",
    ip_options: bytes = b"",
    ident: int = 0x4242,
) -> Packet:
    dgram = struct.pack(">HHHH", sport, dport, min(8 + len(payload), 0xFFFF), 0) + payload
    dgram = _with_l4_checksum(version, UDP, dgram, 6, _addrs_of(version))
    frame, l3 = ip_packet(version, UDP, dgram, tags=tags, ip_options=ip_options, ident=ident)
    l4 = len(frame) - len(dgram)
    return Packet(frame, l3, l4, version, UDP, l4 + 8)


def sctp_packet(
    version: int, chunk: bytes, *, tags: bytes = b"", ext: bytes = b"", ext_nh: int = 0
) -> Packet:
    """An SCTP packet (common header, then ``chunk``) with its CRC32c, stored as
    Linux stores it (little-endian)."""
    pkt = struct.pack(">HHII", 5000, 5001, 0xCAFEF00D, 0) + chunk
    pkt = pkt[:8] + struct.pack("<I", crc32c(pkt)) + pkt[12:]
    frame, l3 = ip_packet(version, SCTP, pkt, tags=tags, ext=ext, ext_nh=ext_nh)
    l4 = len(frame) - len(pkt)
    return Packet(frame, l3, l4, version, SCTP, l4 + 12)


ICMP = 1
ECHO_REPLY, ECHO_REQUEST = 0, 8
ETH_ARP = 0x0806
ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST = b"\xff" * 6
#: The shortest Ethernet frame without its FCS: shorter ones are padded.
MIN_FRAME = 60
_ECHO = struct.Struct(">BBHHH")
_ARP = struct.Struct(">HHBBH6s4s6s4s")


def icmp_echo(
    src: str,
    dst: str,
    ident: int,
    seq: int,
    payload: bytes,
    *,
    reply: bool = False,
    src_mac: bytes = SRC_MAC,
    dst_mac: bytes = DST_MAC,
    tags: bytes = b"",
) -> bytes:
    """An ICMP echo request (or ``reply``) over IPv4, every checksum right."""
    msg = _ECHO.pack(ECHO_REPLY if reply else ECHO_REQUEST, 0, 0, ident, seq) + payload
    msg = msg[:2] + struct.pack(">H", inet_checksum(msg)) + msg[4:]
    frame, _ = ip_packet(
        4,
        ICMP,
        msg,
        tags=tags,
        ident=seq & 0xFFFF,
        src=src,
        dst=dst,
        src_mac=src_mac,
        dst_mac=dst_mac,
    )
    return frame


def echo_fields(p: Packet) -> tuple[int, int, int, bytes] | None:
    """``(type, ident, seq, payload)`` of the ICMP echo request or reply in
    ``p`` (from :func:`locate`), or None if it is not one."""
    f = p.frame
    if p.version != 4 or p.proto != ICMP or len(f) < p.l4 + _ECHO.size:
        return None
    kind, _code, _csum, ident, seq = _ECHO.unpack_from(f, p.l4)
    if kind not in (ECHO_REPLY, ECHO_REQUEST):
        return None
    (total,) = struct.unpack_from(">H", f, p.l3 + 2)
    return kind, ident, seq, f[p.l4 + _ECHO.size : p.l3 + total]


def arp(
    op: int,
    sender_mac: bytes,
    sender_ip: str,
    target_ip: str,
    *,
    target_mac: bytes = bytes(6),
    dst_mac: bytes = BROADCAST,
    tags: bytes = b"",
) -> bytes:
    """An ARP request or reply (Ethernet, IPv4), padded to 60 bytes."""
    body = _ARP.pack(
        1, 0x0800, 6, 4, op, sender_mac, _addr(sender_ip), target_mac, _addr(target_ip)
    )
    frame = dst_mac + sender_mac + tags + struct.pack(">H", ETH_ARP) + body
    return frame + bytes(max(0, MIN_FRAME - len(frame)))


def arp_fields(frame: bytes, at: int) -> tuple[int, bytes, str, bytes, str] | None:
    """``(op, sender MAC, sender IP, target MAC, target IP)`` of the Ethernet/IPv4
    ARP packet at offset ``at`` of ``frame``, or None."""
    if len(frame) < at + _ARP.size:
        return None
    htype, ptype, hlen, plen, op, smac, sip, tmac, tip = _ARP.unpack_from(frame, at)
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    return op, smac, str(ipaddress.IPv4Address(sip)), tmac, str(ipaddress.IPv4Address(tip))


def locate(frame: bytes) -> Packet | None:
    """The headers of an Ethernet frame carrying IPv4 or IPv6 (VLAN tags
    skipped, no IPv6 extension headers), or None."""
    off = 12
    while len(frame) >= off + 2 and frame[off : off + 2] in (b"\x81\x00", b"\x88\xa8"):
        off += 4
    if len(frame) < off + 2:
        return None
    et = frame[off : off + 2]
    l3 = off + 2
    if et == b"\x08\x00" and len(frame) >= l3 + 20:
        l4 = l3 + (frame[l3] & 15) * 4
        proto = frame[l3 + 9]
        version = 4
    elif et == b"\x86\xdd" and len(frame) >= l3 + 40:
        l4 = l3 + 40
        proto = frame[l3 + 6]
        version = 6
    else:
        return None
    if proto == TCP and len(frame) >= l4 + 20:
        hlen = l4 + (frame[l4 + 12] >> 4) * 4
    elif proto == UDP:
        hlen = l4 + 8
    elif proto == SCTP:
        hlen = l4 + 12
    else:
        hlen = l4
    return Packet(frame, l3, l4, version, proto, hlen)


def check_frame(frame: bytes) -> list[str]:
    """What is wrong with the IP packet in ``frame`` (empty: nothing, or not IP):
    IPv4 header checksum and total length, IPv6 payload length, the TCP, UDP or
    ICMP/ICMPv6 checksum with its pseudo-header, the SCTP CRC32c.  Ethernet
    padding after the IP packet is allowed."""
    p = locate(frame)
    if p is None:
        return []
    problems = []
    f, l3, l4 = p.frame, p.l3, p.l4
    if p.version == 4:
        ihl = (f[l3] & 15) * 4
        if ones_sum(f[l3 : l3 + ihl]) != 0xFFFF:
            problems.append("IPv4 header checksum")
        (total,) = struct.unpack_from(">H", f, l3 + 2)
        if total > len(f) - l3 or (len(f) - l3 - total and len(f) > 60):
            problems.append(f"IPv4 total length {total}, frame has {len(f) - l3}")
        end = l3 + total
        if struct.unpack_from(">H", f, l3 + 6)[0] & 0x3FFF:
            return problems  # a fragment: the transport checksum spans several
        src, dst = f[l3 + 12 : l3 + 16], f[l3 + 16 : l3 + 20]
    else:
        (plen,) = struct.unpack_from(">H", f, l3 + 4)
        if plen > len(f) - l3 - 40 or (len(f) - l3 - 40 - plen and len(f) > 60):
            problems.append(f"IPv6 payload length {plen}, frame has {len(f) - l3 - 40}")
        end = l3 + 40 + plen
        src, dst = f[l3 + 8 : l3 + 24], f[l3 + 24 : l3 + 40]
    seg = f[l4:end]
    if p.proto in (TCP, UDP) or (p.proto == 58 and p.version == 6):
        if p.proto == UDP and seg[6:8] == b"\0\0" and p.version == 4:
            return problems  # no checksum
        if ones_sum(pseudo_header(p.version, src, dst, p.proto, len(seg)) + seg) != 0xFFFF:
            problems.append(f"IP protocol {p.proto} checksum")
    elif p.proto == 1 and p.version == 4:
        if ones_sum(seg) != 0xFFFF:
            problems.append("ICMP checksum")
    elif p.proto == SCTP and len(seg) >= 12:
        (stored,) = struct.unpack_from("<I", seg, 8)
        if crc32c(seg[:8] + b"\0\0\0\0" + seg[12:]) != stored:
            problems.append("SCTP CRC32c")
    return problems
