"""The frame ABI shared by both backends: constants, status codes, result
types and the argument checks every function makes before touching memory.

The contract of each function is docs/native.md; the values here are the
ones ``native/xcon_native.h`` defines (the C module is refused at import when
they differ).
"""

from __future__ import annotations

import errno
import functools
import mmap
import socket
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from xcon.limits import FRAME_HEADER, MAX_FRAME

__all__ = [
    "DGRAM_BATCH",
    "FRAME_HEADER",
    "MAX_DGRAM",
    "MAX_FRAME",
    "MAX_PREFIX",
    "NEED_DATA",
    "READ_BATCH",
    "READ_EOF",
    "TOO_BIG",
    "ZERO",
    "Backend",
]

#: Bumped with ``XCON_API_VERSION`` in ``native/xcon_native.h``.
API_VERSION = 4

# scan() status: why the walk stopped.
NEED_DATA = 0
ZERO = 1
TOO_BIG = 2
#: read_frames(): a read returned 0 bytes (end of file / peer closed).
READ_EOF = -1
#: read_frames(): default cap on frames per call.
READ_BATCH = 1024

ETH_MAC_LEN = 12
ETH_HDR_LEN = 14
VLAN_TAG_LEN = 4
VLAN_HDR_LEN = ETH_HDR_LEN + VLAN_TAG_LEN
TPID_8021Q = 0x8100
VID_MASK = 0x0FFF
#: write_frames(): errors that reject one frame, not the device.
WRITE_FRAME_REJECTED = frozenset({errno.EMSGSIZE, errno.EINVAL, errno.ENOBUFS})

#: recv_datagrams(): the largest datagram payload a receive slot takes whole
#: (UDP's largest is 65507 bytes over IPv4, 65527 over IPv6).
MAX_DGRAM = 65535
#: recv_datagrams(): room one receive slot needs (length prefix + datagram).
DGRAM_SLOT = FRAME_HEADER + MAX_DGRAM
#: Datagrams per recvmmsg/sendmmsg call at most.
DGRAM_BATCH = 64
#: The longest header a datagram may carry before its frame (VXLAN's is 8).
MAX_PREFIX = 64
#: send_datagrams(): errors that reject one datagram, not the socket (an ICMP
#: error from an earlier datagram, no route, a firewall, too big, no memory).
DGRAM_REJECTED = frozenset(
    {
        errno.EMSGSIZE,
        errno.ENOBUFS,
        errno.EINVAL,
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EPERM,
    }
)
#: ``::ffff:0:0/96``, the IPv4-mapped IPv6 addresses.
V4_MAPPED = bytes(10) + b"\xff\xff"

ReadableBuffer = bytes | bytearray | memoryview | mmap.mmap
WritableBuffer = bytearray | memoryview | mmap.mmap

ScanResult = tuple[int, int, int]
StripResult = tuple[int, int, int, tuple[int, int, int]]
InsertResult = tuple[int, int, int, tuple[int, int]]
ReadResult = tuple[int, int, int]
WriteResult = tuple[int, int, int, int]
RecvResult = tuple[int, int, int, tuple[int, int, int]]
SendResult = tuple[int, int, int, int]
#: capture_frames: (consumed, written, nframes)
CaptureResult = tuple[int, int, int]

#: pcapng Enhanced Packet Block: bytes besides the padded frame (block type,
#: length, interface, timestamp, captured and original length, trailing
#: length), and the epb_flags option with the end of options.
EPB_FIXED = 32
EPB_FLAGS_OPT = 12

#: Drop reasons of the VLAN rewrites, in the order of their counter tuples.
STRIP_DROPS = ("untagged", "other_vlan", "runt")
INSERT_DROPS = ("too_big", "runt")
#: Drop reasons of recv_datagrams(), in the order of its counter tuple.
DGRAM_DROPS = ("bad_header", "foreign", "truncated")


# -- AF_PACKET sockets with PACKET_VNET_HDR (read_packets, write_packets, offload_frame) --

#: Bytes of ``struct virtio_net_hdr`` before each packet (host byte order).
VNET_HDR_LEN = 10
#: read_packets(): a packet is read only while this much room is left.
PACKET_ROOM = 98304

# offload_frame() verdicts: what became of one packet.
PKT_FORWARDED = 0
PKT_CSUM = 1
PKT_SPLIT = 2
PKT_UNSUPPORTED = 3
PKT_MALFORMED = 4
PKT_BAD_FRAME = 5
PKT_NO_ROOM = 6
#: The verdicts by number.
OFFLOAD_VERDICTS = (
    "forwarded",
    "csum",
    "split",
    "unsupported",
    "malformed",
    "bad_frame",
    "no_room",
)
#: read_packets(): the counters of its result, in order.
PACKET_COUNTERS = (
    "truncated",
    "outgoing",
    "csum_completed",
    "gso_split",
    "gso_dropped",
    "malformed",
    "bad_frame",
)

OffloadResult = tuple[int, int, int]
PacketCounters = tuple[int, int, int, int, int, int, int]
PacketReadResult = tuple[int, int, int, PacketCounters]


def check_vnet_hdr(size: int) -> None:
    if size != VNET_HDR_LEN:
        raise ValueError(f"virtio_net_hdr of {size} bytes (expected {VNET_HDR_LEN})")


def check_tag(tpid: int, tci: int) -> None:
    if not (0 <= tpid <= 0xFFFF and 0 <= tci <= 0xFFFF):
        raise ValueError(f"VLAN tag TPID {tpid:#x} / TCI {tci:#x} outside 0..0xffff")


class Backend(NamedTuple):
    """One implementation of the frame functions."""

    name: str
    scan: Callable[[ReadableBuffer, int, int], ScanResult]
    skip: Callable[[ReadableBuffer, int, int, int], ScanResult]
    vlan_strip: Callable[[ReadableBuffer, int, int, int, WritableBuffer, int, int], StripResult]
    vlan_insert: Callable[[ReadableBuffer, int, int, int, WritableBuffer, int, int], InsertResult]
    read_frames: Callable[..., ReadResult]
    write_frames: Callable[[int, ReadableBuffer, int, int], WriteResult]
    recv_datagrams: Callable[..., RecvResult]
    send_datagrams: Callable[..., SendResult]
    # AF_PACKET sockets with PACKET_VNET_HDR
    read_packets: Callable[..., PacketReadResult]
    write_packets: Callable[[int, ReadableBuffer, int, int], WriteResult]
    offload_frame: Callable[..., OffloadResult]
    # capture: pcapng blocks
    capture_frames: Callable[..., CaptureResult]


def check_range(size: int, start: int, end: int, what: str = "buffer") -> None:
    """Raise ValueError unless ``0 <= start <= end <= size``."""
    if not 0 <= start <= end <= size:
        raise ValueError(f"{what} range [{start}:{end}] outside 0..{size} or reversed")


def check_capture(if_id: int, flags: int, ts: int, snaplen: int) -> None:
    """capture_frames' numbers: 32-bit interface and flags, a 64-bit
    timestamp, a snap length from 0 (whole frames) to 2**32-1."""
    if not 0 <= if_id < 1 << 32:
        raise ValueError(f"interface id {if_id} outside 0..2**32-1")
    if not 0 <= flags < 1 << 32:
        raise ValueError(f"flags {flags} outside 0..2**32-1")
    if not 0 <= ts < 1 << 64:
        raise ValueError(f"timestamp {ts} outside 0..2**64-1")
    if not 0 <= snaplen < 1 << 32:
        raise ValueError(f"snaplen {snaplen} outside 0..2**32-1")


def check_vid(vid: int) -> None:
    if not 0 <= vid <= VID_MASK:
        raise ValueError(f"VLAN id {vid} outside 0..4095")


def check_count(max_count: int) -> None:
    if max_count < 0:
        raise ValueError(f"max_count {max_count} < 0")


def check_match(
    prefix_len: int, expect: ReadableBuffer, mask: ReadableBuffer
) -> tuple[bytes, bytes]:
    """``expect`` and ``mask`` as bytes; raise ValueError unless both are
    ``prefix_len`` bytes long and ``0 <= prefix_len <= MAX_PREFIX``."""
    if not 0 <= prefix_len <= MAX_PREFIX:
        raise ValueError(f"prefix_len {prefix_len} outside 0..{MAX_PREFIX}")
    e = bytes(expect)
    m = bytes(mask)
    if len(e) != prefix_len or len(m) != prefix_len:
        raise ValueError(
            f"expect ({len(e)} bytes) and mask ({len(m)} bytes) must be prefix_len "
            f"({prefix_len}) bytes long"
        )
    return e, m


def check_prefix(prefix: ReadableBuffer) -> bytes:
    """``prefix`` as bytes; raise ValueError when it is longer than MAX_PREFIX."""
    p = bytes(prefix)
    if len(p) > MAX_PREFIX:
        raise ValueError(f"prefix of {len(p)} bytes, at most {MAX_PREFIX}")
    return p


def check_peer(peer: ReadableBuffer | None) -> bytes:
    """The address a datagram's source must have, as 4 (IPv4) or 16 (IPv6)
    bytes, or ``b""`` for any source.  An IPv4-mapped IPv6 address becomes its
    IPv4 address (it matches the same sources).  Other lengths raise ValueError."""
    if peer is None:
        return b""
    p = bytes(peer)
    if len(p) == 16 and p[:12] == V4_MAPPED:
        return p[12:]
    if len(p) not in (4, 16):
        raise ValueError(f"peer address of {len(p)} bytes (expected 4 for IPv4, 16 for IPv6)")
    return p


class DgramAddress(NamedTuple):
    """A send_datagrams() destination, checked once: the ``sockaddr`` the C
    side gives sendmmsg, and the same address as a tuple of the family
    ``family`` for ``socket.sendmsg`` (which packs it into those bytes)."""

    family: int
    sockaddr: bytes
    sockaddr_tuple: tuple[Any, ...]


_be16 = struct.Struct(">H")
_be32 = struct.Struct(">I")
_sin = struct.Struct("=H2s4s8x")
_sin6 = struct.Struct("=H2s4s16sI")


def dgram_address(addr: tuple[Any, ...]) -> DgramAddress:
    """Check and pack a destination: ``(host, port)`` with a literal IPv4 or
    IPv6 address, or ``(host, port, flowinfo, scope_id)`` (flowinfo and
    scope_id optional) with a literal IPv6 address.  Raises ValueError for
    anything else (names are not looked up), TypeError for a non-tuple."""
    if not isinstance(addr, tuple):
        raise TypeError(f"address must be a tuple, not {type(addr).__name__}")
    if not 2 <= len(addr) <= 4:
        raise ValueError(f"address {addr!r}: expected (host, port[, flowinfo, scope_id])")
    host, port, *rest = addr
    flowinfo = rest[0] if rest else 0
    scope_id = rest[1] if len(rest) > 1 else 0
    for name, value, top in (
        ("port", port, 0xFFFF),
        ("flowinfo", flowinfo, 0xFFFFF),
        ("scope_id", scope_id, 0xFFFFFFFF),
    ):
        if type(value) is not int or not 0 <= value <= top:
            raise ValueError(f"address {addr!r}: {name} must be an integer 0..{top}")
    if type(host) is not str:
        raise ValueError(f"address {addr!r}: host must be a literal IP address string")
    return _pack_address(host, port, flowinfo, scope_id, len(addr) == 2)


@functools.lru_cache(maxsize=256)
def _pack_address(
    host: str, port: int, flowinfo: int, scope_id: int, may_be_v4: bool
) -> DgramAddress:
    if may_be_v4:
        try:
            raw = socket.inet_pton(socket.AF_INET, host)
        except OSError:
            pass
        else:
            sockaddr = _sin.pack(socket.AF_INET, _be16.pack(port), raw)
            text = socket.inet_ntop(socket.AF_INET, raw)
            return DgramAddress(socket.AF_INET, sockaddr, (text, port))
    try:
        raw = socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        raise ValueError(
            f"address {host!r}: not a literal IPv6 address"
            + (" or IPv4 address" if may_be_v4 else " (IPv4 takes (host, port))")
            + "; names are not looked up"
        ) from None
    sockaddr = _sin6.pack(socket.AF_INET6, _be16.pack(port), _be32.pack(flowinfo), raw, scope_id)
    text = socket.inet_ntop(socket.AF_INET6, raw)
    return DgramAddress(socket.AF_INET6, sockaddr, (text, port, flowinfo, scope_id))
