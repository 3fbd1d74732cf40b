"""A strict pcapng reader for the tests: every block and option checked
against the format (lengths, padding, trailing length), little- or big-endian
sections.  Independent of :mod:`xcon.capture.pcapng` (it shares no code with
the writer), so a test reading back what xcon wrote checks the writer."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field


class PcapngError(AssertionError):
    """The bytes are not valid pcapng."""


@dataclass
class Block:
    type: int
    body: bytes
    #: Options by code, each code's values in order.
    options: dict[int, list[bytes]] = field(default_factory=dict)
    fields: dict[str, int] = field(default_factory=dict)
    data: bytes = b""

    def option(self, code: int) -> bytes | None:
        values = self.options.get(code)
        return values[0] if values else None


@dataclass
class Packet:
    """An Enhanced Packet Block, read."""

    interface: int
    ts: int
    caplen: int
    orig_len: int
    data: bytes
    flags: int | None
    comment: str | None


@dataclass
class Capture:
    interfaces: list[dict[str, object]]
    packets: list[Packet]
    statistics: list[Block]
    blocks: list[Block]
    sections: int


def _options(raw: bytes, end: str) -> dict[int, list[bytes]]:
    opts: dict[int, list[bytes]] = {}
    pos = 0
    while pos < len(raw):
        if len(raw) - pos < 4:
            raise PcapngError("option header cut short")
        code, length = struct.unpack_from(end + "HH", raw, pos)
        pos += 4
        if code == 0:
            if length != 0:
                raise PcapngError("opt_endofopt with a length")
            if pos != len(raw):
                raise PcapngError("bytes after opt_endofopt")
            return opts
        padded = (length + 3) & ~3
        if pos + padded > len(raw):
            raise PcapngError(f"option {code} runs past its block")
        if raw[pos + length : pos + padded] != bytes(padded - length):
            raise PcapngError(f"option {code} padding is not zero")
        opts.setdefault(code, []).append(raw[pos : pos + length])
        pos += padded
    return opts


def read(data: bytes) -> Capture:
    """Parse a whole capture (one or more sections); raises PcapngError."""
    pos = 0
    end = "<"
    blocks: list[Block] = []
    interfaces: list[dict[str, object]] = []
    packets: list[Packet] = []
    stats: list[Block] = []
    sections = 0
    while pos < len(data):
        if len(data) - pos < 12:
            raise PcapngError(f"block header cut short at {pos}")
        (btype,) = struct.unpack_from("<I", data, pos)
        if btype == 0x0A0D0D0A:
            magic = data[pos + 8 : pos + 12]
            if magic == b"\x4d\x3c\x2b\x1a":
                end = "<"
            elif magic == b"\x1a\x2b\x3c\x4d":
                end = ">"
            else:
                raise PcapngError("bad byte-order magic")
            sections += 1
            interfaces = [] if sections == 1 else interfaces
        elif sections == 0:
            raise PcapngError("the first block is not a section header")
        btype, total = struct.unpack_from(end + "II", data, pos)
        if total % 4 or total < 12 or pos + total > len(data):
            raise PcapngError(f"block at {pos}: bad total length {total}")
        (trail,) = struct.unpack_from(end + "I", data, pos + total - 4)
        if trail != total:
            raise PcapngError(f"block at {pos}: trailing length {trail} != {total}")
        body = data[pos + 8 : pos + total - 4]
        blk = Block(btype, body)
        if btype == 0x0A0D0D0A:
            _m, major, minor, _len = struct.unpack_from(end + "IHHq", body)
            if (major, minor) != (1, 0):
                raise PcapngError(f"section version {major}.{minor}")
            blk.options = _options(body[16:], end)
            if sections > 1:
                interfaces = []
        elif btype == 1:
            link, _res, snaplen = struct.unpack_from(end + "HHI", body)
            blk.options = _options(body[8:], end)
            name = blk.option(2)
            resol = blk.option(9)
            interfaces.append(
                {
                    "linktype": link,
                    "snaplen": snaplen,
                    "name": name.decode() if name is not None else None,
                    "tsresol": resol[0] if resol else 6,
                }
            )
        elif btype == 6:
            if_id, hi, lo, cap, orig = struct.unpack_from(end + "IIIII", body)
            if if_id >= len(interfaces):
                raise PcapngError(f"packet on interface {if_id}, {len(interfaces)} described")
            padded = (cap + 3) & ~3
            if 20 + padded > len(body):
                raise PcapngError("packet data runs past its block")
            if cap > orig:
                raise PcapngError(f"captured {cap} > original {orig}")
            if body[20 + cap : 20 + padded] != bytes(padded - cap):
                raise PcapngError("packet padding is not zero")
            blk.options = _options(body[20 + padded :], end)
            flags = blk.option(2)
            comment = blk.option(1)
            packets.append(
                Packet(
                    if_id,
                    (hi << 32) | lo,
                    cap,
                    orig,
                    body[20 : 20 + cap],
                    struct.unpack(end + "I", flags)[0] if flags is not None else None,
                    comment.decode() if comment is not None else None,
                )
            )
        elif btype == 5:
            if_id, hi, lo = struct.unpack_from(end + "III", body)
            blk.fields = {"interface": if_id, "ts": (hi << 32) | lo}
            blk.options = _options(body[12:], end)
            for code, key in ((4, "ifrecv"), (6, "filteraccept"), (7, "osdrop"), (8, "usrdeliv")):
                v = blk.option(code)
                if v is not None:
                    blk.fields[key] = struct.unpack(end + "Q", v)[0]
            stats.append(blk)
        blocks.append(blk)
        pos += total
    if sections == 0:
        raise PcapngError("empty capture")
    return Capture(interfaces, packets, stats, blocks, sections)


def read_file(path: str) -> Capture:
    """:func:`read` the file at ``path``."""
    with open(path, "rb") as f:
        return read(f.read())
