"""Human-readable frame descriptions for ``--debug``.

Every frame a bridge handles is logged with its verdict: where it went
(``forwarded``, with the VLAN tag before and after a rewrite) or why it was
dropped (the same reason names as the drop counters), then the frame's
header fields and a hexdump of its first :data:`HEXDUMP_BYTES` bytes (enough
for the Ethernet, VLAN and IPv4/IPv6 headers)."""

from __future__ import annotations

import logging

from xcon.framing import iter_frames

log = logging.getLogger("xcon.frames")

_TPIDS = (0x8100, 0x88A8, 0x9100)
HEXDUMP_BYTES = 64


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def outer_vid(frame: bytes | memoryview) -> int | None:
    """The VLAN id of an outer 802.1Q tag, or None."""
    if len(frame) >= 18 and frame[12] == 0x81 and frame[13] == 0x00:
        return int.from_bytes(frame[14:16], "big") & 0xFFF
    return None


def describe_frame(frame: bytes | memoryview) -> str:
    """``src > dst [vlan ...] type 0x.... len N | hex`` for one Ethernet frame."""
    f = bytes(frame[:HEXDUMP_BYTES])
    n = len(frame)
    if n < 14:
        return f"runt len {n} | {f.hex(' ')}"
    parts = [f"{_mac(f[6:12])} > {_mac(f[0:6])}"]
    off = 12
    while off + 4 <= len(f) and int.from_bytes(f[off : off + 2], "big") in _TPIDS:
        tpid = int.from_bytes(f[off : off + 2], "big")
        tci = int.from_bytes(f[off + 2 : off + 4], "big")
        parts.append(
            f"vlan {tci & 0xFFF} pcp {tci >> 13}"
            + ("" if tpid == 0x8100 else f" tpid 0x{tpid:04x}")
        )
        off += 4
    if off + 2 <= len(f):
        parts.append(f"type 0x{int.from_bytes(f[off : off + 2], 'big'):04x}")
    parts.append(f"len {n}")
    return " ".join(parts) + " | " + f.hex(" ")


def log_frame(direction: str, verdict: str, frame: bytes | memoryview) -> None:
    log.debug("%s %s | %s", direction, verdict, describe_frame(frame))


def log_frames(direction: str, verdict: str, mv: memoryview, start: int, end: int) -> None:
    """Log one line per length-prefixed frame in ``mv[start:end]``, all with ``verdict``."""
    for off, length in iter_frames(mv, start, end):
        log_frame(direction, verdict, mv[off : off + length])


def strip_verdict(frame: memoryview, vid: int) -> str:
    """The verdict of the trunk-to-access rewrite for one frame (as the fast path decides)."""
    if len(frame) < 14:
        return "dropped: runt"
    if frame[12] != 0x81 or frame[13] != 0x00:
        return "dropped: untagged"
    if len(frame) < 18:
        return "dropped: runt"
    got = outer_vid(frame)
    if got != vid:
        return f"dropped: other_vlan (vlan {got}, access port is vlan {vid})"
    return f"forwarded, vlan {vid} -> untagged"


def insert_verdict(frame: memoryview, vid: int, max_frame: int) -> str:
    """The verdict of the access-to-trunk rewrite for one frame."""
    if len(frame) < 14:
        return "dropped: runt"
    if len(frame) + 4 > max_frame:
        return "dropped: too_big"
    before = outer_vid(frame)
    was = "untagged" if before is None else f"vlan {before}"
    return f"forwarded, {was} -> vlan {vid} (outer)"
