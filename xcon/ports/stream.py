"""A port over a connected byte stream carrying qemu's length-prefixed frames.

The engine turns the connected socket into a stream
(:meth:`~xcon.engines.Engine.open_stream`: a socket on the epoll engine, a
transport on uvloop) that reads straight into this port's
:class:`~xcon.framing.FrameBuffer`.  After each read the port validates what
arrived and hands the bridge the whole frames (``received``); an oversized
length resets the connection (qemu would drop it too), after the frames before
it were handed on.  When the stream ends only the partial frame in flight is
lost.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from xcon.engines import Engine, Stream
from xcon.framing import TOO_BIG
from xcon.limits import MAX_FRAME
from xcon.ports import Port

log = logging.getLogger("xcon.port")

#: Send buffer asked for a unix stream socket (the kernel doubles it).  The
#: default (about 208 KiB) is smaller than one 256 KiB batch of the receive
#: buffer, so every forwarded batch would be cut short and the link would
#: stall on writability instead of streaming: with 512 KiB a unix link beats
#: a loopback TCP one (``make bench``, ``--only unix``).
UNIX_SNDBUF = 512 * 1024


def unix_buffers(sock: socket.socket) -> None:
    """Size a unix stream socket's send buffer for whole batches."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UNIX_SNDBUF)
    except OSError:
        pass


class StreamPort(Port):
    """Base of :class:`~xcon.ports.qemu.QemuPort` and :class:`~xcon.ports.listen.ListenPort`."""

    def __init__(self, engine: Engine, name: str) -> None:
        super().__init__(engine, name)
        self._stream: Stream | None = None
        #: Bytes read on all connections so far.
        self.rx_bytes = 0
        #: The current connection has delivered at least one whole frame.
        self.proved = False
        self._taken_stats: dict[str, Any] | None = None

    def _open_stream(self, sock: socket.socket) -> None:
        """``sock`` is connected: hand it to the engine (``stream_opened`` follows)."""
        self.engine.open_stream(sock, self)

    # -- StreamEvents (called by the engine's stream) ------------------------------------
    def stream_opened(self, stream: Stream) -> None:
        if self._closed:
            stream.close()
            return
        self._stream = stream
        self.proved = False
        saved, self._taken_stats = self._taken_stats, None
        self._became_up()
        if saved is not None:  # the connection goes on: its counters too
            self.restore_stats(saved)
            self.rx_bytes = saved["rx_bytes"]

    def stream_data(self, n: int) -> bool:
        self.rx_bytes += n
        buf = self.inbuf
        status = buf.filled(n)
        if buf.nready or buf.zero_frames:
            if not self.proved:
                self._proved()
            assert self.owner is not None
            self.owner.received(self)
        if status == TOO_BIG:
            self.protocol_error(f"frame length {buf.bad_length()} exceeds {MAX_FRAME}")
            return False
        return self._reading and not self._frozen and self._failing is None

    def stream_writable(self) -> None:
        if self._failing is None and self.owner is not None:
            self.owner.writable(self)

    def stream_closed(self, reason: str) -> None:
        if self.up:
            self.fail(reason)
        elif self._stream is None and not self._closed:
            self._setup_failed(reason)  # the engine could not take the socket

    # -- handover ----------------------------------------------------------------------
    def handable_socket(self) -> Any:
        """The connected socket (an object with ``fileno()``), or None."""
        return getattr(self._stream, "sock", None) if self._stream is not None else None

    def _take_handed(self) -> bool:
        """Start with the handed-over connection, if any: the bytes it had
        read first, then what the socket holds."""
        if self.handed is None:
            return False
        sock, pending, peer, stats, _ = self.handed
        self.handed = None
        if pending:
            self.inbuf.feed(pending)
        self.peer = peer
        self._taken_stats = stats
        self._was_up = True
        sock.setblocking(False)
        log.info("%s: taken over, connected to %s", self.name, peer)
        self._open_stream(sock)
        return True

    # -- Port ------------------------------------------------------------------------
    def send(self, view: memoryview) -> int:
        stream = self._stream
        if stream is None or self._failing is not None:
            return 0
        return stream.send(view)

    def _interest(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.set_reading(self.reading)
            stream.set_writing(self._writing)

    def _quiet(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.set_reading(False)
            stream.set_writing(False)

    def _release(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _proved(self) -> None:
        """The first whole frame of this connection arrived."""
        self.proved = True

    def _setup_failed(self, reason: str) -> None:
        """A connected socket could not become a stream: treat as a failed attempt."""
        self._again(reason)
