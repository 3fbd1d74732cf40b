"""Where a capture's pcapng goes: files (one, or a ring) or a live stream.

**Files** are written by a thread of their own (:class:`FileSink`): a write
to a file cannot be made non-blocking (``O_NONBLOCK`` means nothing to a
regular file, and a slow disk or an NFS server blocks ``write``), so it must
not happen on the loop.  The loop only hands full chunks over a queue (one
put per :data:`WAKE_CHUNKS` full chunks, or at the capture's flush timer,
so the thread wakes about once per MiB, not once per chunk) and the thread
gives them back when written, all that waits in one ``writev`` (one system
call, and one wait for the GIL after it, per batch; the GIL's switch
interval is shortened while writers run, see :data:`WRITER_SWITCH_INTERVAL`).
Every wake-up of the writer costs the loop too: the system call that wakes
it, and the GIL it takes back afterwards.  The thread runs at nice 10: when the CPU
is short (a saturated link on a small machine) forwarding gets it and the
capture falls behind.  While the disk (or the CPU left for the writer) is
slower, the pool runs dry and the capture drops; the loop never waits.
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
import errno
import logging
import os
import queue
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xcon.capture import pcapng

if TYPE_CHECKING:
    from xcon.capture.capture import Capture

log = logging.getLogger("xcon.capture")

__all__ = ["FileSink", "NotRegularFile", "StreamSink", "ring_name"]

_STOP = None
#: Chunks written with one writev at most (IOV_MAX is 1024).
WRITE_BATCH = 64
#: Full chunks handed to the writer thread at once (1 MiB of 256 KiB chunks);
#: fewer wait for the capture's flush timer.
WAKE_CHUNKS = 4
#: The writer thread's nice value, below the loop's (0): when the CPU is
#: short, forwarding gets it and the capture drops.
WRITER_NICE = 10


#: Python's GIL switch interval while a writer thread runs (seconds).  The
#: loop takes the GIL back after each of its many short system calls before a
#: waiting thread is scheduled, so a writer only gets it when the interpreter
#: forces a switch: every 5 ms by default, too seldom for a writer that needs
#: it a few times per batch.  Set while writers run, restored after the last.
WRITER_SWITCH_INTERVAL = 0.0005
_writers = 0
_writers_lock = threading.Lock()
_default_switch = sys.getswitchinterval()


def _writer_started() -> None:
    global _writers, _default_switch
    with _writers_lock:
        if _writers == 0:
            _default_switch = sys.getswitchinterval()
            sys.setswitchinterval(min(_default_switch, WRITER_SWITCH_INTERVAL))
        _writers += 1


def _writer_ended() -> None:
    global _writers
    with _writers_lock:
        _writers -= 1
        if _writers == 0:
            sys.setswitchinterval(_default_switch)


def ring_name(path: str, seq: int) -> str:
    """``cap.pcapng`` -> ``cap-00001.pcapng`` (the extension kept, if any)."""
    head, tail = os.path.split(path)
    stem, dot, ext = tail.rpartition(".")
    if not dot or not stem:
        stem, ext = tail, ""
    name = f"{stem}-{seq:05d}" + (f".{ext}" if ext else "")
    return os.path.join(head, name)


class NotRegularFile(OSError):
    """A capture file to replace that is not a regular file (a FIFO, a device)."""


class FileSink:
    """pcapng to a file, or a ring of files, from a writer thread.

    Where (README, "Capture"): the operator's ``path`` (command line, config
    file, ``--capture DIR``) is opened as given, replacing a file there; with
    ``directory`` (an open directory, which the sink then owns and closes),
    ``path`` is a file NAME in it (an API request), made new (``O_EXCL``)
    unless ``overwrite`` (then only a regular file is replaced).  Every open
    is ``O_NOFOLLOW`` (never through a symbolic link) and makes files mode
    0600; ring files follow the same rules.

    A write error, or any other exception in the thread, ends the capture
    (:meth:`Capture.fail`, on the loop, with one log line): the file is cut
    back to its last whole block and gets its statistics blocks where the
    disk (or the pipe) still takes them.
    """

    def __init__(
        self,
        path: str,
        *,
        size: int = 0,
        seconds: float = 0.0,
        files: int = 0,
        directory: tuple[str, int] | None = None,
        overwrite: bool = True,
    ) -> None:
        #: ``path`` is a NAME in ``directory`` (its path, and an open fd of it).
        self.named = directory is not None
        self.dir_fd = directory[1] if directory is not None else None
        self.name = path if directory is not None else os.path.abspath(path)
        self.path = os.path.join(directory[0], path) if directory is not None else self.name
        self.overwrite = overwrite
        self.size = size
        self.seconds = seconds
        self.keep = files
        self.ring = bool(size or seconds)
        self.capture: Capture | None = None
        self._q: queue.SimpleQueue[list[tuple[bytearray, int]] | None] = queue.SimpleQueue()
        #: Full chunks not yet handed to the thread (the loop's side).
        self._pending: list[tuple[bytearray, int]] = []
        self._thread: threading.Thread | None = None
        self._fd = -1
        self._seq = 0
        #: Bytes in the current file, and where its header (section, interfaces) ends.
        self._written = 0
        self._header_len = 0
        #: Where the current file's last whole block ends (a failed write cuts it there).
        self._good = 0
        self._opened = 0.0
        #: Files written, oldest first (those removed by the ring are not listed).
        self.files: list[str] = []
        self._names: list[str] = []
        #: The file opened last (or being opened).
        self._opening = self.name
        self.bytes = 0
        self.closed = threading.Event()
        #: The writer thread took the loop's last word (the capture stopped).
        self._stopped = False
        try:
            self._open_next()  # raises OSError: the caller reports it
        except BaseException:
            self._close_dir()
            raise

    def attach(self, capture: Capture) -> None:
        self.capture = capture
        _writer_started()
        self._thread = threading.Thread(
            target=self._run, name=f"xcon-capture-{capture.ident}", daemon=True
        )
        self._thread.start()

    def put(self, chunk: bytearray, n: int) -> None:
        self._pending.append((chunk, n))
        if len(self._pending) >= WAKE_CHUNKS:
            self.flush()

    def flush(self) -> None:
        """Hand what waits to the writer thread (the capture's flush timer)."""
        if self._pending:
            self._q.put(self._pending)
            self._pending = []

    def close(self) -> None:
        self.flush()
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
        # Below forwarding: on a machine short of CPU the writer falls behind
        # (the capture drops, counted) rather than the loop.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
        try:
            error = None
            try:
                self._serve(cap)
                self._write_all(cap.statistics())
            except OSError as e:
                error = f"writing {self._current()}: {e.strerror or e}"
            except Exception as e:  # noqa: BLE001 - a bug must end the capture, not hide
                error = f"the capture's writer failed: {type(e).__name__}: {e}"
            if error is not None:
                self._failed(cap, error)
        finally:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1
            self._close_dir()
            _writer_ended()
            self.closed.set()

    def _serve(self, cap: Capture) -> None:
        """The header, then what the loop hands over, until the capture stops."""
        self._write_all(cap.header())  # here: a stalled disk stalls this thread only
        self._header_len = self._written
        stop = False
        while not stop:
            timeout = None
            if self.seconds:
                timeout = max(0.0, self._opened + self.seconds - time.monotonic())
            try:
                item = self._q.get(timeout=timeout)
            except queue.Empty:
                self._rotate()
                continue
            # Whatever else waits goes with it, in one writev: one system
            # call (and one wait for the GIL after it) per batch, not per chunk.
            batch: list[tuple[bytearray, int]] = []
            while True:
                if item is _STOP:
                    stop = self._stopped = True
                    break
                batch += item
                if len(batch) >= WRITE_BATCH:
                    break
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
            try:
                self._write_batch(batch)
            finally:
                for chunk, _n in batch:
                    cap.release(chunk)

    def _failed(self, cap: Capture, error: str) -> None:
        """The end after an error: the file cut back to whole blocks, its
        statistics if they can still be written, one log line, the capture
        told (on the loop), and the chunks still coming given back."""
        try:
            stats = self._salvage(cap)
        except Exception:  # noqa: BLE001 - the error reported is the first one
            stats = False
        log.error(
            "capture %d of %s stopped: %s%s",
            cap.ident,
            cap.link,
            error,
            "" if stats else " (the file has no statistics blocks)",
        )
        cap.engine.call_soon_threadsafe(lambda: cap.fail(error))
        if not self._stopped:
            self._drain()

    def _salvage(self, cap: Capture) -> bool:
        """Cut the current file back to its last whole block and write the
        statistics there; whether they were written."""
        if self._fd < 0:
            return False  # the next ring file could not be opened
        if self._good < self._written:
            try:
                os.ftruncate(self._fd, self._good)
                os.lseek(self._fd, self._good, os.SEEK_SET)
            except OSError:
                return False  # a pipe: what went out is out
            self._written = self._good
        if self._written < self._header_len or self._header_len == 0:
            return False  # no whole header: statistics would not be read
        start = self._written
        try:
            self._write_all(cap.statistics())
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            return False
        return True

    def _current(self) -> str:
        """The file being written (or opened), as messages name it (a capture
        directory's file by its name only)."""
        return self._opening

    def _write_batch(self, batch: list[tuple[bytearray, int]]) -> None:
        views: list[memoryview] = []
        pending = 0
        for chunk, n in batch:
            if self.ring and self._due(pending + n):
                self._writev_all(views)
                views, pending = [], 0
                self._rotate()
            views.append(memoryview(chunk)[:n])
            pending += n
        self._writev_all(views)

    def _writev_all(self, views: list[memoryview]) -> None:
        """Write ``views`` (each whole blocks); on an error, :attr:`_good` is
        where the last whole block written ends."""
        i, done = 0, 0  # views[i] is the first not wholly written, ``done`` bytes of it are
        while i < len(views):
            try:
                n = os.writev(self._fd, [views[i][done:], *views[i + 1 :]])
            except InterruptedError:
                continue
            except OSError:
                self._good = self._written - done + pcapng.whole_blocks(views[i], done)
                raise
            self._written += n
            self.bytes += n
            while n:
                left = len(views[i]) - done
                if n < left:
                    done += n
                    break
                n -= left
                i, done = i + 1, 0
        self._good = self._written

    def _drain(self) -> None:
        cap = self.capture
        assert cap is not None
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            for chunk, _n in item:
                cap.release(chunk)

    def _due(self, n: int) -> bool:
        """A new file before ``n`` more bytes (the current one holds more than its header)."""
        header = self._written <= self._header_len
        if self.size and self._written + n > self.size and not header:
            return True
        return bool(self.seconds) and time.monotonic() - self._opened >= self.seconds

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
        name = self._opening = ring_name(self.name, self._seq) if self.ring else self.name
        self._fd = self._open(name)
        self._written = self._good = self._header_len = 0
        self._opened = time.monotonic()
        self.files.append(os.path.join(os.path.dirname(self.path), name))
        self._names.append(name)
        if self.keep and len(self.files) > self.keep:
            self.files.pop(0)
            old = self._names.pop(0)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old, dir_fd=self.dir_fd)

    def _open(self, name: str) -> int:
        """Open ``name`` as the rules say (the class docstring); raises OSError."""
        # O_NONBLOCK for the open only: a FIFO nobody reads fails at once (ENXIO)
        # instead of blocking; its writes then block the writer thread alone.
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW
        named = self.named
        if named and not self.overwrite:
            flags |= os.O_EXCL
        else:
            flags |= os.O_TRUNC
        if named and self.overwrite:
            try:
                st = os.stat(name, dir_fd=self.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if not stat.S_ISREG(st.st_mode):
                    raise NotRegularFile(errno.EEXIST, "not a regular file")
        try:
            fd = os.open(name, flags, 0o600, dir_fd=self.dir_fd)
        except OSError as e:
            if e.errno == errno.ENXIO:
                raise OSError(e.errno, "a FIFO with no reader") from None
            if e.errno == errno.ELOOP:
                raise OSError(e.errno, "a symbolic link (not followed)") from None
            raise
        if named:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise NotRegularFile(errno.EEXIST, "not a regular file")
            os.fchmod(fd, 0o600)  # a file replaced is the capture's now
        os.set_blocking(fd, True)
        return fd

    def _close_dir(self) -> None:
        if self.dir_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.dir_fd)
            self.dir_fd = None

    def _write_all(self, data: bytes | memoryview) -> None:
        """Write ``data`` (whole blocks); on an error, :attr:`_good` is where
        the last whole block written ends."""
        mv = memoryview(data)
        done = 0
        while done < len(mv):
            try:
                n = os.write(self._fd, mv[done:])
            except InterruptedError:
                continue
            except OSError:
                self._good = self._written - done + pcapng.whole_blocks(mv, done)
                raise
            done += n
            self._written += n
            self.bytes += n
        self._good = self._written


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

    def flush(self) -> None:
        """Nothing waits here: every chunk is offered to the client at once."""

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
