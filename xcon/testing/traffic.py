"""Numbered frames from one fake NIC to another on a thread, while a test does
something else to xcon: afterwards every frame must have arrived, once, in order."""

from __future__ import annotations

import threading
import time

from xcon.testing.fakeqemu import FakeQemu
from xcon.testing.frames import check_numbered, numbered

__all__ = ["Stream"]


class Stream:
    """Numbered frames ``a`` -> ``b`` in batches, until :meth:`stop`.

    Paced either by a ``pause`` after each batch or, with ``fps``, at that many
    frames a second on average (:attr:`sent` then stays on schedule).  The
    numbers start at ``first`` (two streams, one each way, tell their frames
    apart)."""

    def __init__(
        self,
        a: FakeQemu,
        b: FakeQemu,
        size: int = 300,
        batch: int = 20,
        pause: float = 0.002,
        fps: int | None = None,
        first: int = 0,
    ) -> None:
        self.a, self.b = a, b
        self.first = first
        self.sent = 0
        self.size, self.batch, self.pause, self.fps = size, batch, pause, fps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            if self.fps:
                wait = start + self.sent / self.fps - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            seq = self.first + self.sent
            self.a.send_frames([numbered(seq + i, self.size) for i in range(self.batch)])
            self.sent += self.batch
            if not self.fps:
                time.sleep(self.pause)

    def stop(self) -> None:
        """Stop sending (and wait for the thread); :attr:`sent` is final then."""
        self._stop.set()
        self._thread.join(10)

    def finish(self) -> None:
        """Stop, then check that ``b`` got every frame sent, once and in order."""
        self.stop()
        self.b.wait_frames(self.sent, timeout=10)
        got = [check_numbered(f) for f in self.b.frames]
        assert got == list(range(self.first, self.first + self.sent))
