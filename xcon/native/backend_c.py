"""The C backend of the frame functions: ``xcon._native``, built from
``native/`` by cffi in API mode (see :mod:`xcon.native` for the contract).

The C functions trust their offsets, so every wrapper runs the ABI's argument
checks first.  Results come back through a small array owned by the calling
thread, allocated once per thread (the C calls release the GIL, so threads
must not share it).
"""

from __future__ import annotations

import errno
import threading
from typing import Any

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


def bind() -> Backend:
    """Import ``xcon._native`` and wrap it; raises ImportError when it is
    missing or was built from other sources than this ABI expects."""
    from xcon import _native  # type: ignore[attr-defined, unused-ignore]

    ffi = _native.ffi
    lib = _native.lib
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

    from_buffer = ffi.from_buffer
    new = ffi.new
    out_decl = f"size_t[{lib.XCON_OUT_LEN}]"
    c_scan = lib.xcon_scan
    c_skip = lib.xcon_skip
    c_strip = lib.xcon_vlan_strip
    c_insert = lib.xcon_vlan_insert
    c_read = lib.xcon_read_frames
    c_write = lib.xcon_write_frames
    c_recv = lib.xcon_recv_datagrams
    c_send = lib.xcon_send_datagrams
    c_capture = lib.xcon_capture_frames
    null = ffi.NULL
    tls = threading.local()

    def results() -> Any:
        """This thread's result array."""
        try:
            return tls.out
        except AttributeError:
            tls.out = new(out_decl)
            return tls.out

    def scan(buf: ReadableBuffer, start: int, end: int) -> ScanResult:
        cbuf = from_buffer(buf)
        check_range(len(cbuf), start, end)
        out = results()
        status = c_scan(cbuf, start, end, out)
        return out[0], out[1], status

    def skip(buf: ReadableBuffer, start: int, end: int, max_frames: int) -> ScanResult:
        cbuf = from_buffer(buf)
        check_range(len(cbuf), start, end)
        if max_frames < 0:
            raise ValueError(f"max_frames {max_frames} is negative")
        out = results()
        status = c_skip(cbuf, start, end, max_frames, out)
        return out[0], out[1], status

    def rewrite_args(
        src: ReadableBuffer,
        start: int,
        end: int,
        vid: int,
        dst: WritableBuffer,
        dst_start: int,
        dst_end: int,
    ) -> tuple[Any, Any]:
        """Checked C views of a VLAN rewrite's buffers."""
        csrc = from_buffer(src)
        cdst = from_buffer(dst, require_writable=True)
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
        csrc, cdst = rewrite_args(src, start, end, vid, dst, dst_start, dst_end)
        out = results()
        c_strip(csrc, start, end, vid, cdst, dst_start, dst_end, out)
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
        csrc, cdst = rewrite_args(src, start, end, vid, dst, dst_start, dst_end)
        out = results()
        c_insert(csrc, start, end, vid, cdst, dst_start, dst_end, out)
        return out[0], out[1], out[2], (out[3], out[4])

    def read_frames(
        fd: int,
        buf: WritableBuffer,
        start: int,
        end: int,
        max_frame: int,
        max_count: int = READ_BATCH,
    ) -> ReadResult:
        cbuf = from_buffer(buf, require_writable=True)
        check_range(len(cbuf), start, end)
        check_count(max_count)
        if max_frame < 1:
            return start, 0, errno.EINVAL
        out = results()
        err = c_read(fd, cbuf, start, end, min(max_frame, MAX_FRAME), max_count, out)
        return out[0], out[1], err

    def write_frames(fd: int, buf: ReadableBuffer, start: int, end: int) -> WriteResult:
        cbuf = from_buffer(buf)
        check_range(len(cbuf), start, end)
        out = results()
        err = c_write(fd, cbuf, start, end, out)
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
        cbuf = from_buffer(buf, require_writable=True)
        check_range(len(cbuf), start, end)
        check_count(max_count)
        e, m = check_match(prefix_len, expect, mask)
        p = check_peer(peer)
        out = results()
        err = c_recv(
            fd,
            cbuf,
            start,
            end,
            max_count,
            from_buffer(e) if e else null,
            from_buffer(m) if m else null,
            prefix_len,
            from_buffer(p) if p else null,
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
        cbuf = from_buffer(buf)
        check_range(len(cbuf), start, end)
        pre = check_prefix(prefix)
        sa = b"" if addr is None else dgram_address(addr).sockaddr
        out = results()
        err = c_send(
            fd,
            cbuf,
            start,
            end,
            from_buffer(pre) if pre else null,
            len(pre),
            from_buffer(sa) if sa else null,
            len(sa),
            out,
        )
        return out[0], out[1], out[2], err

    # -- AF_PACKET sockets with PACKET_VNET_HDR ------------------------------------
    pkt_out_decl = f"size_t[{lib.XCON_PKT_OUT_LEN}]"
    c_offload = lib.xcon_offload_frame
    c_read_packets = lib.xcon_read_packets
    c_write_packets = lib.xcon_write_packets

    def packet_results() -> Any:
        """This thread's result array of the packet functions."""
        try:
            return tls.pkt_out
        except AttributeError:
            tls.pkt_out = new(pkt_out_decl)
            return tls.pkt_out

    def offload_frame(
        vnet: ReadableBuffer,
        frame: ReadableBuffer,
        dst: WritableBuffer,
        dst_start: int,
        dst_end: int,
        tpid: int = 0,
        tci: int = 0,
    ) -> OffloadResult:
        cvnet = from_buffer(vnet)
        cframe = from_buffer(frame)
        cdst = from_buffer(dst, require_writable=True)
        check_vnet_hdr(len(cvnet))
        check_range(len(cdst), dst_start, dst_end, "destination")
        check_tag(tpid, tci)
        out = packet_results()
        verdict = c_offload(cvnet, cframe, len(cframe), tpid, tci, cdst, dst_start, dst_end, out)
        return out[0], out[1], verdict

    def read_packets(
        fd: int,
        buf: WritableBuffer,
        start: int,
        end: int,
        max_count: int = READ_BATCH,
        vnet_hdr: bool = True,
    ) -> PacketReadResult:
        cbuf = from_buffer(buf, require_writable=True)
        check_range(len(cbuf), start, end)
        check_count(max_count)
        out = packet_results()
        err = c_read_packets(fd, cbuf, start, end, max_count, 1 if vnet_hdr else 0, out)
        return out[0], out[1], err, (out[2], out[3], out[4], out[5], out[6], out[7], out[8])

    def write_packets(fd: int, buf: ReadableBuffer, start: int, end: int) -> WriteResult:
        cbuf = from_buffer(buf)
        check_range(len(cbuf), start, end)
        out = packet_results()
        err = c_write_packets(fd, cbuf, start, end, out)
        return out[0], out[1], out[2], err

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
        csrc = from_buffer(src)
        cdst = from_buffer(dst, require_writable=True)
        check_range(len(csrc), start, end, "source")
        check_range(len(cdst), dst_start, dst_end, "destination")
        check_capture(if_id, flags, ts, snaplen)
        out = results()
        c_capture(csrc, start, end, cdst, dst_start, dst_end, if_id, flags, ts, snaplen, out)
        return out[0], out[1], out[2]

    return Backend(
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
