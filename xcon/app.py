"""Wires a parsed command line into ports, bridges and an engine, and runs it."""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from typing import Any, Protocol

from xcon.bridge import Hub, P2PLink
from xcon.engine import EpollEngine
from xcon.errors import ModeError
from xcon.health import HealthFile
from xcon.linkspec import Endpoint, LinkSpec
from xcon.ports import Port, QemuPort
from xcon.stats import FlowStats

log = logging.getLogger("xcon")


class Bridge(Protocol):
    name: str

    @property
    def ports(self) -> Sequence[Port]: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def flow_stats(self) -> list[FlowStats]: ...


class Xcon:
    """One xcon process: bridges on an engine, a health file, signals, tracing."""

    def __init__(
        self,
        engine: Any = None,
        health_path: str | None = "health",
        trace_interval: float | None = None,
    ) -> None:
        self.engine: Any = engine or EpollEngine()
        self.bridges: list[Bridge] = []
        self.health = HealthFile(health_path)
        self.trace_interval = trace_interval
        self.exit_code = 0

    # -- building -----------------------------------------------------------------
    def add_bridge(self, bridge: Any) -> None:
        """Add any bridge (an object with ``name``, ``ports``, ``start``, ``close``,
        ``flow_stats``); its ports must call :meth:`update_health` on state changes."""
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
        self.health.update(sum(1 for p in ports if p.up), len(ports))

    def counters(self) -> list[str]:
        lines = []
        for b in self.bridges:
            for fs in b.flow_stats():
                lines.append(fs.render())
            for p in b.ports:
                s = p.stats
                state = "up" if p.up else "down"
                lines.append(
                    f"{p.name}: {state} connects={s.connects} drops={s.drops} "
                    f"protocol_errors={s.protocol_errors} partial_bytes={s.partial_bytes}"
                    + (f" last_error={s.last_error!r}" if s.last_error else "")
                    + (f" {p.counter_text()}" if hasattr(p, "counter_text") else "")
                )
        return lines

    def log_counters(self, *_: object) -> None:
        for line in self.counters():
            log.info("counters %s", line)

    def _trace(self) -> None:
        for b in self.bridges:
            for fs in b.flow_stats():
                log.info("trace %s", fs.render())

    # -- running ------------------------------------------------------------------
    def stop(self, signum: int | None = None) -> None:
        if signum is not None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
        self.engine.stop()

    def run(self) -> int:
        eng = self.engine
        eng.add_signal_handler(signal.SIGTERM, self.stop)
        eng.add_signal_handler(signal.SIGINT, self.stop)
        eng.add_signal_handler(signal.SIGUSR1, self.log_counters)
        self.update_health()
        for b in self.bridges:
            b.start()
        if self.trace_interval:
            eng.call_every(self.trace_interval, self._trace)
        try:
            eng.run()
        finally:
            for b in self.bridges:
                b.close()
            self.log_counters()
            eng.close()
        return self.exit_code
