"""Per-frame work over batches of length-prefixed frames: the single loader.

Two backends give byte-for-byte identical results: the C library in
``native/`` compiled with cffi as ``xcon._native`` ("native",
:mod:`xcon.native.backend_c`) and the pure-Python twin ("python",
:mod:`xcon.native.backend_python`); constants, status codes and argument
checks are defined once, in :mod:`xcon.native.abi`.  This module only
selects one: the native one when it imports, unless the environment
variable ``XCON_NATIVE`` says ``0`` (the Python one) or ``1`` (the native
one, ImportError otherwise).  :data:`BACKEND` says which one was loaded;
:func:`load_backend` returns either explicitly.

The contract of every function (buffers, offsets, results, errors, threads)
is docs/native.md.
"""

from __future__ import annotations

import os

from xcon.native.abi import (
    DGRAM_BATCH,
    MAX_DGRAM,
    MAX_FRAME,
    MAX_PREFIX,
    NEED_DATA,
    PACKET_ROOM,
    READ_BATCH,
    READ_EOF,
    TOO_BIG,
    VNET_HDR_LEN,
    ZERO,
    Backend,
)

__all__ = [
    "BACKEND",
    "DGRAM_BATCH",
    "MAX_DGRAM",
    "MAX_FRAME",
    "MAX_PREFIX",
    "NEED_DATA",
    "PACKET_ROOM",
    "READ_BATCH",
    "READ_EOF",
    "TOO_BIG",
    "VNET_HDR_LEN",
    "ZERO",
    "Backend",
    "capture_frames",
    "load_backend",
    "offload_frame",
    "read_frames",
    "read_packets",
    "recv_datagrams",
    "scan",
    "send_datagrams",
    "skip",
    "vlan_insert",
    "vlan_strip",
    "write_frames",
    "write_packets",
]


def load_backend(name: str) -> Backend:
    """Return the ``"native"`` or ``"python"`` implementation.

    ``"native"`` raises ImportError when the compiled module is missing or
    does not match these sources. Ignores ``XCON_NATIVE``.
    """
    if name == "python":
        from xcon.native import backend_python  # not loaded beside the C one

        return backend_python.BACKEND
    if name == "native":
        # Imported on demand: the import is the check of the compiled module.
        from xcon.native import backend_c

        return backend_c.BACKEND
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
skip = _selected.skip
vlan_strip = _selected.vlan_strip
vlan_insert = _selected.vlan_insert
read_frames = _selected.read_frames
write_frames = _selected.write_frames
recv_datagrams = _selected.recv_datagrams
send_datagrams = _selected.send_datagrams
# AF_PACKET sockets with PACKET_VNET_HDR
read_packets = _selected.read_packets
write_packets = _selected.write_packets
offload_frame = _selected.offload_frame
# capture: pcapng blocks
capture_frames = _selected.capture_frames
