"""Ethernet frames for tests, the demo and the benchmark, and qemu's stream encoding
of them (4-byte big-endian length, then the frame): the one place tests build either."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

from xcon.limits import FRAME_HEADER

DST = bytes.fromhex("525400000002")
SRC = bytes.fromhex("525400000001")
ETHERTYPE_TEST = 0x88B5  # IEEE local experimental


def ether(
    payload: bytes, ethertype: int = ETHERTYPE_TEST, dst: bytes = DST, src: bytes = SRC
) -> bytes:
    return dst + src + struct.pack(">H", ethertype) + payload


def tagged(frame: bytes, vid: int, pcp: int = 0, tpid: int = 0x8100) -> bytes:
    """``frame`` with an 802.1Q (or ``tpid``) tag inserted after the MAC addresses."""
    return frame[:12] + struct.pack(">HH", tpid, (pcp << 13) | vid) + frame[12:]


def numbered(seq: int, size: int) -> bytes:
    """A frame of ``size`` bytes whose content is a function of ``seq`` and checks itself.

    Layout: Ethernet header, seq (8 bytes), crc32 of the rest (4 bytes), filler.
    """
    if size < 26:
        raise ValueError("numbered frames are at least 26 bytes")
    body_len = size - 14 - 12
    filler = (seq.to_bytes(8, "big") * (body_len // 8 + 1))[:body_len]
    crc = zlib.crc32(filler) & 0xFFFFFFFF
    return ether(struct.pack(">QI", seq, crc) + filler)


def check_numbered(frame: bytes) -> int:
    """The seq of a frame made by :func:`numbered`; raises ValueError if it is corrupt."""
    if len(frame) < 26:
        raise ValueError(f"short frame ({len(frame)} bytes)")
    seq, crc = struct.unpack_from(">QI", frame, 14)
    filler = frame[26:]
    if zlib.crc32(filler) & 0xFFFFFFFF != crc:
        raise ValueError(f"frame {seq}: checksum mismatch")
    expect = (seq.to_bytes(8, "big") * (len(filler) // 8 + 1))[: len(filler)]
    if filler != expect:
        raise ValueError(f"frame {seq}: content mismatch")
    return int(seq)


def wire(frame: bytes) -> bytes:
    """One frame in qemu's stream encoding."""
    return struct.pack(">I", len(frame)) + frame


def encode_frames(frames: Iterable[bytes]) -> bytes:
    """Frames in qemu's stream encoding, back to back."""
    return b"".join(struct.pack(">I", len(f)) + f for f in frames)


def take_frames(data: bytes | bytearray) -> tuple[list[bytes], bytes]:
    """The whole frames at the start of a stream, and the bytes left after them."""
    frames, pos = [], 0
    while len(data) - pos >= FRAME_HEADER:
        (n,) = struct.unpack_from(">I", data, pos)
        end = pos + FRAME_HEADER + n
        if end > len(data):
            break
        frames.append(bytes(data[pos + FRAME_HEADER : end]))
        pos = end
    return frames, bytes(data[pos:])


def split_frames(data: bytes | bytearray) -> list[bytes]:
    """The frames of a length-prefixed byte string; raises ValueError if it does
    not end on a frame boundary (a relay must never leave a partial frame)."""
    frames, rest = take_frames(data)
    if rest:
        what = "header" if len(rest) < FRAME_HEADER else "frame"
        raise ValueError(f"partial {what} at offset {len(data) - len(rest)}")
    return frames


#: Link-local control protocols a Linux bridge consumes or filters (IEEE 802.1D
#: reserved group addresses 01:80:c2:00:00:0X), which a cross-connect must pass.
RESERVED = {
    "stp": (bytes.fromhex("0180c2000000"), 0x0026),  # 802.3 length; LLC 42 42 03 follows
    "lacp": (bytes.fromhex("0180c2000002"), 0x8809),  # slow protocols, subtype 1
    "8021x": (bytes.fromhex("0180c2000003"), 0x888E),  # EAPOL
    "lldp": (bytes.fromhex("0180c200000e"), 0x88CC),
}


def reserved_multicast_frames() -> list[bytes]:
    """One frame of each protocol in :data:`RESERVED`, with plausible bodies."""
    bodies = {
        "stp": bytes.fromhex("424203") + bytes(35),  # LLC + a configuration BPDU
        "lacp": bytes([1, 1]) + bytes(108),  # LACPDU: subtype 1, version 1
        "8021x": bytes([2, 1, 0, 0]) + bytes(42),  # EAPOL-Start
        "lldp": bytes.fromhex("0207046c6162310404056574683106020078") + bytes(28),
    }
    return [ether(bodies[k], ethertype=t, dst=dst) for k, (dst, t) in RESERVED.items()]
