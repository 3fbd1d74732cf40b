"""One xcon process: bridges on an engine, the health file, signals, counters
and ``--trace``."""

from __future__ import annotations

import logging
import signal

from xcon.bridges import Bridge
from xcon.engines import Engine
from xcon.health import HealthFile
from xcon.ports import Port
from xcon.stats import FlowStats

log = logging.getLogger("xcon")

#: Signals whose default action ends the process: each is handled as a clean
#: shutdown (connections closed, counters logged, health file set to 1).
#: SIGHUP too, for now (a hang-up ends xcon as it would any daemon in a
#: terminal).  SIGUSR1 logs the counters instead.  SIGPIPE is ignored by Python.
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


class Xcon:
    """Bridges on an engine, a health file, signals, tracing."""

    def __init__(
        self,
        engine: Engine | None = None,
        health_path: str | None = "health",
        trace_interval: float | None = None,
    ) -> None:
        if engine is None:
            from xcon.engines.epoll import EpollEngine

            engine = EpollEngine()
        self.engine: Engine = engine
        self.bridges: list[Bridge] = []
        self.health = HealthFile(health_path)
        self.trace_interval = trace_interval
        self._traced: dict[int, tuple[int, int, int]] = {}
        self._stopped_by = "stopped"

    # -- building -----------------------------------------------------------------
    def add_bridge(self, bridge: Bridge) -> None:
        """Add a bridge; its ``on_state`` must be :meth:`update_health`."""
        self.bridges.append(bridge)

    def close(self) -> None:
        """Release everything without running (a mode failed to start)."""
        for b in self.bridges:
            b.close()
        self.engine.close()

    # -- state --------------------------------------------------------------------
    def ports(self) -> list[Port]:
        return [p for b in self.bridges for p in b.ports]

    def update_health(self) -> None:
        ports = self.ports()
        connected = sum(1 for p in ports if p.connected)
        self.health.update(connected, len(ports), sum(1 for p in ports if p.healthy))

    def counters(self) -> list[str]:
        lines = []
        for b in self.bridges:
            for fs in b.flow_stats():
                lines.append(fs.render())
            for p in b.ports:
                lines.append(_port_line(p))
        return lines

    def log_counters(self, *_: object) -> None:
        for line in self.counters():
            log.info("counters %s", line)

    def trace(self) -> None:
        """One line per direction whose counters changed since the last call, with rates."""
        interval = self.trace_interval or 1.0
        for b in self.bridges:
            for fs in b.flow_stats():
                line = _trace_line(fs, self._traced.get(id(fs)), interval)
                self._traced[id(fs)] = (fs.frames, fs.bytes, fs.dropped)
                if line:
                    log.info("trace %s", line)

    # -- running ------------------------------------------------------------------
    def stop(self, signum: int | None = None) -> None:
        if signum is not None:
            self._stopped_by = signal.Signals(signum).name
            log.info("received %s, shutting down", self._stopped_by)
        self.engine.stop()

    def run(self) -> int:
        """Run until a stop signal; returns the exit code (0).

        Whatever ends the run (a signal, an error), the health file says 1
        before this returns: it never outlives the process as healthy."""
        eng = self.engine
        for signum in STOP_SIGNALS:
            eng.add_signal_handler(signum, self.stop)
        eng.add_signal_handler(signal.SIGUSR1, self.log_counters)
        self.update_health()
        for b in self.bridges:
            b.start()
        self.update_health()  # listening ports are ready now
        if self.trace_interval:
            for b in self.bridges:
                for fs in b.flow_stats():
                    self._traced[id(fs)] = (fs.frames, fs.bytes, fs.dropped)
            eng.call_every(self.trace_interval, self.trace)
        try:
            eng.run()
        except BaseException as e:
            self._stopped_by = f"error: {e!r}"
            raise
        finally:
            self.health.stopped(self._stopped_by)
            self.log_counters()  # before closing, so states are those of the run
            for b in self.bridges:
                b.close()
            eng.close()
        return 0


def _port_line(p: Port) -> str:
    s = p.stats
    extra = p.counter_text()
    return (
        f"{p.name}: {'up' if p.up else 'down'} connects={s.connects} drops={s.drops} "
        f"protocol_errors={s.protocol_errors} partial_bytes={s.partial_bytes}"
        + (f" last_error={s.last_error!r}" if s.last_error else "")
        + (f" {extra}" if extra else "")
    )


def _trace_line(fs: FlowStats, before: tuple[int, int, int] | None, interval: float) -> str:
    frames0, bytes0, dropped0 = before or (0, 0, 0)
    df, db, dd = fs.frames - frames0, fs.bytes - bytes0, fs.dropped - dropped0
    if not (df or db or dd):
        return ""
    rate = f"{df / interval:.0f} frames/s {db * 8 / interval / 1e6:.3f} Mbit/s"
    if dd:
        rate += f" {dd / interval:.0f} drops/s"
    return f"{fs.render()} ({rate})"
