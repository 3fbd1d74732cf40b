"""Per-frame work over batches of length-prefixed frames: the single loader.

Frames travel as a 4-byte big-endian length followed by that many bytes of
Ethernet frame (qemu's socket netdev format). A length of 0 is a "zero" frame
(dropped by the caller), a length above :data:`MAX_FRAME` is a protocol error
(the peer is broken), exactly :data:`MAX_FRAME` is valid.

Two backends give byte-for-byte identical results: the C library in
``native/`` compiled with cffi as ``xcon._native`` ("native",
:mod:`xcon.native.backend_c`), and the pure-Python one ("python",
:mod:`xcon.native.backend_python`); constants, status codes and argument
checks are defined once, in :mod:`xcon.native.abi`.  This module only
selects one. The native one is used when it imports; the
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

"""

from __future__ import annotations

import os

from xcon.native import backend_python
from xcon.native.abi import (
    MAX_FRAME,
    NEED_DATA,
    READ_BATCH,
    READ_EOF,
    TOO_BIG,
    ZERO,
    Backend,
)

__all__ = [
    "BACKEND",
    "MAX_FRAME",
    "NEED_DATA",
    "READ_BATCH",
    "READ_EOF",
    "TOO_BIG",
    "ZERO",
    "Backend",
    "load_backend",
    "read_frames",
    "scan",
    "vlan_insert",
    "vlan_strip",
    "write_frames",
]

_native_backend: Backend | None = None


def load_backend(name: str) -> Backend:
    """Return the ``"native"`` or ``"python"`` implementation.

    ``"native"`` raises ImportError when the compiled module is missing or
    does not match these sources. Ignores ``XCON_NATIVE``.
    """
    global _native_backend
    if name == "python":
        return backend_python.BACKEND
    if name == "native":
        if _native_backend is None:
            from xcon.native import backend_c

            _native_backend = backend_c.bind()
        return _native_backend
    raise ValueError(f"unknown backend {name!r} (expected 'native' or 'python')")


def _select() -> Backend:
    choice = os.environ.get("XCON_NATIVE", "").strip()
    if choice == "0":
        return load_backend("python")
    if choice == "1":
        return load_backend("native")
    try:
        return load_backend("native")
    except ImportError:
        return load_backend("python")


_selected = _select()

BACKEND: str = _selected.name
scan = _selected.scan
vlan_strip = _selected.vlan_strip
vlan_insert = _selected.vlan_insert
read_frames = _selected.read_frames
write_frames = _selected.write_frames
