"""Where a capture's pcapng goes: files (one, or a ring) or a live stream.

**Files** are written by a thread of their own (:class:`FileSink`): a write
to a file cannot be made non-blocking (``O_NONBLOCK`` means nothing to a
regular file, and a slow disk or an NFS server blocks ``write``), so it must
not happen on the loop.  The loop only hands full chunks over a queue (one
put per 256 KiB) and the thread gives them back when written; while the disk
is slower, the pool runs dry and the capture drops, the loop never waits.
Opening the first file happens at once (so a bad path is an error to the
request or the command line, not a log line later).

**Ring files** (``size``/``seconds``/``files``, tcpdump's ``-C``/``-G``/``-W``):
``cap.pcapng`` is written as ``cap-00001.pcapng``, ``cap-00002.pcapng``, ...;
a new file begins when the next chunk would take the current one past
``size`` bytes, or ``seconds`` after it began; with ``files`` only the newest
that many are kept.  Each file is a whole capture: section header,
interfaces, packets, and statistics blocks when it is closed.

**A stream** (:class:`StreamSink`) is the body of an HTTP response
(``GET /links/NAME/capture``): chunks wait in a queue the control server
takes from as the client reads; the queue holds at most the pool, so a
client that does not read makes the capture drop, never the loop wait.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xcon.capture.capture import Capture

log = logging.getLogger("xcon.capture")

__all__ = ["FileSink", "StreamSink", "ring_name"]

_STOP = None


def ring_name(path: str, seq: int) -> str:
    """``cap.pcapng`` -> ``cap-00001.pcapng`` (the extension kept, if any)."""
    head, tail = os.path.split(path)
    stem, dot, ext = tail.rpartition(".")
    if not dot or not stem:
        stem, ext = tail, ""
    name = f"{stem}-{seq:05d}" + (f".{ext}" if ext else "")
    return os.path.join(head, name)


class FileSink:
    """pcapng to a file, or a ring of files, from a writer thread."""

    def __init__(self, path: str, *, size: int = 0, seconds: float = 0.0, files: int = 0) -> None:
        self.path = os.path.abspath(path)
        self.size = size
        self.seconds = seconds
        self.keep = files
        self.ring = bool(size or seconds)
        self.capture: Capture | None = None
        self._q: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._fd = -1
        self._seq = 0
        self._written = 0
        self._opened = 0.0
        #: Files written, oldest first (those removed by the ring are not listed).
        self.files: list[str] = []
        self.bytes = 0
        self.closed = threading.Event()
        self._open_next()  # raises OSError: the caller reports it

    def attach(self, capture: Capture) -> None:
        self.capture = capture
        self._write_all(capture.header())
        self._thread = threading.Thread(
            target=self._run, name=f"xcon-capture-{capture.ident}", daemon=True
        )
        self._thread.start()

    def put(self, chunk: bytearray, n: int) -> None:
        self._q.put((chunk, n))

    def close(self) -> None:
        self._q.put(_STOP)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the last bytes and the statistics to be written."""
        return self.closed.wait(timeout)

    def describe(self) -> dict[str, Any]:
        return {
            "target": "file",
            "file": self.path,
            "files": list(self.files),
            "bytes": self.bytes,
            "ring": {"size": self.size, "seconds": self.seconds, "files": self.keep}
            if self.ring
            else None,
        }

    # -- the writer thread ----------------------------------------------------------
    def _run(self) -> None:
        cap = self.capture
        assert cap is not None
        failed = False
        try:
            while True:
                timeout = None
                if self.seconds:
                    timeout = max(0.0, self._opened + self.seconds - time.monotonic())
                try:
                    item = self._q.get(timeout=timeout)
                except queue.Empty:
                    if not failed:
                        self._rotate()
                    continue
                if item is _STOP:
                    break
                chunk, n = item
                try:
                    if not failed:
                        if self.ring and self._due(n):
                            self._rotate()
                        self._write_all(memoryview(chunk)[:n])
                except OSError as e:
                    failed = True
                    self._fail(e)
                finally:
                    cap.release(chunk)
            if not failed:
                with contextlib.suppress(OSError):
                    self._write_all(cap.statistics())
        except OSError as e:  # rotation failed
            self._fail(e)
            self._drain()
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self.closed.set()

    def _drain(self) -> None:
        cap = self.capture
        assert cap is not None
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            cap.release(item[0])

    def _fail(self, e: OSError) -> None:
        cap = self.capture
        assert cap is not None
        msg = f"writing {self.files[-1] if self.files else self.path}: {e.strerror or e}"
        log.error("capture %d of %s stopped: %s", cap.ident, cap.link, msg)
        cap.engine.call_soon_threadsafe(lambda: cap.stop(msg))

    def _due(self, n: int) -> bool:
        header = self._written <= self._header_len
        if self.size and self._written + n > self.size and not header:
            return True
        return bool(self.seconds) and time.monotonic() - self._opened >= self.seconds

    _header_len = 0

    def _rotate(self) -> None:
        cap = self.capture
        assert cap is not None
        self._write_all(cap.statistics())
        os.close(self._fd)
        self._fd = -1
        self._open_next()
        self._write_all(cap.header())
        self._header_len = self._written

    def _open_next(self) -> None:
        self._seq += 1
        path = ring_name(self.path, self._seq) if self.ring else self.path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self._written = 0
        self._opened = time.monotonic()
        self.files.append(path)
        if self.keep and len(self.files) > self.keep:
            old = self.files.pop(0)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)

    def _write_all(self, data: bytes | memoryview) -> None:
        mv = memoryview(data)
        while mv:
            try:
                n = os.write(self._fd, mv)
            except InterruptedError:
                continue
            mv = mv[n:]
            self._written += n
            self.bytes += n
        if self._header_len == 0 and self.capture is not None:
            self._header_len = self._written


class StreamSink:
    """pcapng as an HTTP response body (the control server's stream protocol)."""

    content_type = "application/x-pcapng"

    def __init__(self) -> None:
        self.capture: Capture | None = None
        self._items: deque[bytes | tuple[bytearray, int]] = deque()
        self._wake: Callable[[], None] | None = None
        self.ended = False
        self.bytes = 0
        #: Called (on the loop) when the client went away.
        self.on_gone: Callable[[], None] | None = None

    def attach(self, capture: Capture) -> None:
        self.capture = capture
        self._items.append(capture.header())

    def put(self, chunk: bytearray, n: int) -> None:
        self._items.append((chunk, n))
        self._poke()

    def close(self) -> None:
        if self.capture is not None:
            self._items.append(self.capture.statistics())
        self.ended = True
        self._poke()

    def describe(self) -> dict[str, Any]:
        return {"target": "stream", "bytes": self.bytes}

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake()

    # -- the server's side ----------------------------------------------------------
    def set_wakeup(self, wake: Callable[[], None] | None) -> None:
        self._wake = wake

    def pull(self) -> bytes | None:
        """The next piece of the body, or None (nothing now; see :attr:`ended`)."""
        if not self._items:
            return None
        item = self._items.popleft()
        if isinstance(item, tuple):
            chunk, n = item
            data = bytes(memoryview(chunk)[:n])
            assert self.capture is not None
            self.capture.release(chunk)
        else:
            data = item
        self.bytes += len(data)
        return data

    def gone(self) -> None:
        """The client disconnected (or the server closed): the capture ends."""
        self._wake = None
        while self._items:
            item = self._items.popleft()
            if isinstance(item, tuple) and self.capture is not None:
                self.capture.release(item[0])
        if self.on_gone is not None and not self.ended:
            self.on_gone()
