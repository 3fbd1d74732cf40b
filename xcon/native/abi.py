"""The frame ABI shared by both backends: constants, status codes, result
types and the argument checks every function makes before touching memory.

The contract of each function is in :mod:`xcon.native`'s docstring; the
values here are the ones ``native/xcon_native.h`` defines (the C module is
refused at import when they differ).
"""

from __future__ import annotations

import errno
import mmap
from collections.abc import Callable
from typing import NamedTuple

from xcon.limits import FRAME_HEADER, MAX_FRAME

__all__ = [
    "FRAME_HEADER",
    "MAX_FRAME",
    "NEED_DATA",
    "READ_BATCH",
    "READ_EOF",
    "TOO_BIG",
    "ZERO",
    "Backend",
]

#: Bumped with ``XCON_API_VERSION`` in ``native/xcon_native.h``.
API_VERSION = 3

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

ReadableBuffer = bytes | bytearray | memoryview | mmap.mmap
WritableBuffer = bytearray | memoryview | mmap.mmap

ScanResult = tuple[int, int, int]
StripResult = tuple[int, int, int, tuple[int, int, int]]
InsertResult = tuple[int, int, int, tuple[int, int]]
ReadResult = tuple[int, int, int]
WriteResult = tuple[int, int, int, int]

#: Drop reasons of the VLAN rewrites, in the order of their counter tuples.
STRIP_DROPS = ("untagged", "other_vlan", "runt")
INSERT_DROPS = ("too_big", "runt")


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
    vlan_strip: Callable[[ReadableBuffer, int, int, int, WritableBuffer, int, int], StripResult]
    vlan_insert: Callable[[ReadableBuffer, int, int, int, WritableBuffer, int, int], InsertResult]
    read_frames: Callable[..., ReadResult]
    write_frames: Callable[[int, ReadableBuffer, int, int], WriteResult]
    # AF_PACKET sockets with PACKET_VNET_HDR
    read_packets: Callable[..., PacketReadResult]
    write_packets: Callable[[int, ReadableBuffer, int, int], WriteResult]
    offload_frame: Callable[..., OffloadResult]


def check_range(size: int, start: int, end: int, what: str = "buffer") -> None:
    """Raise ValueError unless ``0 <= start <= end <= size``."""
    if not 0 <= start <= end <= size:
        raise ValueError(f"{what} range [{start}:{end}] outside 0..{size} or reversed")


def check_vid(vid: int) -> None:
    if not 0 <= vid <= VID_MASK:
        raise ValueError(f"VLAN id {vid} outside 0..4095")


def check_count(max_count: int) -> None:
    if max_count < 0:
        raise ValueError(f"max_count {max_count} < 0")
