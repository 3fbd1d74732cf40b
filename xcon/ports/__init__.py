"""Ports: the ends of links, and (with the engines) the only code that touches
file descriptors.

A port owns one descriptor (or a stream the engine made of it), knows how to
(re)open it and how frames are delimited on it, and reads into its own
:class:`~xcon.framing.FrameBuffer`.  Its bridge (the :class:`PortOwner`) sees
only whole frames and four events:

* ``port_up(port)`` / ``port_down(port, reason)``: the port can carry frames /
  lost its descriptor (the bridge drops what is sent to a down port, like a
  pulled cable, until it is up again);
* ``received(port)``: whole, validated frames are waiting in
  ``port.inbuf`` (``inbuf.span()``); the bridge consumes what it forwarded and
  may pause the port (``set_reading(False)``) while the peer is backlogged;
* ``writable(port)``: a send that was cut short can go on;
* ``port_state(port)``: what the health file counts changed without the port
  going up or down (a listening port's client sent its first whole frame).

The bridge sends with ``port.send(view)``, which returns how many bytes went
(possibly 0) and never raises and never calls back into the bridge: a port
that breaks while sending goes down from the loop afterwards
(:meth:`Port.fail`), so no bridge method ever runs inside another.

Kinds (one module each): :mod:`~xcon.ports.stream` (length-prefixed byte
stream, the base of the next two), :mod:`~xcon.ports.qemu` (TCP client of a
qemu NIC, reconnecting; :mod:`~xcon.ports.hostgate` says when it tries),
:mod:`~xcon.ports.listen` (one client at a time, xcon plays the qemu NIC),
:mod:`~xcon.ports.device` (one frame per system call, the base of
:mod:`~xcon.ports.tap`, :mod:`~xcon.ports.raw` and :mod:`~xcon.ports.dgram`).
Each kind of link end names the function that makes its port
(:data:`xcon.linkspec.KIND_TABLE`); what the ports of one engine share is its
:class:`~xcon.ports.services.PortServices`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from xcon.engines import Engine
from xcon.framing import FrameBuffer

log = logging.getLogger("xcon.port")

__all__ = ["Port", "PortOwner", "PortStats", "fmt_addr"]


class PortOwner(Protocol):
    """The bridge a port reports to (see the module docstring)."""

    def port_up(self, port: Port) -> None: ...
    def port_down(self, port: Port, reason: str) -> None: ...
    def received(self, port: Port) -> None: ...
    def writable(self, port: Port) -> None: ...
    def port_state(self, port: Port) -> None: ...


@dataclass
class PortStats:
    connects: int = 0
    reconnects: int = 0  # connects after the first one (a connection came back)
    #: Times an established connection went away (frames are counted by the
    #: bridge: a frame for a port that is down is a ``port_down`` drop).
    disconnects: int = 0
    protocol_errors: int = 0
    partial_bytes: int = 0  # bytes of incomplete frames lost with a connection
    last_error: str = ""

    def reset(self) -> None:
        """Counters back to zero (``xcon ctl reset``); the last error stays."""
        self.connects = self.reconnects = self.disconnects = 0
        self.protocol_errors = self.partial_bytes = 0


class Port:
    """A named link end with a receive buffer; subclasses own the descriptor.

    Life cycle: :meth:`start` begins opening (now or in the background); the
    port calls ``owner.port_up`` once it can carry frames; :meth:`fail` takes
    it down from the loop (``owner.port_down``), after which a subclass tries
    again in its own way; :meth:`close` ends it for good.
    """

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.owner: PortOwner | None = None
        self.up = False
        self.inbuf = FrameBuffer()
        self.stats = PortStats()
        #: The address of the far side while connected ("" when unknown or down).
        self.peer = ""
        self._reading = True
        self._writing = False
        self._frozen = False  # a handover under way: nothing is read
        self._failing: str | None = None  # the reason of a down-transition under way
        self._closed = False
        self._was_up = False  # up at least once: the next up is a reconnect
        #: A descriptor another xcon handed over (:mod:`xcon.handover`), taken
        #: at :meth:`start` instead of opening one: (socket, the bytes read and
        #: not sent, peer, counters, what the kind keeps besides).
        self.handed: tuple[Any, bytes, str, dict[str, Any], dict[str, Any]] | None = None

    @property
    def connected(self) -> bool:
        """Whether the health file counts this port as connected."""
        return self.up

    @property
    def healthy(self) -> bool:
        """Whether this port is as it should be (connected, or ready for a client)."""
        return self.up

    # -- what the bridge calls ---------------------------------------------------------
    def set_reading(self, on: bool) -> None:
        """Read (and report ``received``) or pause, leaving input in the kernel."""
        self._reading = on
        if self.up and self._failing is None:
            self._interest()

    def freeze(self, on: bool) -> None:
        """Stop reading whatever the bridge asks (``on``: a handover packs
        this port), or go back to what it asks."""
        self._frozen = on
        if self.up and self._failing is None:
            self._interest()

    @property
    def reading(self) -> bool:
        """Whether the descriptor is read now."""
        return self._reading and not self._frozen

    def set_writing(self, on: bool) -> None:
        """Report ``writable`` once a cut-short send can go on."""
        self._writing = on
        if self.up and self._failing is None:
            self._interest()

    def send(self, view: memoryview) -> int:
        """Send whole frames from ``view``; returns the bytes that went (maybe 0)."""
        raise NotImplementedError

    # -- handover (xcon.handover) ------------------------------------------------------
    def handable_socket(self) -> Any:
        """The socket a handover can pass on (None: this kind cannot)."""
        return None

    def handover_state(self) -> dict[str, Any]:
        """What the kind keeps beside the socket and the counters (JSON)."""
        return {}

    def adopt(
        self,
        sock: Any,
        pending: bytes,
        peer: str,
        stats: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Carry on a descriptor another xcon handed over (taken at :meth:`start`)."""
        self.handed = (sock, pending, peer, stats, extra or {})

    def restore_stats(self, saved: dict[str, Any]) -> None:
        """The counters a handover passed: the connection goes on, so do they."""
        st = self.stats
        st.connects, st.reconnects = saved["connects"], saved["reconnects"]
        st.disconnects, st.protocol_errors = saved["disconnects"], saved["protocol_errors"]
        st.partial_bytes, st.last_error = saved["partial_bytes"], saved["last_error"]

    def counter_text(self) -> str:
        """Counters of this kind of port beyond :class:`PortStats` (for logs)."""
        return ""

    # -- life cycle --------------------------------------------------------------------
    def prepare(self) -> None:
        """Open now what must work before the loop runs (a device, a local
        socket), so that a typo or a missing privilege stops xcon at start: a
        :class:`~xcon.errors.ModeError` with one line for the user.  Nothing
        for a port that connects in the background."""

    def start(self) -> None:
        raise NotImplementedError

    def fail(self, reason: str) -> None:
        """The descriptor broke: stop its I/O now, go down from the loop soon.

        Deferred so that a failure found inside a bridge's send (or while the
        bridge handles ``received``) never runs the bridge's ``port_down`` in
        the middle of its own work."""
        if not self.up or self._failing is not None:
            return
        self._failing = reason
        self._quiet()
        self.engine.call_soon(self._go_down)

    def protocol_error(self, reason: str) -> None:
        """The peer sent something qemu itself would reject: reset this connection."""
        self.stats.protocol_errors += 1
        self.fail(f"protocol error: {reason}")

    def close(self) -> None:
        """Release everything for good; a port that was up reports ``port_down``."""
        self._closed = True
        was_up = self.up
        self.up = False
        self._failing = None
        self._release()
        if was_up and self.owner is not None:
            self.owner.port_down(self, "closed")

    def _go_down(self) -> None:
        reason = self._failing
        self._failing = None
        if reason is None or not self.up:
            return  # closed meanwhile
        self.up = False
        self.stats.disconnects += 1
        self.stats.last_error = reason
        self.stats.partial_bytes += self.inbuf.discard_partial()
        self._release()
        self._went_down(reason)
        self.peer = ""
        assert self.owner is not None
        self.owner.port_down(self, reason)
        if not self._closed:
            self._again(reason)

    def _became_up(self) -> None:
        """The descriptor is ready: count it and tell the owner."""
        self.up = True
        self.stats.connects += 1
        if self._was_up:
            self.stats.reconnects += 1
        self._was_up = True
        self._reading, self._writing = True, False
        assert self.owner is not None
        self.owner.port_up(self)

    # -- subclass hooks ----------------------------------------------------------------
    def _interest(self) -> None:
        """Apply :attr:`reading` and ``_writing`` to the descriptor."""
        raise NotImplementedError

    def _quiet(self) -> None:
        """Stop all I/O of a failing descriptor (until it is released)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Close the descriptor and cancel pending work (idempotent)."""
        raise NotImplementedError

    def _went_down(self, reason: str) -> None:
        """Log the loss (the one line a user sees)."""
        log.warning("%s: down (%s)", self.name, reason)

    def _again(self, reason: str) -> None:
        """Start trying to come back up (reconnect, listen, re-open)."""


def fmt_addr(addr: tuple[Any, ...] | str | bytes) -> str:
    """``host:port`` or ``[v6]:port``; v4-mapped IPv6 addresses shown as IPv4; a
    unix socket's path (an unnamed client socket: ``unix``)."""
    if isinstance(addr, str | bytes):
        text = addr.decode(errors="replace") if isinstance(addr, bytes) else addr
        return text or "unix"
    host, port = str(addr[0]), addr[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
