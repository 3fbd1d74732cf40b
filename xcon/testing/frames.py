"""Ethernet frames for tests, the demo and the benchmark."""

from __future__ import annotations

import struct
import zlib

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
