"""The C backend of the frame functions: ``xcon._native``, built from
``native/`` by cffi in API mode (the contract: docs/native.md).

Importing this module raises ImportError when ``xcon._native`` is missing or
was built from other sources than :mod:`xcon.native.abi` describes, before
any of its functions is looked up.

The C functions trust their offsets, so every wrapper runs the ABI's argument
checks first.  Results come back through a small array owned by the calling
thread, allocated once per thread (the C calls release the GIL, so threads
must not share it).
"""

from __future__ import annotations

import errno
import threading
from typing import Any

from xcon import _native  # type: ignore[attr-defined, unused-ignore]
from xcon.native.abi import (
    API_VERSION,
    EPB_FIXED,
    EPB_FLAGS_OPT,
    MAX_DGRAM,
    MAX_FRAME,
    MAX_PREFIX,
    PACKET_ROOM,
    READ_BATCH,
    VNET_HDR_LEN,
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


def _check_built(lib: Any) -> None:
    """Raise ImportError unless ``lib`` was built from the sources this ABI expects."""
    version = getattr(lib, "XCON_API_VERSION", 1)
    if (
        version != API_VERSION
        or lib.XCON_MAX_FRAME != MAX_FRAME
        or lib.XCON_MAX_DGRAM != MAX_DGRAM
        or lib.XCON_MAX_PREFIX != MAX_PREFIX
        or lib.XCON_VNET_HDR_LEN != VNET_HDR_LEN
        or lib.XCON_PKT_ROOM != PACKET_ROOM
        or lib.XCON_EPB_FIXED != EPB_FIXED
        or lib.XCON_EPB_FLAGS_OPT != EPB_FLAGS_OPT
    ):
        raise ImportError(
            f"xcon._native is stale (API {version}, expected {API_VERSION}); "
            "rebuild it: python native/build_native.py"
        )


_check_built(_native.lib)

# The module's objects, looked up once: each call below only reads globals.
_from_buffer = _native.ffi.from_buffer
_new = _native.ffi.new
_NULL = _native.ffi.NULL
_OUT_DECL = f"size_t[{_native.lib.XCON_OUT_LEN}]"
_PKT_OUT_DECL = f"size_t[{_native.lib.XCON_PKT_OUT_LEN}]"
_c_scan = _native.lib.xcon_scan
_c_skip = _native.lib.xcon_skip
_c_strip = _native.lib.xcon_vlan_strip
_c_insert = _native.lib.xcon_vlan_insert
_c_read = _native.lib.xcon_read_frames
_c_write = _native.lib.xcon_write_frames
_c_recv = _native.lib.xcon_recv_datagrams
_c_send = _native.lib.xcon_send_datagrams
_c_capture = _native.lib.xcon_capture_frames
_c_offload = _native.lib.xcon_offload_frame
_c_read_packets = _native.lib.xcon_read_packets
_c_write_packets = _native.lib.xcon_write_packets
_tls = threading.local()


def _results() -> Any:
    """This thread's result array."""
    try:
        return _tls.out
    except AttributeError:
        _tls.out = _new(_OUT_DECL)
        return _tls.out


def _packet_results() -> Any:
    """This thread's result array of the packet functions."""
    try:
        return _tls.pkt_out
    except AttributeError:
        _tls.pkt_out = _new(_PKT_OUT_DECL)
        return _tls.pkt_out


def scan(buf: ReadableBuffer, start: int, end: int) -> ScanResult:
    cbuf = _from_buffer(buf)
    check_range(len(cbuf), start, end)
    out = _results()
    status = _c_scan(cbuf, start, end, out)
    return out[0], out[1], status


def skip(buf: ReadableBuffer, start: int, end: int, max_frames: int) -> ScanResult:
    cbuf = _from_buffer(buf)
    check_range(len(cbuf), start, end)
    if max_frames < 0:
        raise ValueError(f"max_frames {max_frames} is negative")
    out = _results()
    status = _c_skip(cbuf, start, end, max_frames, out)
    return out[0], out[1], status


def _rewrite_args(
    src: ReadableBuffer,
    start: int,
    end: int,
    vid: int,
    dst: WritableBuffer,
    dst_start: int,
    dst_end: int,
) -> tuple[Any, Any]:
    """Checked C views of a VLAN rewrite's buffers."""
    csrc = _from_buffer(src)
    cdst = _from_buffer(dst, require_writable=True)
    check_range(len(csrc), start, end, "source")
    check_range(len(cdst), dst_start, dst_end, "destination")
    check_vid(vid)
    return csrc, cdst


def vlan_strip(
    src: ReadableBuffer,
    start: int,
    end: int,
    vid: int,
    dst: WritableBuffer,
    dst_start: int,
    dst_end: int,
) -> StripResult:
    csrc, cdst = _rewrite_args(src, start, end, vid, dst, dst_start, dst_end)
    out = _results()
    _c_strip(csrc, start, end, vid, cdst, dst_start, dst_end, out)
    return out[0], out[1], out[2], (out[3], out[4], out[5])


def vlan_insert(
    src: ReadableBuffer,
    start: int,
    end: int,
    vid: int,
    dst: WritableBuffer,
    dst_start: int,
    dst_end: int,
) -> InsertResult:
    csrc, cdst = _rewrite_args(src, start, end, vid, dst, dst_start, dst_end)
    out = _results()
    _c_insert(csrc, start, end, vid, cdst, dst_start, dst_end, out)
    return out[0], out[1], out[2], (out[3], out[4])


def read_frames(
    fd: int,
    buf: WritableBuffer,
    start: int,
    end: int,
    max_frame: int,
    max_count: int = READ_BATCH,
) -> ReadResult:
    cbuf = _from_buffer(buf, require_writable=True)
    check_range(len(cbuf), start, end)
    check_count(max_count)
    if max_frame < 1:
        return start, 0, errno.EINVAL
    out = _results()
    err = _c_read(fd, cbuf, start, end, min(max_frame, MAX_FRAME), max_count, out)
    return out[0], out[1], err


def write_frames(fd: int, buf: ReadableBuffer, start: int, end: int) -> WriteResult:
    cbuf = _from_buffer(buf)
    check_range(len(cbuf), start, end)
    out = _results()
    err = _c_write(fd, cbuf, start, end, out)
    return out[0], out[1], out[2], err


def recv_datagrams(
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
    cbuf = _from_buffer(buf, require_writable=True)
    check_range(len(cbuf), start, end)
    check_count(max_count)
    e, m = check_match(prefix_len, expect, mask)
    p = check_peer(peer)
    out = _results()
    err = _c_recv(
        fd,
        cbuf,
        start,
        end,
        max_count,
        _from_buffer(e) if e else _NULL,
        _from_buffer(m) if m else _NULL,
        prefix_len,
        _from_buffer(p) if p else _NULL,
        len(p),
        out,
    )
    return out[0], out[1], err, (out[2], out[3], out[4])


def send_datagrams(
    fd: int,
    buf: ReadableBuffer,
    start: int,
    end: int,
    prefix: ReadableBuffer = b"",
    addr: tuple[Any, ...] | None = None,
) -> SendResult:
    cbuf = _from_buffer(buf)
    check_range(len(cbuf), start, end)
    pre = check_prefix(prefix)
    sa = b"" if addr is None else dgram_address(addr).sockaddr
    out = _results()
    err = _c_send(
        fd,
        cbuf,
        start,
        end,
        _from_buffer(pre) if pre else _NULL,
        len(pre),
        _from_buffer(sa) if sa else _NULL,
        len(sa),
        out,
    )
    return out[0], out[1], out[2], err


# -- AF_PACKET sockets with PACKET_VNET_HDR ------------------------------------


def offload_frame(
    vnet: ReadableBuffer,
    frame: ReadableBuffer,
    dst: WritableBuffer,
    dst_start: int,
    dst_end: int,
    tpid: int = 0,
    tci: int = 0,
) -> OffloadResult:
    cvnet = _from_buffer(vnet)
    cframe = _from_buffer(frame)
    cdst = _from_buffer(dst, require_writable=True)
    check_vnet_hdr(len(cvnet))
    check_range(len(cdst), dst_start, dst_end, "destination")
    check_tag(tpid, tci)
    out = _packet_results()
    verdict = _c_offload(cvnet, cframe, len(cframe), tpid, tci, cdst, dst_start, dst_end, out)
    return out[0], out[1], verdict


def read_packets(
    fd: int,
    buf: WritableBuffer,
    start: int,
    end: int,
    max_count: int = READ_BATCH,
    vnet_hdr: bool = True,
) -> PacketReadResult:
    cbuf = _from_buffer(buf, require_writable=True)
    check_range(len(cbuf), start, end)
    check_count(max_count)
    out = _packet_results()
    err = _c_read_packets(fd, cbuf, start, end, max_count, 1 if vnet_hdr else 0, out)
    return out[0], out[1], err, (out[2], out[3], out[4], out[5], out[6], out[7], out[8])


def write_packets(fd: int, buf: ReadableBuffer, start: int, end: int) -> WriteResult:
    cbuf = _from_buffer(buf)
    check_range(len(cbuf), start, end)
    out = _packet_results()
    err = _c_write_packets(fd, cbuf, start, end, out)
    return out[0], out[1], out[2], err


# -- capture: pcapng blocks ------------------------------------------------------


def capture_frames(
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
    csrc = _from_buffer(src)
    cdst = _from_buffer(dst, require_writable=True)
    check_range(len(csrc), start, end, "source")
    check_range(len(cdst), dst_start, dst_end, "destination")
    check_capture(if_id, flags, ts, snaplen)
    out = _results()
    _c_capture(csrc, start, end, cdst, dst_start, dst_end, if_id, flags, ts, snaplen, out)
    return out[0], out[1], out[2]


BACKEND = Backend(
    name="native",
    capture_frames=capture_frames,
    scan=scan,
    skip=skip,
    vlan_strip=vlan_strip,
    vlan_insert=vlan_insert,
    read_frames=read_frames,
    write_frames=write_frames,
    read_packets=read_packets,
    write_packets=write_packets,
    offload_frame=offload_frame,
    recv_datagrams=recv_datagrams,
    send_datagrams=send_datagrams,
)
