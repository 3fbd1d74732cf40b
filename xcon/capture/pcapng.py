"""pcapng blocks, as bytes (sans-I/O): what a capture file or stream is made of.

The format is the IETF draft "PCAP Next Generation (pcapng) Capture File
Format" (draft-ietf-opsawg-pcapng), which tcpdump/libpcap and
Wireshark/tshark read.  A capture is one section:

* a Section Header Block (byte-order magic, version 1.0, length unknown);
* one Interface Description Block per link end (LINKTYPE_ETHERNET,
  ``if_name`` the end's name, ``if_tsresol`` 9: nanosecond timestamps), in
  the order of the link's ends, so interface 0 is the first end;
* Enhanced Packet Blocks (``native.capture_frames`` writes those of forwarded
  frames in one pass; :func:`enhanced_packet` the few others, with a comment);
* Interface Statistics Blocks when a file ends (a capture stops, or a ring
  file is rotated).

Everything is written little-endian; the section header's magic says so, and
readers on any machine swap as they need to.
"""

from __future__ import annotations

import struct

from xcon.capture.options import MAX_SNAPLEN
from xcon.native.abi import EPB_FIXED

#: Block types.
SHB = 0x0A0D0D0A
IDB = 0x00000001
ISB = 0x00000005
EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET = 1

#: Option codes.
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_TSRESOL = 9
EPB_FLAGS = 2
EPB_DROPCOUNT = 4
ISB_STARTTIME = 2
ISB_ENDTIME = 3
ISB_IFRECV = 4
ISB_FILTERACCEPT = 6
ISB_OSDROP = 7
ISB_USRDELIV = 8

#: epb_flags, bits 0-1: the direction.
INBOUND = 1
OUTBOUND = 2

#: Interface snap length when frames are not cut (libpcap's largest).
NO_SNAPLEN = MAX_SNAPLEN

_u32 = struct.Struct("<I")


def _pad(n: int) -> int:
    return (n + 3) & ~3


def option(code: int, value: bytes) -> bytes:
    """One option: code, length, value padded to 32 bits."""
    return struct.pack("<HH", code, len(value)) + value + bytes(_pad(len(value)) - len(value))


def _options(opts: list[bytes]) -> bytes:
    return b"".join(opts) + struct.pack("<HH", OPT_ENDOFOPT, 0) if opts else b""


def block(block_type: int, body: bytes) -> bytes:
    """A block: type, total length, ``body`` (a multiple of 4 bytes), total length."""
    total = 12 + len(body)
    assert len(body) % 4 == 0
    return struct.pack("<II", block_type, total) + body + _u32.pack(total)


def whole_blocks(buf: bytes | bytearray | memoryview, n: int) -> int:
    """How many of the first ``n`` bytes of ``buf`` (blocks, back to back)
    are whole blocks: where a file cut after ``n`` bytes must be truncated to."""
    off = 0
    while off + 8 <= n:
        total = _u32.unpack_from(buf, off + 4)[0]
        if total < 12 or total % 4 or off + total > n:
            break
        off += total
    return off


def section_header(application: str = "") -> bytes:
    """The Section Header Block (version 1.0, section length unknown: -1)."""
    opts = [option(SHB_USERAPPL, application.encode())] if application else []
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
    return block(SHB, body)


def interface_description(name: str, snaplen: int = 0) -> bytes:
    """An Ethernet interface called ``name``, nanosecond timestamps; ``snaplen``
    0: frames are not cut."""
    opts = [option(IF_NAME, name.encode()), option(IF_TSRESOL, bytes([9]))]
    body = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, snaplen or NO_SNAPLEN) + _options(opts)
    return block(IDB, body)


def enhanced_packet(
    if_id: int,
    ts_ns: int,
    frame: bytes | memoryview,
    orig_len: int | None = None,
    flags: int = 0,
    comment: str = "",
) -> bytes:
    """One frame (already cut to the snap length; ``orig_len`` its length
    before), with its direction in ``epb_flags`` and an optional comment."""
    data = bytes(frame)
    cap = len(data)
    opts = []
    if comment:
        opts.append(option(OPT_COMMENT, comment.encode()))
    if flags:
        opts.append(option(EPB_FLAGS, _u32.pack(flags)))
    body = (
        struct.pack(
            "<IIIII",
            if_id,
            ts_ns >> 32,
            ts_ns & 0xFFFFFFFF,
            cap,
            cap if orig_len is None else orig_len,
        )
        + data
        + bytes(_pad(cap) - cap)
        + _options(opts)
    )
    return block(EPB, body)


def epb_size(caplen: int, flags: int) -> int:
    """The size of what ``native.capture_frames`` writes for one frame."""
    return EPB_FIXED + _pad(caplen) + (12 if flags else 0)


def interface_statistics(
    if_id: int,
    ts_ns: int,
    *,
    start_ns: int,
    received: int,
    delivered: int,
    dropped: int,
    accepted: int | None = None,
) -> bytes:
    """Statistics of one interface since the capture began: ``received``
    frames seen on the interface (``isb_ifrecv``), ``accepted`` by the filter
    (``isb_filteraccept``, when there is one), ``dropped`` by the capture for
    want of buffer room (``isb_osdrop``), ``delivered`` to this output
    (``isb_usrdeliv``)."""

    def u64(code: int, value: int) -> bytes:
        return option(code, struct.pack("<Q", value))

    def ts(code: int, value: int) -> bytes:
        return option(code, struct.pack("<II", value >> 32, value & 0xFFFFFFFF))

    opts = [ts(ISB_STARTTIME, start_ns), ts(ISB_ENDTIME, ts_ns), u64(ISB_IFRECV, received)]
    if accepted is not None:
        opts.append(u64(ISB_FILTERACCEPT, accepted))
    opts += [u64(ISB_OSDROP, dropped), u64(ISB_USRDELIV, delivered)]
    body = struct.pack("<III", if_id, ts_ns >> 32, ts_ns & 0xFFFFFFFF) + _options(opts)
    return block(ISB, body)
