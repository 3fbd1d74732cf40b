"""Carrier follows the link: each router's NIC is set on or off through its
qemu monitor as the link can or cannot carry frames towards it.

For every end of a p2p link whose monitor is known (``--monitor``,
``--monitors vrnetlab``, the config file, the API), :class:`Carriers` keeps
the NIC **off** while the link cannot carry frames towards that router:

* the other end is not connected (its router stopped, restarting, not
  listening yet; a datagram peer not heard);
* the link is pulled (``xcon ctl down``, ``admin = "down"``, ``add --down``,
  a flap schedule's down time); a one-way failure (``--direction``) leaves
  carrier alone, as a unidirectional fault does;
* the link is removed; xcon is stopping (``--on-exit down``, the default).

and **on** once the other end is connected and the link is not pulled.  A
router whose own connection comes back (its qemu restarted: a new qemu
starts with the link on) is told its state again.

**Debounce.**  Off is at once: carrier loss must be seen at once.  On waits
for a hold time: none after a link that was steady, nor after one quick
flap; but each further time the far end goes down within :data:`FLAP_WINDOW`
of carrier coming on, the hold doubles (:data:`HOLD_FIRST`, then twice that,
up to :data:`HOLD_MAX`), as interface dampening does; a steady
:data:`FLAP_WINDOW` resets it.  At start, ends that are still
connecting get :data:`START_GRACE` (or until both are connected) before
their routers are told "off" (so does a link added live), so a start of xcon, or an ``add``, with every
router up flaps nothing.

**Never blocking, never fatal.**  ``set_link`` runs on a worker thread (the
engine's ``run_in_thread``), one command at a time per end; the state wanted
last is what is sent next.  A monitor that cannot be reached or refuses is
retried (:data:`RETRY_MIN` doubling to :data:`RETRY_MAX`), counted, its last
error kept, and logged once per distinct error.  Every change is one log line.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xcon.engines import Engine, TimerHandle
from xcon.limits import ON_EXIT
from xcon.links import end_name
from xcon.monitor import Monitor

if TYPE_CHECKING:
    from xcon.links import Link, LinkTable

log = logging.getLogger("xcon.carrier")

__all__ = ["Carriers", "EndCarrier", "ON_EXIT"]

#: Seconds before a failed monitor is tried again; doubles up to RETRY_MAX.
RETRY_MIN = 0.2
RETRY_MAX = 10.0
#: A far end that goes down within this many seconds of carrier going on is flapping.
FLAP_WINDOW = 10.0
#: The first hold of a flapping end, and the longest.
HOLD_FIRST = 0.5
HOLD_MAX = 8.0
#: Seconds an end still connecting at start has before its router is told "off".
START_GRACE = 1.0
#: Seconds xcon waits at exit for the routers' NICs to go off (all at once).
EXIT_WAIT = 1.5


@dataclass
class EndCarrier:
    """One router's NIC, as xcon sets it."""

    link: str
    end: str
    monitor: Monitor
    #: What the link says now (None: not decided yet) and why.
    want: bool | None = None
    why: str = ""
    #: What the monitor was last told with success (None: unknown).
    state: bool | None = None
    #: Wall-clock time of the last change of ``state``.
    since: float = 0.0
    changes: int = 0
    errors: int = 0
    last_error: str = ""
    busy: bool = False
    #: Seconds before the next retry (after an error), and the retry or hold timer.
    backoff: float = 0.0
    timer: TimerHandle | None = None
    #: Dampening: the hold before "on", flaps in a row, and when carrier last went on.
    hold: float = 0.0
    flaps: int = 0
    on_at: float = float("-inf")
    #: Called once after the next attempt ends (with its error, or "").
    waiters: list[Callable[[str], None]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "carrier": {True: "on", False: "off", None: "unknown"}[self.state],
            "since": self.since or None,
            "want": {True: "on", False: "off", None: None}[self.want],
            "why": self.why,
            "monitor": str(self.monitor),
            "changes": self.changes,
            "errors": self.errors,
            "error": self.last_error or None,
        }


class Carriers:
    """The carrier of every monitored end of a :class:`~xcon.links.LinkTable`
    (a service: closed at exit)."""

    def __init__(self, table: LinkTable, on_exit: str = "down") -> None:
        if on_exit not in ON_EXIT:
            raise ValueError(f"on_exit: one of {', '.join(ON_EXIT)}")
        self.table = table
        self.engine: Engine = table.engine
        self.on_exit = on_exit
        #: By link name, then end name.
        self.ends: dict[str, dict[str, EndCarrier]] = {}
        #: Ends of removed links still being set off.
        self._leaving: list[EndCarrier] = []
        #: Links still in their first START_GRACE seconds, with the timer that ends it.
        self._grace: dict[str, TimerHandle] = {}
        #: Links seen (their ports may report before the table says they were added).
        self._known: set[str] = set()
        table.link_added.append(self._link_added)
        table.link_changed.append(self.link_changed)
        table.link_removed.append(self._link_removed)
        for link in list(table.links.values()):
            self._link_added(link)

    # -- what the link says -------------------------------------------------------------
    def link_changed(self, link: Link) -> None:
        """A port of ``link`` went up or down, its admin state or monitors changed."""
        if link.name not in self._known:
            self._link_added(link)
            return
        p2p = link.p2p
        if p2p is None or not link.monitors:
            if link.name in self.ends and not link.monitors:
                for ec in self.ends.pop(link.name).values():
                    self._cancel(ec)
            return
        if link.name in self._grace and all(p.up for p in p2p.ports):
            self._grace.pop(link.name).cancel()  # connected: from now on, at once
        mine = self.ends.setdefault(link.name, {})
        names = [end_name(e) for e in link.ends]
        for end, mon in link.monitors.items():
            old = mine.get(end)
            if old is not None and old.monitor == mon:
                ec = old
            else:
                if old is not None:
                    self._cancel(old)
                ec = mine[end] = EndCarrier(link.name, end, mon)
            if end not in names:
                continue
            i = names.index(end)
            near_port, far_port, far = p2p.ports[i], p2p.ports[1 - i], names[1 - i]
            if not near_port.up:
                # Its router is gone or not connected yet: nothing to tell it now.
                # It may come back as a new qemu (carrier on): tell it again then.
                self._cancel(ec)
                ec.want = None
                if not ec.busy:
                    ec.state = None
                continue
            if p2p.pulled:
                self._want(ec, False, "the link is down (pulled)")
            elif not far_port.up:
                if link.name in self._grace:
                    continue  # just added: its ends may still be connecting
                self._want(ec, False, f"{far} is not connected", peer=True)
            else:
                self._want(ec, True, f"{far} is connected")
        for end in [e for e in mine if e not in link.monitors]:
            self._cancel(mine.pop(end))

    def _link_added(self, link: Link) -> None:
        if link.name in self._known:
            return
        self._known.add(link.name)

        def over() -> None:
            self._grace.pop(link.name, None)
            if self.table.links.get(link.name) is link:
                self.link_changed(link)

        self._grace[link.name] = self.engine.call_later(START_GRACE, over)
        self.link_changed(link)

    def _link_removed(self, link: Link) -> None:
        self._known.discard(link.name)
        grace = self._grace.pop(link.name, None)
        if grace is not None:
            grace.cancel()
        for ec in self.ends.pop(link.name, {}).values():
            self._cancel(ec)
            ec.waiters.clear()
            self._leaving.append(ec)
            self._want(ec, False, "the link was removed")

    # -- deciding -----------------------------------------------------------------------
    def _want(self, ec: EndCarrier, on: bool, why: str, peer: bool = False) -> None:
        """``on`` is what the link says now; ``peer``: off because the far end
        went (the flaps that are dampened: a pull by the operator or a flap
        schedule is followed exactly)."""
        if on == ec.want and (ec.state == on or ec.busy or ec.timer is not None):
            return
        changed = on != ec.want
        ec.want, ec.why = on, why
        if not on:
            if ec.timer is not None and ec.backoff == 0:  # an "on" hold: not needed now
                self._cancel(ec)
            if not peer:
                ec.hold, ec.flaps = 0.0, 0  # pulled by the operator: followed exactly
            elif ec.state is True and self.engine.time() - ec.on_at < FLAP_WINDOW:
                ec.flaps += 1  # down again soon after it came up: flapping
                ec.hold = 0.0 if ec.flaps < 2 else min(HOLD_FIRST * 2 ** (ec.flaps - 2), HOLD_MAX)
            self._push(ec)
            return
        if changed and self.engine.time() - ec.on_at >= FLAP_WINDOW:
            ec.hold, ec.flaps = 0.0, 0  # steady since: no hold
        if ec.hold and ec.state is not True and ec.timer is None and ec.backoff == 0:
            log.info(
                "link %s: %s's NIC on in %.1f s (its peer flapped: held)", ec.link, ec.end, ec.hold
            )
            ec.timer = self.engine.call_later(ec.hold, lambda: self._held(ec))
            return
        if ec.timer is None:
            self._push(ec)

    def _held(self, ec: EndCarrier) -> None:
        ec.timer = None
        if ec.want:
            self._push(ec)

    # -- telling the monitor -------------------------------------------------------------
    def _push(self, ec: EndCarrier) -> None:
        """Send the wanted state unless it is what the monitor has or a command is out."""
        if ec.busy or ec.want is None:
            return
        if ec.state == ec.want:
            self._wake(ec, "")
            return
        if ec.timer is not None and ec.backoff:
            return  # a retry is due: it sends the state wanted then
        ec.busy = True
        want = ec.want
        self.engine.run_in_thread(
            lambda: ec.monitor.set_link(want),
            lambda _r, err: self._done(ec, want, err),
        )

    def _done(self, ec: EndCarrier, sent: bool, err: BaseException | None) -> None:
        ec.busy = False
        if err is None:
            ec.backoff = 0.0
            if ec.state != sent:
                ec.state = sent
                ec.since = time.time()
                ec.changes += 1
                if sent:
                    ec.on_at = self.engine.time()
                word = "on" if sent else "off"
                log.info("link %s: %s's NIC carrier %s (%s)", ec.link, ec.end, word, ec.why)
                self.table.events.emit("carrier.changed", ec.link, ec.end, ec.why, carrier=word)
            if ec.last_error:
                log.info("link %s: %s's monitor answers again", ec.link, ec.end)
                ec.last_error = ""
            if ec.state == ec.want:
                self._wake(ec, "")
        else:
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            ec.errors += 1
            if text != ec.last_error:
                log.warning(
                    "link %s: cannot set %s's NIC %s: %s (retrying)",
                    ec.link,
                    ec.end,
                    "on" if sent else "off",
                    text,
                )
            ec.last_error = text
            ec.backoff = min(max(ec.backoff * 2, RETRY_MIN), RETRY_MAX)
            self._wake(ec, text)
            if ec in self._leaving:  # its link is gone: told once, not chased
                self._leaving.remove(ec)
                return
            ec.timer = self.engine.call_later(ec.backoff, lambda: self._retry(ec))
            return
        if ec in self._leaving:
            if ec.state is False:
                self._leaving.remove(ec)
            return
        if ec.want != ec.state:
            self._push(ec)

    def _retry(self, ec: EndCarrier) -> None:
        ec.timer = None
        self._push(ec)

    def _wake(self, ec: EndCarrier, error: str) -> None:
        waiters, ec.waiters = ec.waiters, []
        for w in waiters:
            w(error)

    def _cancel(self, ec: EndCarrier) -> None:
        if ec.timer is not None:
            ec.timer.cancel()
            ec.timer = None
        ec.backoff = 0.0

    def restore(self, link: str, states: dict[str, bool | None]) -> None:
        """What a handover says the routers of ``link`` were last told: the
        new xcon sets carrier only where the link's state now differs."""
        for end, state in states.items():
            ec = self.ends.get(link, {}).get(end)
            if ec is not None and state is not None and ec.state is None:
                ec.state = state
                ec.since = time.time()
                if ec.want is not None and ec.want != ec.state and not ec.busy:
                    self._push(ec)

    # -- the control plane ------------------------------------------------------------
    def of(self, link: str) -> dict[str, EndCarrier]:
        return self.ends.get(link, {})

    def settle(self, link: Link, done: Callable[[list[str]], None]) -> None:
        """Call ``done`` with the errors of the link's routers once each was
        told its state (or failed to be): what ``xcon ctl down/up`` answers."""
        ends = [ec for ec in self.of(link.name).values() if ec.want is not None]
        pending = [ec for ec in ends if ec.busy or ec.state != ec.want]
        if not pending:
            done([])
            return
        errors: dict[str, str] = {}

        def one(ec: EndCarrier, error: str) -> None:
            errors[ec.end] = error
            if len(errors) == len(pending):
                done([e for e in errors.values() if e])

        for ec in pending:
            ec.waiters.append(functools.partial(one, ec))
            if ec.timer is not None and ec.backoff:  # retrying later: try now
                self._cancel(ec)
            self._push(ec)

    def close(self) -> None:
        """At exit: every monitored router's NIC off (``--on-exit down``), at
        once on threads of their own, waiting at most :data:`EXIT_WAIT`."""
        for grace in self._grace.values():
            grace.cancel()
        self._grace.clear()
        ends = [ec for mine in self.ends.values() for ec in mine.values()] + self._leaving
        for ec in ends:
            self._cancel(ec)
        if self.on_exit != "down":
            return
        told = [ec for ec in ends if ec.state is not False]
        if not told:
            return
        import threading

        results: dict[int, str] = {}

        def off(i: int, ec: EndCarrier) -> None:
            try:
                ec.monitor.set_link(False, timeout=EXIT_WAIT)
                results[i] = ""
            except Exception as e:  # noqa: BLE001 - reported below, never fatal
                results[i] = str(e).splitlines()[0] if str(e) else type(e).__name__

        threads = [
            threading.Thread(target=off, args=(i, ec), daemon=True) for i, ec in enumerate(told)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + EXIT_WAIT
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        done = [ec for i, ec in enumerate(told) if results.get(i) == ""]
        failed = len(told) - len(done)
        log.info(
            "stopping: %d router NIC%s set off%s",
            len(done),
            "s" * (len(done) != 1),
            f", {failed} could not be (see above)" if failed else "",
        )
        for i, ec in enumerate(told):
            if results.get(i):
                log.warning("stopping: cannot set %s's NIC off: %s", ec.end, results[i])
