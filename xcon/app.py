"""One xcon process: its link table (:mod:`xcon.links`) on an engine, run
until a signal; the health file from first write to last, signals,
``--trace`` and the counters logged at the end.

The link table's names are importable from here too (``Link``,
``check_monitors``, ``end_name``, ``DIRECTIONS``)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from xcon.engines import Engine
from xcon.health import HealthFile
from xcon.links import DIRECTIONS, Link, LinkTable, check_monitors, end_name

if TYPE_CHECKING:
    from xcon.capture.manager import Captures
    from xcon.carrier import Carriers

__all__ = ["DIRECTIONS", "STOP_SIGNALS", "Link", "Service", "Xcon", "check_monitors", "end_name"]

log = logging.getLogger("xcon")

#: Signals whose default action ends the process: each is handled as a clean
#: shutdown (connections closed, counters logged, health file set to 1).
#: SIGHUP too, unless xcon runs from a ``--config`` file (then it reloads the
#: file).  SIGUSR1 logs the counters instead.  SIGPIPE is ignored by Python.
STOP_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGTERM",
        "SIGINT",
        "SIGHUP",
        "SIGQUIT",
        "SIGUSR2",
        "SIGALRM",
        "SIGVTALRM",
        "SIGPROF",
        "SIGIO",
        "SIGPWR",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGSTKFLT",
    )
    if hasattr(signal, name)
)
SIGHUP = getattr(signal, "SIGHUP", -1)


class Service(Protocol):
    """Something the process runs beside its links (the control server)."""

    def close(self) -> None: ...


class Xcon(LinkTable):
    """A link table that runs: on an engine, with a health file, signals and
    tracing, until a stop signal."""

    def __init__(
        self,
        engine: Engine | None = None,
        health_path: str | None = "health",
        trace_interval: float | None = None,
        debug: bool = False,
    ) -> None:
        if engine is None:
            from xcon.engines.epoll import EpollEngine

            engine = EpollEngine()
        super().__init__(engine, HealthFile(health_path, engine.call_later), debug)
        self.trace_interval = trace_interval
        #: Called with the signal number on SIGHUP instead of stopping (``--config``).
        self.on_hangup: Callable[[int], None] | None = None
        #: Closed when the process ends (the control server).
        self.services: list[Service] = []
        #: The captures, made on first use (:func:`xcon.capture.manager.captures_of`).
        self.captures: Captures | None = None
        #: The routers' carrier, following their links (set when the process starts).
        self.carriers: Carriers | None = None
        self._stopped_by = "stopped"

    def close(self) -> None:
        """Release everything without running (a mode failed to start)."""
        for b in self.bridges:
            b.close()
        for s in self.services:
            s.close()
        self.engine.close()

    def log_counters(self, *_: object) -> None:
        for line in self.counters():
            log.info("counters %s", line)

    def trace(self) -> None:
        """Log one line per direction whose counters changed since the last call, with rates."""
        for line in self.trace_lines(self.trace_interval or 1.0):
            log.info("trace %s", line)

    # -- running ------------------------------------------------------------------
    def stop(self, signum: int | None = None) -> None:
        if signum is not None:
            self._stopped_by = signal.Signals(signum).name
            log.info("received %s, shutting down", self._stopped_by)
        self.engine.stop()

    def _hangup(self, signum: int) -> None:
        if self.on_hangup is not None:
            self.on_hangup(signum)
        else:
            self.stop(signum)

    def run(self) -> int:
        """Run until a stop signal; returns the exit code (0).

        Whatever ends the run (a signal, an error), the health file says 1
        before this returns: it never outlives the process as healthy."""
        eng = self.engine
        for signum in STOP_SIGNALS:
            eng.add_signal_handler(signum, self._hangup if signum == SIGHUP else self.stop)
        eng.add_signal_handler(signal.SIGUSR1, self.log_counters)
        self.update_health()
        self.running = True
        for link in list(self.links.values()):
            self._start(link)
        self.update_health()  # listening ports are ready now
        if self.trace_interval:
            eng.call_every(self.trace_interval, self.trace)
        try:
            eng.run()
        except BaseException as e:
            self._stopped_by = f"error: {e!r}"
            raise
        finally:
            self.running = False
            self.health.stopped(self._stopped_by)
            self.log_counters()  # before closing, so states are those of the run
            if self.captures is not None:  # first: live streams get their end
                self.captures.close()
            self.events.close()
            for s in self.services:
                s.close()
            for b in self.bridges:
                b.close()
            eng.close()
        return 0
