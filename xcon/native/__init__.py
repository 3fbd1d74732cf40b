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

``skip(buf, start, end, max_frames) -> (pos, nframes, status)``
    :func:`scan` passing at most ``max_frames`` frames: where the frame a
    random draw picked starts (the impairment's fast path).

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

``recv_datagrams(fd, buf, start, end, max_count, prefix_len=0, expect=b"", mask=b"",
peer=None) -> (pos, nframes, err, (bad_header, foreign, truncated))``
    For a datagram socket carrying one Ethernet frame per datagram (UDP as
    qemu's ``-netdev dgram``, VXLAN): receive datagrams in batches
    (``recvmmsg``, at most :data:`DGRAM_BATCH` a call) and store the frames
    from ``start`` as contiguous length-prefixed frames; ``pos`` is the end
    of the last. Each datagram gets a slot of 4 + :data:`MAX_DGRAM` bytes in
    ``buf[pos:end]`` (so it is never cut), the frames kept are moved down
    behind each other; the bytes from ``pos`` to ``end`` are scratch
    afterwards. Receiving goes on while a slot's room remains and fewer than
    ``max_count`` frames were kept. A datagram whose first ``prefix_len``
    bytes (at most :data:`MAX_PREFIX`) are a header stores only what follows
    it. Dropped and counted, in this order: foreign (``peer`` given, 4 bytes
    of IPv4 or 16 of IPv6 address, and the source address is another: the
    port is not compared, an IPv4-mapped IPv6 source matches its IPv4
    address, a source that is not IP never matches), truncated (longer than
    its slot: ``MSG_TRUNC``), bad header (shorter than ``prefix_len`` + 14,
    which includes empty frames, or a header byte ``i`` with
    ``hdr[i] & mask[i] != expect[i]``; ``expect`` and ``mask`` are
    ``prefix_len`` bytes long, ValueError otherwise). For VXLAN:
    ``prefix_len=8``, ``expect=08 00 00 00 V V V 00``,
    ``mask=08 00 00 00 ff ff ff 00`` (I flag and VNI checked, reserved bits
    ignored). ``err`` is 0 when the socket ran dry (EAGAIN), the frame cap or
    the room was reached; ``ENOBUFS`` when there was no room for even one
    slot (nothing read); otherwise the errno of the failed receive, the
    frames before it kept: ``ECONNREFUSED`` on a connected UDP socket is an
    ICMP port unreachable (the peer is gone; the error is reported once, the
    datagrams waiting behind it come with the next call). EINTR is retried.
    The socket is read with ``MSG_DONTWAIT``, so a blocking one does not
    block.

``send_datagrams(fd, buf, start, end, prefix=b"", addr=None)
-> (consumed_pos, nframes, ndropped, err)``
    Send each complete frame of ``buf[start:end]`` as one datagram,
    ``prefix + frame`` (``prefix`` at most :data:`MAX_PREFIX` bytes), in
    batches (``sendmmsg``, at most :data:`DGRAM_BATCH` a call). ``addr`` is
    None on a connected socket, or the destination: ``(host, port)`` with a
    literal IPv4 or IPv6 address, ``(host, port, flowinfo, scope_id)`` with a
    literal IPv6 one (names are not looked up; anything else raises
    ValueError). Stops at an incomplete trailing frame (err 0), at EAGAIN
    (err 0, ``consumed_pos`` is the header of the first frame that did not
    go, so the caller retries from there), or at an error of the socket
    (err = errno, ``consumed_pos`` at the failed frame). Errors that reject
    one datagram and not the socket (EMSGSIZE, ENOBUFS, EINVAL, ECONNREFUSED:
    an ICMP error from an earlier datagram, EHOSTUNREACH, ENETUNREACH,
    EPERM: a firewall) and frames with a zero or above-limit length are
    dropped: skipped, counted in ``ndropped``, sending goes on. A datagram
    that fails after others of the same ``sendmmsg`` call went is tried
    again as the first of the next call (the kernel reports no errno for
    it), and the Python backend does the same. EINTR is retried; the socket
    is written with ``MSG_DONTWAIT | MSG_NOSIGNAL``.

AF_PACKET sockets with ``PACKET_VNET_HDR`` (``native/xcon_packet.c``): such a
socket delivers each packet as a 10-byte ``struct virtio_net_hdr`` (host byte
order) followed by the frame as the sending stack left it, with a partial
checksum (``VIRTIO_NET_HDR_F_NEEDS_CSUM``) or as a TSO/GSO super-frame of up
to 64 KiB (``gso_type``, ``gso_size``) when the device offered those
offloads (a veth does), and takes a header before each frame it sends.

``offload_frame(vnet, frame, dst, dst_start, dst_end, tpid=0, tci=0)
-> (written, nframes, verdict)``
    What one packet becomes, written to ``dst`` from ``dst_start`` as
    length-prefixed frames. ``vnet`` is the 10-byte header (ValueError
    otherwise), ``tpid``/``tci`` the VLAN tag the kernel took out of the frame
    (``tpid`` 0: none), put back after the MAC addresses of every output
    frame (the header's offsets refer to the frame without it). Verdicts
    (:data:`~xcon.native.abi.OFFLOAD_VERDICTS`):

    * ``PKT_FORWARDED``: no offload (no ``NEEDS_CSUM``, ``GSO_NONE``), one frame;
    * ``PKT_CSUM``: the checksum completed: the 16-bit ones' complement sum
      from ``csum_start`` to the end (the field already holds the
      pseudo-header's sum) complemented and stored at ``csum_start +
      csum_offset``, 0 stored as 0xffff; for SCTP (IP protocol 132 at
      ``csum_start``, ``csum_offset`` 8) the CRC32c, little-endian as the
      kernel stores it;
    * ``PKT_SPLIT``: a super-frame (``GSO_TCPV4``, ``GSO_TCPV6``, either with
      the ECN bit, or ``GSO_UDP_L4``) cut into frames of at most
      ``gso_size`` payload bytes, each with a copy of the headers (up to two
      VLAN tags in the frame, IPv4 with options, IPv6 without extension
      headers) and its own IPv4 total length, id (+1 per segment) and header
      checksum or IPv6 payload length; TCP sequence number (+ payload
      offset), FIN and PSH only on the last segment, CWR only on the first;
      UDP length; full transport checksum with the pseudo-header;
    * dropped, nothing written: ``PKT_UNSUPPORTED`` (another ``gso_type``,
      UDP with the ECN bit, not IP, more than two VLAN tags in the frame, a
      protocol that does not match the type, IPv6 extension headers, an IPv4
      fragment), ``PKT_MALFORMED`` (``gso_size`` 0, no payload, checksum
      offsets outside the frame or, for a super-frame, not at its transport
      header, headers cut short or invalid, a segment too long for the IP
      length field), ``PKT_BAD_FRAME`` (empty, above :data:`MAX_FRAME`, or no
      room for the VLAN tag below it), ``PKT_NO_ROOM`` (the output does not
      fit in ``dst[dst_start:dst_end]``).

    ``written`` is the position after the output (``dst_start`` when
    dropped), ``nframes`` the frames written.

``read_packets(fd, buf, start, end, max_count=READ_BATCH, vnet_hdr=True)
-> (written_pos, nframes, err, counters)``
    The read batch of a non-blocking AF_PACKET ``SOCK_RAW`` socket with
    ``PACKET_AUXDATA`` (and ``PACKET_VNET_HDR`` unless ``vnet_hdr`` is
    false: then frames are taken as they come, offloads untouched). Reads
    one packet per ``recvmsg`` straight into ``buf`` (frame at ``pos + 4``)
    while at least :data:`~xcon.native.abi.PACKET_ROOM` bytes of room remain
    and fewer than ``max_count`` packets were read, and turns each into
    frames in place as :func:`offload_frame` does, with the tag from
    ``PACKET_AUXDATA`` (``TP_STATUS_VLAN_VALID``; TPID 0x8100 unless
    ``TP_STATUS_VLAN_TPID_VALID`` gives another). A super-frame is split in the buffer:
    moved to the end of the span its segments take, then cut from ``pos`` on
    (96 KiB of room hold a 64 KiB super-frame cut into segments of 200 bytes
    or more, a VLAN tag added to each; one whose segments would not fit is
    dropped as ``gso_dropped``). ``counters``
    (:data:`~xcon.native.abi.PACKET_COUNTERS`, for this call) count the
    packets not forwarded: ``truncated`` (``MSG_TRUNC``: longer than
    :data:`MAX_FRAME`), ``outgoing`` (``sll_pkttype`` ``PACKET_OUTGOING``,
    for kernels without ``PACKET_IGNORE_OUTGOING``), ``gso_dropped``
    (``PKT_UNSUPPORTED``, ``PKT_NO_ROOM``, or ``EINVAL`` from ``recvmsg``:
    the kernel could not describe the packet's offload and dropped it),
    ``malformed``, ``bad_frame`` (also a datagram shorter than the header);
    and the packets worked on: ``csum_completed``, ``gso_split``. ``nframes``
    counts output frames (segments), ``max_count`` packets. ``err`` is 0
    when the socket ran dry (EAGAIN), the cap or the room was reached;
    ``ENOBUFS`` when ``end - start`` is below ``PACKET_ROOM`` (nothing
    read); otherwise the errno of the failed ``recvmsg``, frames read before
    it kept. EINTR is retried.

``capture_frames(src, start, end, dst, dst_start, dst_end, if_id, flags, ts, snaplen=0)
-> (consumed, written, nframes)``
    Capture (:mod:`xcon.capture`): each whole frame of ``src[start:end]``
    becomes one pcapng Enhanced Packet Block in ``dst`` from ``dst_start``,
    little-endian: block type 6, total length, interface ``if_id``, timestamp
    ``ts`` (64 bits, high word first, in the interface's units), captured
    length ``min(length, snaplen)`` (``snaplen`` 0: whole frames), original
    length, the captured bytes zero-padded to a multiple of 4, then, when
    ``flags`` is not 0, an ``epb_flags`` option (code 2, 4 bytes) and the end
    of options, and the total length again (:data:`~xcon.native.abi.EPB_FIXED`
    + padded length + :data:`~xcon.native.abi.EPB_FLAGS_OPT` with flags).
    Stops at the first header :func:`scan` would not pass and before the
    first block that does not fit in ``dst[written:dst_end]``; ``consumed``
    is the source offset after the last frame written, ``written`` the
    destination offset after it. The header and the copy are one pass over
    each frame.

``write_packets(fd, buf, start, end) -> (consumed_pos, nframes, ndropped, err)``
    :func:`write_frames` for a socket with ``PACKET_VNET_HDR``: each frame is
    sent with a zero ``struct virtio_net_hdr`` in front (one ``writev``):
    no offload asked for.
"""

from __future__ import annotations

import os

from xcon.native import backend_python
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
