"""The pure-Python backend of the frame functions (see :mod:`xcon.native`).

Byte-for-byte the same results as the C backend; used when the compiled
module is missing or ``XCON_NATIVE=0``, and as the reference the property
tests compare the C code against.

The datagram functions take a bare descriptor but need ``recvmsg``/``sendmsg``
(flags, source address, destination): they wrap the caller's descriptor in a
``socket.socket(fileno=fd)`` for the call and ``detach()`` it afterwards, in
a ``finally``, so the descriptor is never closed or duplicated (see
:func:`_borrow`).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Any

from xcon.native.abi import (
    DGRAM_BATCH,
    DGRAM_REJECTED,
    DGRAM_SLOT,
    ETH_HDR_LEN,
    MAX_FRAME,
    NEED_DATA,
    READ_BATCH,
    READ_EOF,
    TOO_BIG,
    TPID_8021Q,
    V4_MAPPED,
    VID_MASK,
    VLAN_HDR_LEN,
    WRITE_FRAME_REJECTED,
    ZERO,
    Backend,
    InsertResult,
    ReadableBuffer,
    ReadResult,
    RecvResult,
    ScanResult,
    SendResult,
    StripResult,
    WritableBuffer,
    WriteResult,
    check_count,
    check_match,
    check_peer,
    check_prefix,
    check_range,
    check_vid,
    dgram_address,
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


_RECV_FLAGS = socket.MSG_DONTWAIT
_SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL


def _borrow(fd: int, family: int = -1) -> socket.socket:
    """A socket object on the caller's descriptor ``fd``, which it does not
    own: ``detach()`` it when done, never ``close()`` it.

    ``family`` (other than -1) is the family the object packs destination
    tuples for, whatever the descriptor's own (the kernel then sees the same
    ``sockaddr`` the C backend passes).  When a default socket timeout is set
    the object's timeout is made 0, so no call waits for readiness (the
    descriptor is non-blocking then anyway: the constructor made it so).
    Raises OSError (EBADF, ENOTSOCK) when ``fd`` is not a socket.
    """
    sock = socket.socket(family, -1, -1, fd)
    if sock.gettimeout() is not None:
        sock.settimeout(0.0)
    return sock


def _source_is(source: Any, want: bytes) -> bool:
    """Whether a ``recvmsg`` source address is the host ``want`` (4 or 16 bytes;
    an IPv4-mapped IPv6 source matches its IPv4 address)."""
    if not isinstance(source, tuple) or not source or not isinstance(source[0], str):
        return False
    family = socket.AF_INET6 if len(source) == 4 else socket.AF_INET
    try:
        raw = socket.inet_pton(family, source[0].partition("%")[0])
    except OSError:
        return False
    if len(raw) == 16 and len(want) == 4:
        return raw[:12] == V4_MAPPED and raw[12:] == want
    return raw == want


def _py_recv_datagrams(
    fd: int,
    buf: WritableBuffer,
    start: int,
    end: int,
    max_count: int,
    prefix_len: int = 0,
    expect: ReadableBuffer = b"",
    mask: ReadableBuffer = b"",
    peer: ReadableBuffer | None = None,
) -> RecvResult:
    b = memoryview(buf).cast("B")
    if b.readonly:
        raise BufferError("buffer is not writable")
    check_range(b.nbytes, start, end)
    check_count(max_count)
    e, m = check_match(prefix_len, expect, mask)
    want = check_peer(peer)
    if end - start < DGRAM_SLOT:
        return start, 0, errno.ENOBUFS, (0, 0, 0)
    expect_bits = int.from_bytes(e, "big")
    mask_bits = int.from_bytes(m, "big")
    head = bytearray(prefix_len)
    shortest = prefix_len + ETH_HDR_LEN
    from_bytes = int.from_bytes
    pos = start
    n = bad_header = foreign = truncated = 0
    err = 0
    sock: socket.socket | None = None
    try:
        while n < max_count and end - pos >= DGRAM_SLOT:
            slot = b[pos + 4 : pos + DGRAM_SLOT]
            try:
                if sock is None:
                    sock = _borrow(fd)
                got, _anc, flags, source = sock.recvmsg_into(
                    [head, slot] if prefix_len else [slot], 0, _RECV_FLAGS
                )
            except BlockingIOError:
                break
            except OSError as ex:
                err = ex.errno or errno.EIO
                break
            if want and not _source_is(source, want):
                foreign += 1
            elif flags & socket.MSG_TRUNC:
                truncated += 1
            elif got < shortest or from_bytes(head, "big") & mask_bits != expect_bits:
                bad_header += 1
            else:
                length = got - prefix_len
                _put_u32(b, pos, length)
                pos += 4 + length
                n += 1
    finally:
        if sock is not None:
            sock.detach()
    return pos, n, err, (bad_header, foreign, truncated)


def _py_send_datagrams(
    fd: int,
    buf: ReadableBuffer,
    start: int,
    end: int,
    prefix: ReadableBuffer = b"",
    addr: tuple[Any, ...] | None = None,
) -> SendResult:
    b = memoryview(buf).cast("B")
    check_range(b.nbytes, start, end)
    pre = check_prefix(prefix)
    dest = None if addr is None else dgram_address(addr)
    pos = start
    n = dropped = 0
    err = 0
    # Where the frame at pos would be in the C backend's sendmmsg call: a
    # message other than the first that fails does not report its errno
    # there (the call returns how many went) and heads the next call, so
    # here it is tried once more, as the first.  A batch ends after
    # DGRAM_BATCH messages and at an invalid length.
    index = 0
    sock: socket.socket | None = None
    try:
        while end - pos >= 4:
            (length,) = _get_u32(b, pos)
            nxt = pos + 4 + length
            if nxt > end:
                break
            if length == 0 or length > MAX_FRAME:
                dropped += 1
                pos = nxt
                index = 0
                continue
            frame = b[pos + 4 : nxt]
            parts: list[bytes | memoryview] = [pre, frame] if pre else [frame]
            try:
                if sock is None:
                    sock = _borrow(fd, -1 if dest is None else dest.family)
                if dest is None:
                    sock.sendmsg(parts, (), _SEND_FLAGS)
                else:
                    sock.sendmsg(parts, (), _SEND_FLAGS, dest.sockaddr_tuple)
            except OSError as ex:
                if index:
                    index = 0
                    continue
                if isinstance(ex, BlockingIOError):
                    break
                code = ex.errno or errno.EIO
                if code in DGRAM_REJECTED:
                    dropped += 1
                    pos = nxt
                    continue
                err = code
                break
            n += 1
            pos = nxt
            index = index + 1 if index + 1 < DGRAM_BATCH else 0
    finally:
        if sock is not None:
            sock.detach()
    return pos, n, dropped, err


BACKEND = Backend(
    name="python",
    scan=_py_scan,
    vlan_strip=_py_vlan_strip,
    vlan_insert=_py_vlan_insert,
    read_frames=_py_read_frames,
    write_frames=_py_write_frames,
    recv_datagrams=_py_recv_datagrams,
    send_datagrams=_py_send_datagrams,
)
