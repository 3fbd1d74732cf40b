"""Per-frame work over batches of length-prefixed frames: the single loader.

Frames travel as a 4-byte big-endian length followed by that many bytes of
Ethernet frame (qemu's socket netdev format). A length of 0 is a "zero" frame
(dropped by the caller), a length above :data:`MAX_FRAME` is a protocol error
(the peer is broken), exactly :data:`MAX_FRAME` is valid.

Two backends give byte-for-byte identical results: the C library in
``native/`` compiled with cffi as ``xcon._native`` ("native"), and the pure
Python one below ("python"). The native one is used when it imports; the
environment variable ``XCON_NATIVE`` overrides: ``0`` forces the Python
backend, ``1`` requires the native one (ImportError otherwise). :data:`BACKEND`
says which one was loaded; :func:`load_backend` returns either set of
functions explicitly (tests compare them).

Contract common to all functions:

* buffers are ``bytearray``, ``mmap`` or byte-format ``memoryview`` (``bytes``
  too where only read); ``0 <= start <= end <= len(buf)`` is checked and a
  violation raises :class:`ValueError`, a read-only buffer where one is
  written raises :class:`BufferError`;
* nothing allocates per frame, no length read from the data sizes anything,
  and every function stops cleanly at the first frame it cannot handle
  entirely, returning how far it got, so the caller resumes from there;
* source and destination ranges must not overlap;
* calls may come from several threads (each thread gets its own result
  slots; the C calls run without the GIL), as long as no two threads use the
  same buffer range at once.

A compiled module built from other C sources than this file expects (older
API version) is refused as if missing, so a stale in-tree build falls back
to Python (or fails with ``XCON_NATIVE=1``) instead of misbehaving.

Functions (offsets are absolute positions in the buffers):

``scan(buf, start, end) -> (pos, nframes, status)``
    Walk complete frames from ``start``. ``pos`` is the end of the last
    complete valid frame, ``nframes`` how many were passed. ``status`` says
    why it stopped: :data:`NEED_DATA` (incomplete frame or end), :data:`ZERO`
    (zero-length header at ``pos``), :data:`TOO_BIG` (length above
    :data:`MAX_FRAME` in the header at ``pos``, reported as soon as the
    header is complete).

``vlan_strip(src, start, end, vid, dst, dst_start, dst_end)
-> (consumed, written, nout, (untagged, other_vlan, runt))``
    Trunk to access port. Frames tagged 0x8100 with VLAN ``vid`` are written
    to ``dst`` with the 4-byte tag (PCP/DEI too) removed and the length
    rewritten; an inner tag of a double-tagged frame stays. Others are
    dropped and counted: untagged (ethertype not 0x8100, including 0x88a8),
    other VLAN (0x8100 with another VID, including 0), runt (under 14 bytes,
    or 0x8100 and under 18 bytes).

``vlan_insert(src, start, end, vid, dst, dst_start, dst_end)
-> (consumed, written, nout, (too_big, runt))``
    Access port to trunk. Every frame gets an outer 0x8100 tag with VID
    ``vid`` (PCP 0, DEI 0) after the MAC addresses, whatever tags it already
    carries. Dropped and counted: too big (length + 4 above
    :data:`MAX_FRAME`), runt (under 14 bytes).

    For both VLAN functions ``src[start:end]`` should hold frames that
    :func:`scan` accepted; processing stops at the first header ``scan`` would
    not pass (incomplete, zero, too big) and before the first frame whose
    output does not fit in ``dst[written:dst_end]``. Dropped frames need no
    room, so they are consumed even when ``dst`` is full. ``consumed`` is the
    source offset after the last processed frame, ``written`` the destination
    offset after the last written byte, ``nout`` the frames written; the drop
    counters are for this call only. ``vid`` must be 0..4095.

``read_frames(fd, buf, start, end, max_frame, max_count=READ_BATCH)
-> (written_pos, nframes, err)``
    For a non-blocking fd delivering one frame per read (tap, AF_PACKET,
    datagram sockets): read frames into ``buf`` from ``start``, each stored
    as length prefix + data, while ``4 + max_frame`` bytes of room remain and
    fewer than ``max_count`` frames were read. ``max_frame`` is clamped to
    :data:`MAX_FRAME`; a longer datagram is truncated by the kernel, so pass
    at least the device MTU + 18. ``err`` is 0 when the fd ran dry (EAGAIN),
    the frame cap or the room was reached; :data:`READ_EOF` when a read
    returned 0 bytes (peer closed); ``ENOBUFS`` when there was no room for
    even one frame (nothing read); ``EINVAL`` for ``max_frame < 1``;
    otherwise the errno of the failed read. Frames read before an error are
    kept (``written_pos``/``nframes`` count them). EINTR is retried.

``write_frames(fd, buf, start, end) -> (consumed_pos, nframes, ndropped, err)``
    Write each complete frame of ``buf[start:end]`` with one ``write`` of its
    payload (datagram semantics: a tap or packet socket takes a frame whole,
    so a short write counts as written; not for stream sockets).
    Stops at an incomplete trailing frame (err 0), at EAGAIN (err 0,
    ``consumed_pos`` is the unwritten frame's header, so the caller retries
    from there), or at any other error (err = errno, ``consumed_pos`` at the
    failed frame). Errors that reject one frame and not the device
    (EMSGSIZE, EINVAL, ENOBUFS) and frames with a zero or above-limit length
    are dropped: skipped, counted in ``ndropped``, writing goes on. EINTR is
    retried.

``iter_frames(buf, start, end)``
    Python-only generator of ``(payload_offset, length)`` for the complete
    valid frames :func:`scan` would pass; for debug logging, not the hot path.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

__all__ = [
    "BACKEND",
    "MAX_FRAME",
    "NEED_DATA",
    "READ_BATCH",
    "READ_EOF",
    "TOO_BIG",
    "ZERO",
    "Backend",
    "iter_frames",
    "load_backend",
    "read_frames",
    "scan",
    "vlan_insert",
    "vlan_strip",
    "write_frames",
]

MAX_FRAME = 69632
HDR_LEN = 4
NEED_DATA = 0
ZERO = 1
TOO_BIG = 2
READ_EOF = -1
READ_BATCH = 1024

_ETH_MAC_LEN = 12
_ETH_HDR_LEN = 14
_VLAN_TAG_LEN = 4
_VLAN_HDR_LEN = _ETH_HDR_LEN + _VLAN_TAG_LEN
_TPID_8021Q = 0x8100
_VID_MASK = 0x0FFF
_WRITE_FRAME_REJECTED = frozenset({errno.EMSGSIZE, errno.EINVAL, errno.ENOBUFS})

ReadableBuffer = bytes | bytearray | memoryview | mmap.mmap
WritableBuffer = bytearray | memoryview | mmap.mmap

ScanResult = tuple[int, int, int]
StripResult = tuple[int, int, int, tuple[int, int, int]]
InsertResult = tuple[int, int, int, tuple[int, int]]
ReadResult = tuple[int, int, int]
WriteResult = tuple[int, int, int, int]


class Backend(NamedTuple):
    """One implementation of the frame functions."""

    name: str
    scan: Callable[[ReadableBuffer, int, int], ScanResult]
    vlan_strip: Callable[[ReadableBuffer, int, int, int, WritableBuffer, int, int], StripResult]
    vlan_insert: Callable[[ReadableBuffer, int, int, int, WritableBuffer, int, int], InsertResult]
    read_frames: Callable[..., ReadResult]
    write_frames: Callable[[int, ReadableBuffer, int, int], WriteResult]


def _size(buf: ReadableBuffer) -> int:
    return buf.nbytes if isinstance(buf, memoryview) else len(buf)


def _bad_range(size: int, start: int, end: int, what: str = "buffer") -> ValueError:
    return ValueError(f"{what} range [{start}:{end}] outside 0..{size} or reversed")


def _bad_vid(vid: int) -> ValueError:
    return ValueError(f"VLAN id {vid} outside 0..4095")


# --------------------------------------------------------------------------
# Pure-Python backend
# --------------------------------------------------------------------------

_u32 = struct.Struct(">I")
_u16 = struct.Struct(">H")
_get_u32 = _u32.unpack_from
_put_u32 = _u32.pack_into
_get_u16 = _u16.unpack_from


def _py_scan(buf: ReadableBuffer, start: int, end: int) -> ScanResult:
    if not 0 <= start <= end <= _size(buf):
        raise _bad_range(_size(buf), start, end)
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


def _py_vlan_strip(
    src: ReadableBuffer,
    start: int,
    end: int,
    vid: int,
    dst: WritableBuffer,
    dst_start: int,
    dst_end: int,
) -> StripResult:
    s = memoryview(src).cast("B")
    d = memoryview(dst).cast("B")
    if d.readonly:
        raise BufferError("destination buffer is not writable")
    if not 0 <= start <= end <= s.nbytes:
        raise _bad_range(s.nbytes, start, end, "source")
    if not 0 <= dst_start <= dst_end <= d.nbytes:
        raise _bad_range(d.nbytes, dst_start, dst_end, "destination")
    if not 0 <= vid <= _VID_MASK:
        raise _bad_vid(vid)
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
        if length < _ETH_HDR_LEN:
            runt += 1
        elif get16(s, f + 12)[0] != _TPID_8021Q:
            untagged += 1
        elif length < _VLAN_HDR_LEN:
            runt += 1
        elif get16(s, f + 14)[0] & _VID_MASK != vid:
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
    s = memoryview(src).cast("B")
    d = memoryview(dst).cast("B")
    if d.readonly:
        raise BufferError("destination buffer is not writable")
    if not 0 <= start <= end <= s.nbytes:
        raise _bad_range(s.nbytes, start, end, "source")
    if not 0 <= dst_start <= dst_end <= d.nbytes:
        raise _bad_range(d.nbytes, dst_start, dst_end, "destination")
    if not 0 <= vid <= _VID_MASK:
        raise _bad_vid(vid)
    tag = _u32.pack((_TPID_8021Q << 16) | vid)
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
        if length < _ETH_HDR_LEN:
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
    if not 0 <= start <= end <= b.nbytes:
        raise _bad_range(b.nbytes, start, end)
    if max_count < 0:
        raise ValueError(f"max_count {max_count} < 0")
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
    if not 0 <= start <= end <= b.nbytes:
        raise _bad_range(b.nbytes, start, end)
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
            if e.errno in _WRITE_FRAME_REJECTED:
                dropped += 1
                pos = nxt
                continue
            err = e.errno or errno.EIO
            break
        n += 1
        pos = nxt
    return pos, n, dropped, err


def iter_frames(buf: ReadableBuffer, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Yield ``(payload_offset, length)`` for each complete valid frame from ``start``.

    Stops where :func:`scan` stops (incomplete, zero or too-big header).
    """
    if not 0 <= start <= end <= _size(buf):
        raise _bad_range(_size(buf), start, end)
    pos = start
    while end - pos >= 4:
        (length,) = _get_u32(buf, pos)
        if length == 0 or length > MAX_FRAME or pos + 4 + length > end:
            return
        yield pos + 4, length
        pos += 4 + length


_PYTHON = Backend(
    name="python",
    scan=_py_scan,
    vlan_strip=_py_vlan_strip,
    vlan_insert=_py_vlan_insert,
    read_frames=_py_read_frames,
    write_frames=_py_write_frames,
)


# --------------------------------------------------------------------------
# Native backend (cffi wrappers)
# --------------------------------------------------------------------------


_API_VERSION = 2


def _bind_native() -> Backend:
    """Import ``xcon._native`` and wrap it; raises ImportError when unavailable."""
    from xcon import _native  # type: ignore[attr-defined, unused-ignore]

    ffi = _native.ffi
    lib = _native.lib
    version = getattr(lib, "XCON_API_VERSION", 1)
    if version != _API_VERSION or lib.XCON_MAX_FRAME != MAX_FRAME:
        raise ImportError(
            f"xcon._native is stale (API {version}, expected {_API_VERSION}); "
            "rebuild it: python native/build_native.py"
        )

    from_buffer = ffi.from_buffer
    new = ffi.new
    out_decl = f"size_t[{lib.XCON_OUT_LEN}]"
    c_scan = lib.xcon_scan
    c_strip = lib.xcon_vlan_strip
    c_insert = lib.xcon_vlan_insert
    c_read = lib.xcon_read_frames
    c_write = lib.xcon_write_frames

    # Results come back through a small array owned by the calling thread:
    # allocated once per thread, not per call (the C calls release the GIL,
    # so threads must not share it).
    tls = threading.local()

    def scan(buf: ReadableBuffer, start: int, end: int) -> ScanResult:
        cbuf = from_buffer(buf)
        if not 0 <= start <= end <= len(cbuf):
            raise _bad_range(len(cbuf), start, end)
        try:
            out = tls.out
        except AttributeError:
            out = tls.out = new(out_decl)
        status = c_scan(cbuf, start, end, out)
        return out[0], out[1], status

    def vlan_args(
        src: ReadableBuffer,
        start: int,
        end: int,
        vid: int,
        dst: WritableBuffer,
        dst_start: int,
        dst_end: int,
    ) -> tuple[Any, Any, Any]:
        """Checked C views of a VLAN rewrite's buffers and this thread's result array."""
        csrc = from_buffer(src)
        cdst = from_buffer(dst, require_writable=True)
        if not 0 <= start <= end <= len(csrc):
            raise _bad_range(len(csrc), start, end, "source")
        if not 0 <= dst_start <= dst_end <= len(cdst):
            raise _bad_range(len(cdst), dst_start, dst_end, "destination")
        if not 0 <= vid <= _VID_MASK:
            raise _bad_vid(vid)
        try:
            out = tls.out
        except AttributeError:
            out = tls.out = new(out_decl)
        return csrc, cdst, out

    def vlan_strip(
        src: ReadableBuffer,
        start: int,
        end: int,
        vid: int,
        dst: WritableBuffer,
        dst_start: int,
        dst_end: int,
    ) -> StripResult:
        csrc, cdst, out = vlan_args(src, start, end, vid, dst, dst_start, dst_end)
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
        csrc, cdst, out = vlan_args(src, start, end, vid, dst, dst_start, dst_end)
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
        if not 0 <= start <= end <= len(cbuf):
            raise _bad_range(len(cbuf), start, end)
        if max_count < 0:
            raise ValueError(f"max_count {max_count} < 0")
        if max_frame < 1:
            return start, 0, errno.EINVAL
        max_frame = min(max_frame, MAX_FRAME)
        try:
            out = tls.out
        except AttributeError:
            out = tls.out = new(out_decl)
        err = c_read(fd, cbuf, start, end, max_frame, max_count, out)
        return out[0], out[1], err

    def write_frames(fd: int, buf: ReadableBuffer, start: int, end: int) -> WriteResult:
        cbuf = from_buffer(buf)
        if not 0 <= start <= end <= len(cbuf):
            raise _bad_range(len(cbuf), start, end)
        try:
            out = tls.out
        except AttributeError:
            out = tls.out = new(out_decl)
        err = c_write(fd, cbuf, start, end, out)
        return out[0], out[1], out[2], err

    return Backend(
        name="native",
        scan=scan,
        vlan_strip=vlan_strip,
        vlan_insert=vlan_insert,
        read_frames=read_frames,
        write_frames=write_frames,
    )


_native_backend: Backend | None = None


def load_backend(name: str) -> Backend:
    """Return the ``"native"`` or ``"python"`` implementation.

    ``"native"`` raises ImportError when the compiled module is missing or
    does not match these sources. Ignores ``XCON_NATIVE``.
    """
    global _native_backend
    if name == "python":
        return _PYTHON
    if name == "native":
        if _native_backend is None:
            _native_backend = _bind_native()
        return _native_backend
    raise ValueError(f"unknown backend {name!r} (expected 'native' or 'python')")


def _select() -> Backend:
    choice = os.environ.get("XCON_NATIVE", "").strip()
    if choice == "0":
        return _PYTHON
    if choice == "1":
        return load_backend("native")
    try:
        return load_backend("native")
    except ImportError:
        return _PYTHON


_selected = _select()

BACKEND: str = _selected.name
scan = _selected.scan
vlan_strip = _selected.vlan_strip
vlan_insert = _selected.vlan_insert
read_frames = _selected.read_frames
write_frames = _selected.write_frames
