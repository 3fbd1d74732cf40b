"""Human-readable frame descriptions for ``--debug``."""

from __future__ import annotations

import logging

log = logging.getLogger("xcon.frames")

_TPIDS = (0x8100, 0x88A8, 0x9100)
HEXDUMP_BYTES = 32


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def describe_frame(frame: bytes | memoryview) -> str:
    """``dst src [vlan ...] type 0x.... len N | hex`` for one Ethernet frame."""
    f = bytes(frame[: max(HEXDUMP_BYTES, 22)])
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
    return " ".join(parts) + " | " + f[:HEXDUMP_BYTES].hex(" ")


def log_frames(direction: str, mv: memoryview, start: int, end: int) -> None:
    """Log one line per length-prefixed frame in ``mv[start:end]``."""
    pos = start
    while pos + 4 <= end:
        length = int.from_bytes(mv[pos : pos + 4], "big")
        if pos + 4 + length > end:
            break
        log.debug("%s %s", direction, describe_frame(mv[pos + 4 : pos + 4 + length]))
        pos += 4 + length
