"""The pure-Python backend of the frame functions (see :mod:`xcon.native`).

Byte-for-byte the same results as the C backend; used when the compiled
module is missing or ``XCON_NATIVE=0``, and as the reference the property
tests compare the C code against.
"""

from __future__ import annotations

import errno
import os
import struct

from xcon.native.abi import (
    ETH_HDR_LEN,
    MAX_FRAME,
    NEED_DATA,
    READ_BATCH,
    READ_EOF,
    TOO_BIG,
    TPID_8021Q,
    VID_MASK,
    VLAN_HDR_LEN,
    WRITE_FRAME_REJECTED,
    ZERO,
    Backend,
    InsertResult,
    ReadableBuffer,
    ReadResult,
    ScanResult,
    StripResult,
    WritableBuffer,
    WriteResult,
    check_count,
    check_range,
    check_vid,
)


def _size(buf: ReadableBuffer) -> int:
    return buf.nbytes if isinstance(buf, memoryview) else len(buf)


_u32 = struct.Struct(">I")
_u16 = struct.Struct(">H")
_get_u32 = _u32.unpack_from
_put_u32 = _u32.pack_into
_get_u16 = _u16.unpack_from


def _py_scan(buf: ReadableBuffer, start: int, end: int) -> ScanResult:
    check_range(_size(buf), start, end)
    get = _get_u32
    pos = start
    n = 0
    while end - pos >= 4:
        (length,) = get(buf, pos)
        if length == 0:
            return pos, n, ZERO
        if length > MAX_FRAME:
            return pos, n, TOO_BIG
        nxt = pos + 4 + length
        if nxt > end:
            break
        pos = nxt
        n += 1
    return pos, n, NEED_DATA


def _rewrite_views(
    src: ReadableBuffer,
    start: int,
    end: int,
    vid: int,
    dst: WritableBuffer,
    dst_start: int,
    dst_end: int,
) -> tuple[memoryview, memoryview]:
    """Checked byte views of a VLAN rewrite's buffers."""
    s = memoryview(src).cast("B")
    d = memoryview(dst).cast("B")
    if d.readonly:
        raise BufferError("destination buffer is not writable")
    check_range(s.nbytes, start, end, "source")
    check_range(d.nbytes, dst_start, dst_end, "destination")
    check_vid(vid)
    return s, d


def _py_vlan_strip(
    src: ReadableBuffer,
    start: int,
    end: int,
    vid: int,
    dst: WritableBuffer,
    dst_start: int,
    dst_end: int,
) -> StripResult:
    s, d = _rewrite_views(src, start, end, vid, dst, dst_start, dst_end)
    get32 = _get_u32
    get16 = _get_u16
    put32 = _put_u32
    pos = start
    w = dst_start
    n = untagged = other = runt = 0
    while end - pos >= 4:
        (length,) = get32(s, pos)
        if length == 0 or length > MAX_FRAME or pos + 4 + length > end:
            break
        f = pos + 4
        if length < ETH_HDR_LEN:
            runt += 1
        elif get16(s, f + 12)[0] != TPID_8021Q:
            untagged += 1
        elif length < VLAN_HDR_LEN:
            runt += 1
        elif get16(s, f + 14)[0] & VID_MASK != vid:
            other += 1
        else:
            out_len = length - 4
            if dst_end - w < 4 + out_len:
                break
            put32(d, w, out_len)
            d[w + 4 : w + 16] = s[f : f + 12]
            d[w + 16 : w + 4 + out_len] = s[f + 16 : f + length]
            w += 4 + out_len
            n += 1
        pos = f + length
    return pos, w, n, (untagged, other, runt)


def _py_vlan_insert(
    src: ReadableBuffer,
    start: int,
    end: int,
    vid: int,
    dst: WritableBuffer,
    dst_start: int,
    dst_end: int,
) -> InsertResult:
    s, d = _rewrite_views(src, start, end, vid, dst, dst_start, dst_end)
    tag = _u32.pack((TPID_8021Q << 16) | vid)
    get32 = _get_u32
    put32 = _put_u32
    pos = start
    w = dst_start
    n = too_big = runt = 0
    while end - pos >= 4:
        (length,) = get32(s, pos)
        if length == 0 or length > MAX_FRAME or pos + 4 + length > end:
            break
        f = pos + 4
        if length < ETH_HDR_LEN:
            runt += 1
        elif length + 4 > MAX_FRAME:
            too_big += 1
        else:
            out_len = length + 4
            if dst_end - w < 4 + out_len:
                break
            put32(d, w, out_len)
            d[w + 4 : w + 16] = s[f : f + 12]
            d[w + 16 : w + 20] = tag
            d[w + 20 : w + 4 + out_len] = s[f + 12 : f + length]
            w += 4 + out_len
            n += 1
        pos = f + length
    return pos, w, n, (too_big, runt)


def _py_read_frames(
    fd: int,
    buf: WritableBuffer,
    start: int,
    end: int,
    max_frame: int,
    max_count: int = READ_BATCH,
) -> ReadResult:
    b = memoryview(buf).cast("B")
    if b.readonly:
        raise BufferError("buffer is not writable")
    check_range(b.nbytes, start, end)
    check_count(max_count)
    if max_frame < 1:
        return start, 0, errno.EINVAL
    max_frame = min(max_frame, MAX_FRAME)
    if end - start < 4 + max_frame:
        return start, 0, errno.ENOBUFS
    readv = os.readv
    pos = start
    n = 0
    err = 0
    while n < max_count and end - pos >= 4 + max_frame:
        try:
            r = readv(fd, (b[pos + 4 : pos + 4 + max_frame],))
        except BlockingIOError:
            break
        except OSError as e:
            err = e.errno or errno.EIO
            break
        if r == 0:
            err = READ_EOF
            break
        _put_u32(b, pos, r)
        pos += 4 + r
        n += 1
    return pos, n, err


def _py_write_frames(fd: int, buf: ReadableBuffer, start: int, end: int) -> WriteResult:
    b = memoryview(buf).cast("B")
    check_range(b.nbytes, start, end)
    write = os.write
    pos = start
    n = dropped = 0
    err = 0
    while end - pos >= 4:
        (length,) = _get_u32(b, pos)
        nxt = pos + 4 + length
        if nxt > end:
            break
        if length == 0 or length > MAX_FRAME:
            dropped += 1
            pos = nxt
            continue
        try:
            write(fd, b[pos + 4 : nxt])
        except BlockingIOError:
            break
        except OSError as e:
            if e.errno in WRITE_FRAME_REJECTED:
                dropped += 1
                pos = nxt
                continue
            err = e.errno or errno.EIO
            break
        n += 1
        pos = nxt
    return pos, n, dropped, err


BACKEND = Backend(
    name="python",
    scan=_py_scan,
    vlan_strip=_py_vlan_strip,
    vlan_insert=_py_vlan_insert,
    read_frames=_py_read_frames,
    write_frames=_py_write_frames,
)
