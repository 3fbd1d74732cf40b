"""Events: one line of JSON for each change of a link's state, to whoever
follows them (``GET /events``, ``xcon ctl events``).

The link table owns one :class:`Events` hub and the places where a state
changes call :meth:`Events.emit` (the table for links added, removed, up,
down, pulled, flapped and impaired; :mod:`xcon.carrier` for carrier;
the capture manager; the config reload).  Events are per state change,
never per frame: the forwarding path does not know of them.

* **Nobody listening costs one test.**  ``emit`` returns at once when no
  subscriber is there; only then is the time read and the line made.
* **Bounded per subscriber.**  Each :class:`Subscriber` holds at most
  :data:`QUEUE` lines that its client has not taken yet.  A client that
  falls that far behind is dropped: it gets a last line saying so
  (``events.overflow``) after those it had, its stream ends, and
  :attr:`Events.dropped_clients` counts it.  Emitting never blocks and
  never waits for a reader.
* A subscriber is a :class:`~xcon.control.server.StreamBody`: the control
  server takes its lines as the client's socket takes them, woken by
  ``call_soon`` from the wakeup it set, never inside ``emit``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

log = logging.getLogger("xcon")

__all__ = ["QUEUE", "TYPES", "Events", "Subscriber", "event_line", "rfc3339"]

#: Lines a subscriber may hold that its client has not taken, at most.
QUEUE = 1000
#: Bytes handed to the server per pull, at most (whole lines).
PULL_BYTES = 64 * 1024

#: Every type of event, and what it says (docs/control.md lists them).
TYPES: dict[str, str] = {
    "link.added": "a link was added (reason: where from: command line, config, api)",
    "link.removed": "a link was removed (reason: why)",
    "link.up": "an end connected (end; reason: its peer)",
    "link.down": "an end disconnected (end; reason: why)",
    "carrier.changed": "a router's NIC carrier was set on or off (end, carrier; reason: why)",
    "admin.changed": "the cable was pulled or plugged (admin: up, down, down a2b...; direction)",
    "flap.started": "a flap schedule started (reason: the schedule)",
    "flap.stopped": "a flap schedule ended (reason: stopped or done, with the pulls)",
    "impair.set": "a direction was impaired (direction, netem)",
    "impair.cleared": "a direction's impairment was cleared (direction)",
    "capture.started": "a capture started (capture, file or stream)",
    "capture.stopped": "a capture ended (capture; reason: stopped, the link removed, an error)",
    "config.reloaded": "the --config file was applied (reason: what changed)",
    "config.failed": "a reload of the --config file was refused, nothing changed (reason)",
    "events.overflow": "the last line to a client that fell behind: it is dropped",
}


def rfc3339(t: float) -> str:
    """``2026-12-05T08:00:00.123Z``: ``t`` (seconds since the epoch) in UTC, to the ms."""
    secs, ms = divmod(int(t * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


def event_line(doc: dict[str, Any]) -> str:
    """An event as ``xcon ctl events`` prints it for people: time, type, link,
    and ``END: reason``."""
    parts = [str(doc.get("time", "")), str(doc.get("type", ""))]
    if doc.get("link"):
        parts.append(str(doc["link"]))
    reason = str(doc.get("reason") or "")
    if doc.get("end"):
        reason = f"{doc['end']}: {reason}" if reason else str(doc["end"])
    if reason:
        parts.append(reason)
    return " ".join(parts)


class Subscriber:
    """One client's events: a bounded queue of lines, a stream body for the
    control server (see the module docstring)."""

    content_type = "application/x-ndjson"

    def __init__(
        self,
        hub: Events,
        links: Collection[str] = (),
        types: Collection[str] = (),
        limit: int = QUEUE,
    ) -> None:
        self.hub = hub
        #: Only these links' events (empty: all), only these types or families
        #: (``capture`` for ``capture.*``; empty: all).
        self.links = frozenset(links)
        self.types = frozenset(types)
        self.limit = limit
        self.ended = False
        #: Set when the client fell behind and was dropped.
        self.overflowed = False
        self._lines: deque[bytes] = deque()
        self._wake: Callable[[], None] | None = None

    def wants(self, kind: str, link: str | None) -> bool:
        if self.links and link not in self.links:
            return False
        return not self.types or kind in self.types or kind.partition(".")[0] in self.types

    def offer(self, line: bytes, when: str) -> None:
        """Queue ``line``; past :attr:`limit`, drop this client (see the module docstring)."""
        if self.ended:
            return
        if len(self._lines) >= self.limit:
            self.overflowed = True
            last = {
                "time": when,
                "type": "events.overflow",
                "link": None,
                "end": None,
                "reason": f"this client fell {self.limit} events behind: dropped",
            }
            import json

            self._lines.append(json.dumps(last).encode() + b"\n")
            self.end()
            self.hub._dropped(self)
            return
        self._lines.append(line)
        if self._wake is not None:
            self._wake()

    def end(self) -> None:
        """No more events: the stream ends once its lines are taken."""
        if self.ended:
            return
        self.ended = True
        self.hub._forget(self)
        if self._wake is not None:
            self._wake()

    # -- the control server's StreamBody --------------------------------------------------
    def pull(self) -> bytes | None:
        if not self._lines:
            return None
        out = [self._lines.popleft()]
        size = len(out[0])
        while self._lines and size + len(self._lines[0]) <= PULL_BYTES:
            size += len(self._lines[0])
            out.append(self._lines.popleft())
        return b"".join(out)

    def set_wakeup(self, wake: Callable[[], None] | None) -> None:
        self._wake = wake

    def gone(self) -> None:
        self._lines.clear()
        self.ended = True
        self.hub._forget(self)


class Events:
    """The hub: subscribers, and :meth:`emit` for the places where state changes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.subscribers: list[Subscriber] = []
        #: Clients dropped for falling :data:`QUEUE` events behind (the metrics).
        self.dropped_clients = 0

    def subscribe(
        self, links: Collection[str] = (), types: Collection[str] = (), limit: int = QUEUE
    ) -> Subscriber:
        """A new subscriber (``types``: names of :data:`TYPES` or their
        families, checked by the caller)."""
        sub = Subscriber(self, links, types, limit)
        self.subscribers.append(sub)
        return sub

    def emit(
        self,
        kind: str,
        link: str | None = None,
        end: str | None = None,
        reason: str = "",
        **detail: Any,
    ) -> None:
        """Tell every subscriber that wants it: ``kind`` (one of :data:`TYPES`)
        happened to ``link`` (``end`` of it), because of ``reason``; ``detail``
        are more fields of the line."""
        if not self.subscribers:
            return
        takers = [s for s in self.subscribers if s.wants(kind, link)]
        if not takers:
            return
        when = rfc3339(self.clock())
        doc = {"time": when, "type": kind, "link": link, "end": end, "reason": reason, **detail}
        import json  # loaded with the first subscriber

        line = json.dumps(doc).encode() + b"\n"
        for sub in takers:
            sub.offer(line, when)

    def close(self) -> None:
        """xcon stops: every stream ends after the lines it holds."""
        for sub in list(self.subscribers):
            sub.end()

    def _forget(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def _dropped(self, sub: Subscriber) -> None:
        self.dropped_clients += 1
        log.warning(
            "events: a client fell %d events behind and was dropped (%d so far)",
            sub.limit,
            self.dropped_clients,
        )
