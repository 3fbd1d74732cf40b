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
    import socket

    from xcon.capture.manager import Captures
    from xcon.carrier import Carriers
    from xcon.control.sockets import Bound
    from xcon.handover import Giver
    from xcon.lockfile import LockFile

__all__ = ["DIRECTIONS", "STOP_SIGNALS", "Link", "Service", "Xcon", "check_monitors", "end_name"]

log = logging.getLogger("xcon")

#: Signals whose default action ends the process: each is handled as a clean
#: shutdown (connections closed, counters logged, health file set to 1).
#: SIGHUP too, unless xcon runs from a ``--config`` file (then it reloads the
#: file).  SIGUSR1 logs the counters instead; SIGUSR2 restarts xcon in place,
#: handing its connections to the new image (:mod:`xcon.handover`).  SIGPIPE
#: is ignored by Python.
STOP_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGTERM",
        "SIGINT",
        "SIGHUP",
        "SIGQUIT",
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
        #: The health file's lock (:mod:`xcon.lockfile`), handed over with the links.
        self.lock: LockFile | None = None
        #: A handover under way (:mod:`xcon.handover`), and whether one ended this process.
        self._giving: Giver | None = None
        self.handed = False

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
        if hasattr(signal, "SIGUSR2"):
            eng.add_signal_handler(signal.SIGUSR2, lambda _signum: self.restart_in_place())
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
            if not self.handed:  # else the health file is the next xcon's
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

    # -- handing over to the next xcon (xcon.handover) ------------------------------
    def control_sockets(self) -> list[Bound]:
        """The control API's listening sockets (the control services' own)."""
        out: list[Bound] = []
        for s in self.services:
            bound = getattr(s, "bound_sockets", None)
            if bound is not None:
                out.extend(bound())
        return out

    def impairment_words(self, link: Link) -> dict[str, str]:
        """A p2p link's impairments by direction, as words (none for a hub)."""
        p2p = link.p2p
        if p2p is None:
            return {}
        out = {}
        for d in ("a2b", "b2a"):
            imp = p2p.impairment(d)
            if imp is not None and not imp.null:
                out[d] = imp.words()
        return out

    def restore_link(self, link: Link, saved: dict[str, object]) -> None:
        """What a handover says of ``link``: pulled or not, its impairments."""
        admin = saved.get("admin")
        if isinstance(admin, str) and admin != "up" and link.p2p is not None:
            self.set_admin(link.name, False, "both" if admin == "down" else admin.split()[-1])
        impairs = saved.get("impairs")
        if isinstance(impairs, dict) and impairs:
            from xcon.impair.spec import parse_netem

            for direction, words in impairs.items():
                self.set_impair(link.name, direction, parse_netem(str(words)))

    def give(self, path: str) -> None:
        """Hand every connection to the xcon listening on unix socket ``path``
        (``POST /handover``): freeze, drain, pass, exit; raises Conflict when
        one is under way.  A failure is logged and xcon carries on."""
        import socket

        from xcon.errors import Conflict

        if self._giving is not None:
            raise Conflict("a handover is under way already")

        def connect() -> socket.socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(1.0)
                s.connect(path)
            except OSError:
                s.close()
                raise
            return s

        self._hand_over(f"the xcon at {path}", connect)

    def _hand_over(self, to: str, connect: Callable[[], socket.socket]) -> None:
        from xcon.handover import Giver

        giver = self._giving = Giver(self)
        log.info("handing over to %s: reading stops", to)
        giver.freeze(True)
        giver.wait_drained(lambda why: self._give_now(giver, to, connect, why))

    def _give_now(
        self, giver: Giver, to: str, connect: Callable[[], socket.socket], why: str
    ) -> None:
        from xcon.handover import ACK_WAIT, TAKEN, HandoverError, send_parcel

        if not why:
            try:
                s = connect()
            except OSError as e:
                why = e.strerror or str(e)
            else:
                try:
                    s.settimeout(ACK_WAIT)
                    state, fds = giver.pack()
                    send_parcel(s, state, fds)
                    answer = s.recv(len(TAKEN))  # the loop waits: nothing is read meanwhile
                    if answer != TAKEN:
                        why = "the new xcon gave up" if not answer else f"it answered {answer!r}"
                except (OSError, HandoverError) as e:
                    why = getattr(e, "strerror", None) or str(e) or type(e).__name__
                finally:
                    s.close()
        if why:
            log.warning("handover to %s failed (%s): carrying on", to, why)
            giver.freeze(False)
            self._giving = None
            return
        log.info("handed over to the new xcon: exiting")
        self.handed_over()

    def handed_over(self) -> None:
        """Another xcon carries on this one's connections: stop without
        touching them (carrier, socket files, the health file and its lock)."""
        self.handed = True
        self._stopped_by = "handed over"
        if self.carriers is not None:
            self.carriers.on_exit = "keep"
        for s in self.services:
            keep = getattr(s, "keep_files", None)
            if keep is not None:
                keep()
        if self.lock is not None:
            self.lock.forget()
        self.engine.stop()

    def restart_in_place(self) -> None:
        """``xcon ctl restart`` / SIGUSR2: run the same command line again in
        this process (``exec``: same PID), handing the connections to it.

        On the epoll engine, with only router connections as ends, a child
        forked first forwards while the new image starts, then hands over to
        it as to ``--takeover`` (the pause is the handover's, not the
        start's).  Elsewhere (uvloop's loop does not survive a fork; ends the
        new image must bind itself) the process stops reading, then execs."""
        import sys

        if self._giving is not None:
            log.warning("restart asked while a handover is under way: ignored")
            return
        if self.captures is not None:  # their files end complete (writer threads do not fork)
            self.captures.close()
            self.captures = None
        argv = [sys.executable, *sys.orig_argv[1:]]
        from xcon.ports.dgram import DatagramPort
        from xcon.ports.qemu import QemuPort

        ports = [p for link in self.links.values() for p in link.bridge.ports]
        forkable = all(
            isinstance(p, QemuPort) or (isinstance(p, DatagramPort) and p.vni is None)
            for p in ports
        )
        if self.engine.name != "epoll" or not forkable:
            from xcon.handover import Giver

            giver = self._giving = Giver(self)
            log.info("restarting in place: reading stops")
            giver.freeze(True)
            giver.wait_drained(lambda why: self._exec_now(giver, argv, why))
            return
        self._fork_and_exec(argv)

    def _fork_and_exec(self, argv: list[str]) -> None:
        import os
        import socket

        from xcon.handover import ENV_FROM

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for h in logging.getLogger().handlers:
            h.flush()
        try:
            pid = os.fork()
        except OSError as e:
            mine.close()
            theirs.close()
            log.warning("restart in place failed (fork: %s): carrying on", e.strerror or e)
            return
        if pid == 0:  # the child forwards until the new image asks for everything
            theirs.close()
            self._await_successor(mine)
            return
        mine.close()
        try:
            os.set_inheritable(theirs.fileno(), True)
            os.environ[ENV_FROM] = f"{theirs.fileno()}:{pid}"
            log.info(
                "restarting in place: exec %s (pid %d forwards meanwhile)", " ".join(argv), pid
            )
            for h in logging.getLogger().handlers:
                h.flush()
            os.execv(argv[0], argv)
        except OSError as e:  # the child carries on; this process has nothing left to do
            log.error("restart in place: exec failed (%s); pid %d carries on", e.strerror or e, pid)
            os._exit(1)

    def _await_successor(self, sock: socket.socket) -> None:
        """In the forked child: once the new image says it is ready, hand
        over to it through ``sock`` (as to ``--takeover``)."""
        import os

        from xcon.engines import READ, Callback

        reg = None

        def ready() -> None:
            assert reg is not None
            reg.close()
            try:
                said = sock.recv(16)
            except OSError:
                said = b""
            if not said:
                log.error(
                    "restart in place: the new image went away: pid %d carries on", os.getpid()
                )
                sock.close()
                return
            self._hand_over("the restarted xcon", lambda: sock)

        reg = self.engine.register(sock.fileno(), Callback(ready), READ)

    def _exec_now(self, giver: Giver, argv: list[str], why: str) -> None:
        import os

        from xcon.handover import ENV, write_exec_parcel

        if why:
            log.warning("restart in place refused (%s): carrying on", why)
            giver.freeze(False)
            self._giving = None
            return
        state, fds = giver.pack()
        try:
            mfd = write_exec_parcel(state, fds)
            os.environ[ENV] = str(mfd)
            log.info("restarting in place: exec %s", " ".join(argv))
            for h in logging.getLogger().handlers:
                h.flush()
            os.execv(argv[0], argv)
        except OSError as e:
            os.environ.pop(ENV, None)
            log.warning("restart in place failed (%s): carrying on", e.strerror or e)
            giver.freeze(False)
            self._giving = None
