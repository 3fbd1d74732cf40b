"""The pure-Python backend of the frame functions (the contract: docs/native.md).

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
    EPB_FIXED,
    EPB_FLAGS_OPT,
    ETH_HDR_LEN,
    ETH_MAC_LEN,
    MAX_FRAME,
    NEED_DATA,
    PACKET_ROOM,
    PKT_BAD_FRAME,
    PKT_CSUM,
    PKT_FORWARDED,
    PKT_MALFORMED,
    PKT_NO_ROOM,
    PKT_SPLIT,
    PKT_UNSUPPORTED,
    READ_BATCH,
    READ_EOF,
    TOO_BIG,
    TPID_8021Q,
    V4_MAPPED,
    VID_MASK,
    VLAN_HDR_LEN,
    VLAN_TAG_LEN,
    VNET_HDR_LEN,
    WRITE_FRAME_REJECTED,
    ZERO,
    Backend,
    CaptureResult,
    InsertResult,
    OffloadResult,
    PacketReadResult,
    ReadableBuffer,
    ReadResult,
    RecvResult,
    ScanResult,
    SendResult,
    StripResult,
    WritableBuffer,
    WriteResult,
    check_capture,
    check_count,
    check_match,
    check_peer,
    check_prefix,
    check_range,
    check_tag,
    check_vid,
    check_vnet_hdr,
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


def _py_skip(buf: ReadableBuffer, start: int, end: int, max_frames: int) -> ScanResult:
    check_range(_size(buf), start, end)
    if max_frames < 0:
        raise ValueError(f"max_frames {max_frames} is negative")
    get = _get_u32
    pos = start
    n = 0
    while n < max_frames and end - pos >= 4:
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


_epb_head = struct.Struct("<7I")
_epb_flags = struct.Struct("<HHII")


def _py_capture_frames(
    src: ReadableBuffer,
    start: int,
    end: int,
    dst: WritableBuffer,
    dst_start: int,
    dst_end: int,
    if_id: int,
    flags: int,
    ts: int,
    snaplen: int = 0,
) -> CaptureResult:
    s = memoryview(src).cast("B")
    d = memoryview(dst).cast("B")
    if d.readonly:
        raise BufferError("destination buffer is read-only")
    check_range(s.nbytes, start, end, "source")
    check_range(d.nbytes, dst_start, dst_end, "destination")
    check_capture(if_id, flags, ts, snaplen)
    get32 = _get_u32
    head = _epb_head.pack_into
    opts = EPB_FLAGS_OPT if flags else 0
    ts_hi, ts_lo = ts >> 32, ts & 0xFFFFFFFF
    pos, w, n = start, dst_start, 0
    while end - pos >= 4:
        (length,) = get32(s, pos)
        if length == 0 or length > MAX_FRAME or pos + 4 + length > end:
            break
        cap = snaplen if snaplen and length > snaplen else length
        padded = (cap + 3) & ~3
        total = EPB_FIXED + padded + opts
        if dst_end - w < total:
            break
        head(d, w, 6, total, if_id, ts_hi, ts_lo, cap, length)
        o = w + 28
        d[o : o + cap] = s[pos + 4 : pos + 4 + cap]
        o += cap
        d[o : w + 28 + padded] = bytes(padded - cap)
        o = w + 28 + padded
        if flags:
            _epb_flags.pack_into(d, o, 2, 4, flags, 0)
            o += EPB_FLAGS_OPT
        _put_u32le(d, o, total)
        w += total
        n += 1
        pos += 4 + length
    return pos, w, n


def _put_u32le(buf: memoryview, off: int, value: int) -> None:
    struct.pack_into("<I", buf, off, value)


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


def _write_each(
    fd: int, buf: ReadableBuffer, start: int, end: int, prefix: bytes = b""
) -> WriteResult:
    """Each frame with one system call, after ``prefix`` when there is one
    (``writev``): write_frames and write_packets."""
    b = memoryview(buf).cast("B")
    check_range(b.nbytes, start, end)
    write, writev = os.write, os.writev
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
            if prefix:
                writev(fd, (prefix, b[pos + 4 : nxt]))
            else:
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


def _py_write_frames(fd: int, buf: ReadableBuffer, start: int, end: int) -> WriteResult:
    return _write_each(fd, buf, start, end)


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


# -- AF_PACKET sockets with PACKET_VNET_HDR (native/xcon_packet.c) ----------------------

_vnet = struct.Struct("=BBHHHH")
_auxdata = struct.Struct("=IIIHHHH")
_put_u16 = _u16.pack_into
_ZERO_VNET = bytes(VNET_HDR_LEN)
_ANCSIZE = socket.CMSG_SPACE(_auxdata.size)

# linux/if_packet.h, linux/virtio_net.h
_SOL_PACKET = 263
_PACKET_AUXDATA = 8
_PACKET_OUTGOING = 4
_TP_STATUS_VLAN_VALID = 1 << 4
_TP_STATUS_VLAN_TPID_VALID = 1 << 6
_F_NEEDS_CSUM = 1
_GSO_NONE = 0
_GSO_TCPV4 = 1
_GSO_TCPV6 = 4
_GSO_UDP_L4 = 5
_GSO_ECN = 0x80
_TPID_8021AD = 0x88A8
_PROTO_TCP = 6
_PROTO_UDP = 17
_PROTO_SCTP = 132
_TCP_FIN = 0x01
_TCP_PSH = 0x08
_TCP_CWR = 0x80
_MAX_TAGS = 2
_MAX_EXT = 8
_TMPL_MAX = 160
_IP_OK, _IP_OTHER, _IP_BAD = 0, 1, 2
_CSUM_NONE, _CSUM_INET, _CSUM_CRC32C = 0, 1, 2


def _crc32c_nibbles() -> tuple[int, ...]:
    table = []
    for i in range(16):
        c = i
        for _ in range(4):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return tuple(table)


_CRC32C_NIBBLE = _crc32c_nibbles()


def _sum(b: ReadableBuffer, start: int, end: int) -> int:
    """Unfolded sum of the 16-bit words of ``b[start:end]``: congruent modulo
    0xffff with the ones' complement sum (65536 = 1 modulo 0xffff), 0 only for
    all-zero data."""
    x = int.from_bytes(b[start:end], "big")
    return x << 8 if (end - start) & 1 else x


def _csum(s: int) -> int:
    """The Internet checksum of an unfolded sum: ~(ones' complement sum)."""
    r = s % 0xFFFF
    if r == 0 and s:
        r = 0xFFFF
    return ~r & 0xFFFF


def _crc32c(b: ReadableBuffer, start: int, end: int) -> int:
    table = _CRC32C_NIBBLE
    c = 0xFFFFFFFF
    for byte in bytes(b[start:end]):
        c = (c >> 4) ^ table[(c ^ byte) & 15]
        c = (c >> 4) ^ table[(c ^ (byte >> 4)) & 15]
    return c ^ 0xFFFFFFFF


class _IP:
    """Where the IP and transport headers of a frame are."""

    __slots__ = ("l3", "l4", "version", "proto", "ext")

    def __init__(self) -> None:
        self.l3 = self.l4 = self.version = self.proto = 0
        self.ext = False


def _parse_ip(b: ReadableBuffer, f: int, n: int, ip: _IP) -> int:
    """The frame is ``b[f:f + n]``; as pk_parse_ip in xcon_packet.c."""
    if n < ETH_HDR_LEN:
        return _IP_BAD
    off = ETH_MAC_LEN
    (et,) = _get_u16(b, f + off)
    tags = 0
    while et in (TPID_8021Q, _TPID_8021AD):
        if tags == _MAX_TAGS:
            return _IP_OTHER
        tags += 1
        if n - off < VLAN_TAG_LEN + 2:
            return _IP_BAD
        off += VLAN_TAG_LEN
        (et,) = _get_u16(b, f + off)
    l3 = off + 2
    ip.l3 = l3
    ip.ext = False
    if et == 0x0800:
        if n - l3 < 20:
            return _IP_BAD
        vihl = b[f + l3]
        ihl = (vihl & 15) * 4
        if vihl >> 4 != 4 or ihl < 20 or n - l3 < ihl:
            return _IP_BAD
        if _get_u16(b, f + l3 + 6)[0] & 0x3FFF:
            return _IP_OTHER
        ip.version = 4
        ip.proto = b[f + l3 + 9]
        ip.l4 = l3 + ihl
        return _IP_OK
    if et == 0x86DD:
        l4 = l3 + 40
        if n - l3 < 40 or b[f + l3] >> 4 != 6:
            return _IP_BAD
        nh = b[f + l3 + 6]
        walked = 0
        while nh in (0, 43, 60):
            if walked == _MAX_EXT:
                return _IP_OTHER
            walked += 1
            if n - l4 < 8:
                return _IP_BAD
            nh = b[f + l4]
            l4 += (b[f + l4 + 1] + 1) * 8
            if l4 > n:
                return _IP_BAD
            ip.ext = True
        ip.version = 6
        ip.proto = nh
        ip.l4 = l4
        return _IP_OK
    return _IP_OTHER


class _Plan:
    """What one packet becomes (see pk_plan in xcon_packet.c)."""

    __slots__ = (
        "n",
        "taglen",
        "tag",
        "out_len",
        "csum",
        "cs",
        "co",
        "gso",
        "tcp",
        "ip",
        "hlen",
        "gso_size",
        "nseg",
    )

    def __init__(self) -> None:
        self.n = self.taglen = self.out_len = self.cs = self.co = 0
        self.tag = b""
        self.csum = _CSUM_NONE
        self.gso = self.tcp = False
        self.ip = _IP()
        self.hlen = self.gso_size = self.nseg = 0


def _plan(
    flags: int,
    gso_type: int,
    gso_size: int,
    csum_start: int,
    csum_offset: int,
    b: ReadableBuffer,
    f: int,
    n: int,
    tpid: int,
    tci: int,
    p: _Plan,
) -> int:
    """Decide what the frame ``b[f:f + n]`` becomes, reading only; the verdict."""
    p.n = n
    if tpid:
        p.taglen = VLAN_TAG_LEN
        p.tag = _u32.pack((tpid << 16) | tci)
    if n == 0 or n > MAX_FRAME:
        return PKT_BAD_FRAME
    if p.taglen and (n < ETH_MAC_LEN or n + VLAN_TAG_LEN > MAX_FRAME):
        return PKT_BAD_FRAME

    if gso_type == _GSO_NONE:
        cs, co = csum_start, csum_offset
        p.out_len = 4 + p.taglen + n
        if not flags & _F_NEEDS_CSUM:
            return PKT_FORWARDED
        if cs > n or co > n - cs or n - cs - co < 2:
            return PKT_MALFORMED
        p.cs, p.co = cs, co
        p.csum = _CSUM_INET
        ip = _IP()
        if co == 8 and _parse_ip(b, f, n, ip) == _IP_OK and ip.proto == _PROTO_SCTP and ip.l4 == cs:
            if n - cs - co < 4:
                return PKT_MALFORMED
            p.csum = _CSUM_CRC32C
        return PKT_CSUM

    kind = gso_type & ~_GSO_ECN
    if kind in (_GSO_TCPV4, _GSO_TCPV6):
        p.tcp = True
    elif kind != _GSO_UDP_L4 or gso_type & _GSO_ECN:
        return PKT_UNSUPPORTED
    if gso_size == 0:
        return PKT_MALFORMED
    ip = p.ip
    r = _parse_ip(b, f, n, ip)
    if r == _IP_BAD:
        return PKT_MALFORMED
    if r != _IP_OK or ip.ext:
        return PKT_UNSUPPORTED
    if (
        (kind == _GSO_TCPV4 and ip.version != 4)
        or (kind == _GSO_TCPV6 and ip.version != 6)
        or ip.proto != (_PROTO_TCP if p.tcp else _PROTO_UDP)
    ):
        return PKT_UNSUPPORTED
    if p.tcp:
        if n - ip.l4 < 20:
            return PKT_MALFORMED
        thl = (b[f + ip.l4 + 12] >> 4) * 4
        if thl < 20 or n - ip.l4 < thl:
            return PKT_MALFORMED
    else:
        thl = 8
        if n - ip.l4 < thl:
            return PKT_MALFORMED
    if flags & _F_NEEDS_CSUM and (csum_start != ip.l4 or csum_offset != (16 if p.tcp else 6)):
        return PKT_MALFORMED
    p.hlen = ip.l4 + thl
    payload = n - p.hlen
    if payload == 0:
        return PKT_MALFORMED
    if p.hlen > _TMPL_MAX:
        return PKT_UNSUPPORTED
    seg = min(gso_size, payload)
    if p.hlen - ip.l3 + seg - (40 if ip.version == 6 else 0) > 0xFFFF:
        return PKT_MALFORMED
    p.gso = True
    p.gso_size = gso_size
    p.nseg = -(-payload // gso_size)
    p.out_len = p.nseg * (4 + p.taglen + p.hlen) + payload
    return PKT_SPLIT


def _emit(p: _Plan, b: memoryview, pos: int) -> int:
    """Carry out ``p`` on the frame at ``b[pos + 4:]``, output from ``pos``
    (see pk_emit in xcon_packet.c); the frames written."""
    f = pos + 4
    n, taglen = p.n, p.taglen
    if not p.gso:
        if p.csum == _CSUM_INET:
            c = _csum(_sum(b, f + p.cs, f + n))
            _put_u16(b, f + p.cs + p.co, c or 0xFFFF)
        elif p.csum == _CSUM_CRC32C:
            field = f + p.cs + p.co
            b[field : field + 4] = b"\0\0\0\0"
            struct.pack_into("<I", b, field, _crc32c(b, f + p.cs, f + n))
        if taglen:
            b[f + ETH_MAC_LEN + taglen : f + n + taglen] = b[f + ETH_MAC_LEN : f + n]
            b[f + ETH_MAC_LEN : f + ETH_MAC_LEN + taglen] = p.tag
        _put_u32(b, pos, n + taglen)
        return 1

    ip = p.ip
    hlen, l3, l4, g = p.hlen, ip.l3, ip.l4, p.gso_size
    payload = n - hlen
    tmpl = bytes(b[f : f + hlen])
    src = pos + p.out_len - n
    b[src : src + n] = b[f : f + n]
    seq = flags = ident = 0
    if p.tcp:
        (seq,) = _get_u32(tmpl, l4 + 4)
        flags = tmpl[l4 + 13]
    if ip.version == 4:
        (ident,) = _get_u16(tmpl, l3 + 4)
    proto = _PROTO_TCP if p.tcp else _PROTO_UDP
    w = pos
    for k in range(p.nseg):
        length = min(g, payload - k * g)
        l4len = hlen - l4 + length
        fr = w + 4
        h = fr + taglen
        _put_u32(b, w, hlen + taglen + length)
        b[fr : fr + ETH_MAC_LEN] = tmpl[:ETH_MAC_LEN]
        b[fr + ETH_MAC_LEN : h + ETH_MAC_LEN] = p.tag
        b[h + ETH_MAC_LEN : h + hlen] = tmpl[ETH_MAC_LEN:]
        at = src + hlen + k * g
        b[h + hlen : h + hlen + length] = b[at : at + length]
        if ip.version == 4:
            _put_u16(b, h + l3 + 2, hlen - l3 + length)
            _put_u16(b, h + l3 + 4, (ident + k) & 0xFFFF)
            _put_u16(b, h + l3 + 10, 0)
            _put_u16(b, h + l3 + 10, _csum(_sum(b, h + l3, h + l4)))
            s = _sum(b, h + l3 + 12, h + l3 + 20)
        else:
            _put_u16(b, h + l3 + 4, hlen - l3 - 40 + length)
            s = _sum(b, h + l3 + 8, h + l3 + 40)
        s += proto + l4len
        if p.tcp:
            fl = flags
            _put_u32(b, h + l4 + 4, (seq + k * g) & 0xFFFFFFFF)
            if k + 1 < p.nseg:
                fl &= ~(_TCP_FIN | _TCP_PSH)
            if k:
                fl &= ~_TCP_CWR
            b[h + l4 + 13] = fl
            _put_u16(b, h + l4 + 16, 0)
            _put_u16(b, h + l4 + 16, _csum(s + _sum(b, h + l4, h + l4 + l4len)))
        else:
            _put_u16(b, h + l4 + 4, l4len)
            _put_u16(b, h + l4 + 6, 0)
            c = _csum(s + _sum(b, h + l4, h + l4 + l4len))
            _put_u16(b, h + l4 + 6, c or 0xFFFF)
        w += 4 + taglen + hlen + length
    return p.nseg


def _py_offload_frame(
    vnet: ReadableBuffer,
    frame: ReadableBuffer,
    dst: WritableBuffer,
    dst_start: int,
    dst_end: int,
    tpid: int = 0,
    tci: int = 0,
) -> OffloadResult:
    v = memoryview(vnet).cast("B")
    src = memoryview(frame).cast("B")
    d = memoryview(dst).cast("B")
    if d.readonly:
        raise BufferError("destination buffer is not writable")
    check_vnet_hdr(v.nbytes)
    check_range(d.nbytes, dst_start, dst_end, "destination")
    check_tag(tpid, tci)
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = _vnet.unpack(v)
    n = src.nbytes
    p = _Plan()
    verdict = _plan(flags, gso_type, gso_size, csum_start, csum_offset, src, 0, n, tpid, tci, p)
    if verdict > PKT_SPLIT:
        return dst_start, 0, verdict
    if p.out_len > dst_end - dst_start:
        return dst_start, 0, PKT_NO_ROOM
    d[dst_start + 4 : dst_start + 4 + n] = src
    nout = _emit(p, d, dst_start)
    return dst_start + p.out_len, nout, verdict


#: read_packets(): the counter (index in PACKET_COUNTERS) a verdict adds to.
_VERDICT_COUNTER = {
    PKT_CSUM: 2,
    PKT_SPLIT: 3,
    PKT_UNSUPPORTED: 4,
    PKT_NO_ROOM: 4,
    PKT_MALFORMED: 5,
    PKT_BAD_FRAME: 6,
}


def _py_read_packets(
    fd: int,
    buf: WritableBuffer,
    start: int,
    end: int,
    max_count: int = READ_BATCH,
    vnet_hdr: bool = True,
) -> PacketReadResult:
    b = memoryview(buf).cast("B")
    if b.readonly:
        raise BufferError("buffer is not writable")
    check_range(b.nbytes, start, end)
    check_count(max_count)
    counters = [0, 0, 0, 0, 0, 0, 0]
    pos = start
    nframes = count = 0
    err = 0
    if end - start < PACKET_ROOM:
        return start, 0, errno.ENOBUFS, (0, 0, 0, 0, 0, 0, 0)
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        return start, 0, e.errno or errno.EIO, (0, 0, 0, 0, 0, 0, 0)
    vh = memoryview(bytearray(VNET_HDR_LEN))
    try:
        recvmsg_into = sock.recvmsg_into
        while count < max_count and end - pos >= PACKET_ROOM:
            f = pos + 4
            bufs = [vh, b[f : f + MAX_FRAME]] if vnet_hdr else [b[f : f + MAX_FRAME]]
            try:
                r, anc, msg_flags, addr = recvmsg_into(bufs, _ANCSIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EINVAL and vnet_hdr:
                    count += 1
                    counters[4] += 1
                    continue
                err = e.errno or errno.EIO
                break
            count += 1
            if msg_flags & socket.MSG_TRUNC:
                counters[0] += 1
                continue
            if isinstance(addr, tuple) and len(addr) > 2 and addr[2] == _PACKET_OUTGOING:
                counters[1] += 1
                continue
            tpid = tci = 0
            for level, kind, data in anc:
                if level == _SOL_PACKET and kind == _PACKET_AUXDATA and len(data) >= _auxdata.size:
                    status, _l, _s, _m, _n, vtci, vtpid = _auxdata.unpack_from(data)
                    if status & _TP_STATUS_VLAN_VALID:
                        tpid = vtpid
                        if not status & _TP_STATUS_VLAN_TPID_VALID or not tpid:
                            tpid = TPID_8021Q
                        tci = vtci
                    break
            if vnet_hdr:
                if r < VNET_HDR_LEN:
                    counters[6] += 1
                    continue
                flags, gso_type, _hl, gso_size, csum_start, csum_offset = _vnet.unpack(vh)
                n = r - VNET_HDR_LEN
            else:
                flags = gso_type = gso_size = csum_start = csum_offset = 0
                n = r
            p = _Plan()
            verdict = _plan(
                flags, gso_type, gso_size, csum_start, csum_offset, b, f, n, tpid, tci, p
            )
            if verdict <= PKT_SPLIT and p.out_len > end - pos:
                verdict = PKT_NO_ROOM
            if verdict in _VERDICT_COUNTER:
                counters[_VERDICT_COUNTER[verdict]] += 1
            if verdict <= PKT_SPLIT:
                nframes += _emit(p, b, pos)
                pos += p.out_len
    finally:
        sock.detach()
    t, o, c, s, g, m, bad = counters
    return pos, nframes, err, (t, o, c, s, g, m, bad)


def _py_write_packets(fd: int, buf: ReadableBuffer, start: int, end: int) -> WriteResult:
    return _write_each(fd, buf, start, end, _ZERO_VNET)


BACKEND = Backend(
    name="python",
    capture_frames=_py_capture_frames,
    scan=_py_scan,
    skip=_py_skip,
    vlan_strip=_py_vlan_strip,
    vlan_insert=_py_vlan_insert,
    read_frames=_py_read_frames,
    write_frames=_py_write_frames,
    read_packets=_py_read_packets,
    write_packets=_py_write_packets,
    offload_frame=_py_offload_frame,
    recv_datagrams=_py_recv_datagrams,
    send_datagrams=_py_send_datagrams,
)
