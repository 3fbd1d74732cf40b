"""``--workers N``: the links spread over N worker processes, one xcon to its users.

One process forwards on one core.  With ``--workers N`` (N > 1) the process
started becomes the **supervisor**: it forwards nothing itself.  It splits the
links (a hub whole) over N **workers**, each a full xcon of its own (the same
command line, run again with :data:`ENV` set) on its own reactor, so on its own
core, and it is what users see:

* **one control socket** (and ``--control-listen`` address): requests about a
  link go to the worker that has it, verbatim (captures stream through);
  requests about all links (``GET /links``, ``/metrics``, ``/health``, ``/``,
  ``/events``, ``POST /counters/reset``, ``/reload``, ``/restart``) go to every
  worker and their answers are merged; each link says its ``worker``, and every
  metric series has a ``worker`` label;
* **one health file**, written from the workers' own health every second and
  at once when a worker stops or comes back; **one log** (the workers' lines
  say ``w1``, ``w2``…); **one config**: a reload is read here, new links go to
  the least loaded worker, then each worker applies its own share;
* a link added live goes to the worker with the fewest links;
* a worker that dies (a crash, SIGKILL) is started again at once (after
  repeated quick deaths, with a back-off up to :data:`RESPAWN_MAX` s).  Its
  links connect again as after a router restart; the links it added live are
  added again.  Logged, counted (``xcon_worker_restarts_total``), and the
  health file says so until it is back.  The other workers go on untouched.

The workers talk to the supervisor only over their own control sockets, in a
private directory (mode 0700) that lives as long as the supervisor; the
supervisor's HTTP calls to them run on threads, its loop only serves the
users' requests.  A worker dies with the supervisor (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

if TYPE_CHECKING:
    from xcon.cli.checks import Setup
    from xcon.control.server import Pending, Request, Response, Streaming
    from xcon.engines import Engine

from xcon.limits import MAX_WORKERS, auto_workers, usable_cpus

__all__ = [
    "MAX_WORKERS",
    "Supervisor",
    "auto_workers",
    "become_worker",
    "merge_metrics",
    "usable_cpus",
]

log = logging.getLogger("xcon.workers")

#: In a worker's environment: ``INDEX:DIRECTORY`` (its share of the links is
#: in DIRECTORY/wINDEX.links, it answers on DIRECTORY/wINDEX.sock).
ENV = "XCON_WORKER"
#: How often the supervisor asks each worker for its health.
POLL_EVERY = 1.0
#: A worker that died within this many seconds of its start is started again
#: after a back-off doubling from RESPAWN_MIN up to RESPAWN_MAX seconds.
QUICK_DEATH = 5.0
RESPAWN_MIN = 0.25
RESPAWN_MAX = 5.0
#: Seconds a worker has to stop after SIGTERM before it is killed.
STOP_GRACE = 5.0
#: Seconds a call to a worker may take.
CALL_TIMEOUT = 30.0


def link_names(setup: Setup) -> list[str]:
    """The names of the links and hubs the command line and file hold, in order."""
    names = [str(spec) for spec in setup.links]
    names += [cl.name for cl in setup.config_links]
    names += [hub.name for hub in setup.config_hubs]
    return names


def together(name: str) -> set[tuple[str, int]]:
    """What link ``name`` shares with other links, which must then be in the
    same worker: the local UDP port of its VXLAN ends (one socket serves
    every VNI on a port)."""
    from xcon.linkspec import SpecError, VxlanEnd, parse_link

    try:
        spec = parse_link(name)
    except SpecError:
        return set()  # a hub's name
    return {("vxlan", e.local_port) for e in (spec.left, spec.right) if isinstance(e, VxlanEnd)}


def place(name: str, shares: list[list[str]]) -> int:
    """The worker for link ``name``: the one with links it shares a socket
    with, else the one with the fewest links (the first of those)."""
    keys = together(name)
    if keys:
        for i, names in enumerate(shares):
            if any(keys & together(other) for other in names):
                return i
    return min(range(len(shares)), key=lambda i: (len(shares[i]), i))


def share(names: Iterable[str], n: int) -> list[list[str]]:
    """``names`` dealt to the ``n`` workers in turn (:func:`place`)."""
    shares: list[list[str]] = [[] for _ in range(n)]
    for name in names:
        shares[place(name, shares)].append(name)
    return shares


def owner_of(name: str, shares: list[list[str]]) -> int | None:
    """The worker whose share has link ``name`` written as the API finds it
    (:meth:`xcon.links.LinkTable.find`: its name, or its two ends in either
    order); None for none."""
    from xcon.links import end_name
    from xcon.linkspec import SpecError, parse_link

    for i, names in enumerate(shares):
        if name in names:
            return i
    try:
        spec = parse_link(name)
    except SpecError:
        return None
    ends = {end_name(spec.left), end_name(spec.right)}
    for i, names in enumerate(shares):
        for other in names:
            try:
                theirs = parse_link(other)
            except SpecError:
                continue
            if {end_name(theirs.left), end_name(theirs.right)} == ends:
                return i
    return None


# -- in a worker --------------------------------------------------------------------


def shares_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"w{index}.links")


def socket_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"w{index}.sock")


def read_share(directory: str, index: int) -> set[str]:
    with open(shares_path(directory, index), encoding="utf-8") as f:
        return set(json.load(f))


def write_share(directory: str, index: int, names: list[str]) -> None:
    path = shares_path(directory, index)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(names, f)
    os.replace(tmp, path)


def become_worker(setup: Setup) -> int | None:
    """In a worker (:data:`ENV` set): keep only this worker's share of the
    links, answer on its private socket, write no health file; returns the
    worker's index (None: not a worker)."""
    value = os.environ.get(ENV)  # kept: the image a restart in place execs is this worker too
    if value is None:
        return None
    index_text, _, directory = value.partition(":")
    index = int(index_text)
    _die_with_parent()
    mine = read_share(directory, index)
    shares = [sorted(mine)]
    everyone = _ends(setup.links, setup.config_links)
    setup.links = [s for s in setup.links if str(s) in mine]
    setup.config_links = [cl for cl in setup.config_links if cl.name in mine]
    setup.config_hubs = [h for h in setup.config_hubs if h.name in mine]
    setup.captures = [(n, p) for n, p in setup.captures if owner_of(n, shares) is not None]
    setup.impairs = [x for x in setup.impairs if owner_of(x[0], shares) is not None]
    # a --monitor of another worker's end is not this one's (one of no link yet is everyone's)
    ours = _ends(setup.links, setup.config_links)
    setup.monitors = {e: m for e, m in setup.monitors.items() if e in ours or e not in everyone}
    from xcon.control import ControlSettings

    setup.control = ControlSettings(
        path=socket_path(directory, index),
        path_given=True,
        allow_ends=setup.control.allow_ends,
    )
    setup.health_file = None
    setup.workers = 1
    setup.worker = (index, directory)
    return index


def _ends(links: Iterable[Any], config_links: Iterable[Any]) -> set[str]:
    from xcon.links import end_name

    specs = [*links, *(cl.spec for cl in config_links)]
    return {end_name(e) for spec in specs for e in (spec.left, spec.right)}


def filtered(load: Callable[[], Any], directory: str, index: int) -> Callable[[], Any]:
    """A config loader that keeps this worker's share (read when it loads:
    the supervisor writes it before it asks the worker to reload)."""
    import dataclasses

    def load_mine() -> Any:
        config = load()
        mine = read_share(directory, index)
        return dataclasses.replace(
            config,
            links=[cl for cl in config.links if cl.name in mine],
            hubs=[h for h in config.hubs if h.name in mine],
        )

    return load_mine


def _die_with_parent() -> None:
    """The worker gets SIGTERM when the supervisor is gone, however it went."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):  # libc is in the process already
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the supervisor died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


# -- the supervisor -----------------------------------------------------------------


class Worker:
    """One worker process and what the supervisor knows of it."""

    def __init__(self, index: int, directory: str, names: list[str]) -> None:
        self.index = index
        self.sock = socket_path(directory, index)
        #: Its share of the command line's and file's links.
        self.names = names
        #: Links added to it live: name -> the POST /links body (added again after a restart).
        self.live: dict[str, bytes] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.up = False  # answering on its socket
        self.ever_up = False
        self.restarts = 0
        self.backoff = RESPAWN_MIN
        #: Its last health answer (connected, total, ready).
        self.health: tuple[int, int, int] = (0, 0, 0)
        self.links = len(names)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def load(self) -> int:
        return max(self.links, len(self.names) + len(self.live))


class WorkerError(Exception):
    """A worker could not be asked (it is not running, or went away)."""


def call(
    worker: Worker, method: str, target: str, body: bytes | None = None
) -> tuple[int, bytes, str]:
    """One request to a worker (blocking: on a thread): (status, body, content type)."""
    from xcon.control.transport import Client, Unreachable

    try:
        return Client(path=worker.sock, timeout=CALL_TIMEOUT).request(method, target, body)
    except Unreachable as e:
        raise WorkerError(f"worker {worker.index} did not answer: {e}") from None


class Supervisor:
    """Starts the workers, keeps them running, and answers for them (see the module docstring)."""

    def __init__(self, setup: Setup, load: Callable[[], Any] | None = None) -> None:
        """``load``: what reads ``--config`` or ``--topology``'s file (for reloads)."""
        self.setup = setup
        self.load = load
        self.n = setup.workers
        self.directory = ""
        self.workers: list[Worker] = []
        self.engine: Engine | None = None
        self.health: Any = None
        self.stopping = False
        self.stopped_by = ""
        #: The supervisor's exit code: a worker's when its first start failed.
        self.exit_code = 0
        self.started = time.time()
        self.services: list[Any] = []
        self.server: Any = None
        self.api: SupervisorAPI | None = None
        #: The health file's lock (held, or taken over); a handover passes it on.
        self.lock: Any = None
        self.handing = False
        self.handed = False
        #: Where each link is, by every name a worker listed it under.
        self.owner: dict[str, Worker] = {}
        self._polling = False

    # -- start and stop ----------------------------------------------------------------
    def run(self) -> int:
        from xcon.engines import make_engine
        from xcon.health import HealthFile

        setup = self.setup
        for name, _path in setup.captures:
            self._known(name, "--capture")
        for name, _direction, _imp in setup.impairs:
            self._known(name, "--impair")
        self.engine = engine = make_engine("epoll")
        self.health = HealthFile(setup.health_file, engine.call_later)
        self.directory = tempfile.mkdtemp(prefix="xcon-workers-")
        try:
            names = link_names(setup)
            for i, mine in enumerate(share(names, self.n)):
                w = Worker(i, self.directory, mine)
                write_share(self.directory, i, mine)
                self.workers.append(w)
                for name in mine:
                    self.owner[name] = w
            self._check_nofile()
            if setup.takeover:
                handed = self._take_over()
            else:
                handed = None
                for w in self.workers:
                    self._spawn(w)
            self._start_control(handed)
            self._write_health()
            for signum in (signal.SIGTERM, signal.SIGINT):
                engine.add_signal_handler(signum, self._stop)
            engine.add_signal_handler(signal.SIGHUP, lambda _s: self.reload(None))
            engine.add_signal_handler(signal.SIGUSR2, lambda _s: self.restart(None))
            engine.add_signal_handler(signal.SIGUSR1, self._pass_on)
            engine.add_signal_handler(signal.SIGCHLD, lambda _s: self._reap())
            engine.call_every(POLL_EVERY, self.poll)
            engine.call_soon(self.poll)
            log.info(
                "xcon supervisor: %d link(s) and hub(s) over %d workers (%s)",
                len(names),
                self.n,
                ", ".join(f"w{w.index}: {len(w.names)}" for w in self.workers),
            )
            engine.run()
        finally:
            self._shutdown()
        return self.exit_code

    def _check_nofile(self) -> None:
        """The workers' descriptors fit the hard limit (each worker checks its
        own again): one error here rather than one per worker.  The soft
        limit raised here is the workers' too."""
        from xcon.rlimit import ensure_nofile

        setup = self.setup
        ends = {str(s): 2 for s in setup.links}
        ends.update({cl.name: 2 for cl in setup.config_links})
        ends.update({h.name: len(h.ends) for h in setup.config_hubs})
        ensure_nofile(max(sum(ends.get(n, 2) for n in w.names) for w in self.workers))

    def _known(self, name: str, flag: str) -> None:
        from xcon.errors import ModeError

        if owner_of(name, share(link_names(self.setup), 1)) is None:
            raise ModeError(f"{flag} {name}: no such link", exit_code=2)

    def _start_control(self, handed: list[Any] | None = None) -> None:
        """The control API on the sockets ``handed`` over, or on new ones."""
        from xcon.control import bind_control
        from xcon.control.access import Access, load_token
        from xcon.control.server import ControlServer
        from xcon.control.sockets import Bound, bind_tcp, bind_unix

        settings = self.setup.control
        token = load_token(settings.token_file) if settings.token_file else None
        bound: list[Bound] = list(handed or ())
        if not bound:
            bind_control(settings, token is not None, bound, bind_unix, bind_tcp)
        if not bound:
            return
        assert self.engine is not None
        access = Access(token, settings.group, settings.allow_ends, settings.token_file)
        self.api = SupervisorAPI(self, access)
        self.server = server = ControlServer(self.engine, self.api)
        for b in bound:
            server.adopt(b)
        self.services.append(server)

    # -- handing over (--takeover, docs/workers.md) ------------------------------------
    def _take_over(self) -> list[Any]:
        """``--takeover`` with workers: start the workers, each waiting for its
        share of the connections; take them from the running xcon (one
        process, or a supervisor that collects its workers'); give each
        worker its share.  Returns the control sockets handed over.  Raises
        ModeError (the running xcon carries on)."""
        from xcon.errors import ModeError
        from xcon.handover import (
            PARCEL_WAIT,
            READY,
            TAKEN,
            HandoverError,
            send_parcel,
            split_parcel,
            take,
        )

        pairs = []
        for w in self.workers:
            mine, theirs = socket.socketpair()
            mine.settimeout(PARCEL_WAIT)
            self._spawn(w, handover=theirs)
            theirs.close()
            pairs.append(mine)
        conn = None
        try:
            for w, mine in zip(self.workers, pairs, strict=True):
                if _read(mine, len(READY)) != READY:
                    raise HandoverError(f"worker w{w.index} did not start")
            assert self.setup.control.path is not None
            parcel, conn = take(self.setup.control.path)
            control = parcel.control()
            lock = parcel.lock()
            if lock is not None:
                self.lock = lock
            shares = [w.names for w in self.workers]
            for mine, (state, fds) in zip(
                pairs, split_parcel(parcel.state, parcel.fds, shares), strict=True
            ):
                send_parcel(mine, state, fds)
            for w, mine in zip(self.workers, pairs, strict=True):
                if _read(mine, len(TAKEN)) != TAKEN:
                    raise HandoverError(f"worker w{w.index} did not take its share")
            conn.sendall(TAKEN)
        except (OSError, HandoverError) as e:
            if conn is not None:
                conn.close()  # the running xcon reads again and carries on
            why = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise ModeError(f"--takeover: {why}", exit_code=1) from None
        finally:
            for mine in pairs:
                mine.close()
        conn.close()
        parcel.close_unused()  # the connections: every worker has its own copy now
        log.info(
            "took over %d link(s) from pid %s into %d workers",
            len(parcel.state["links"]),
            parcel.state["pid"],
            self.n,
        )
        return control

    def give(self, path: str) -> None:
        """``POST /handover`` to a supervisor: every worker hands its
        connections to this process, which passes them on as one parcel to
        the xcon listening on ``path`` with its own control sockets and
        health lock; once that one has them, the workers and this process
        exit.  If anything fails, the workers read again and carry on."""
        from xcon.errors import Conflict

        if self.handing:
            raise Conflict("a handover is under way already")
        self.handing = True
        log.info("handing over to the xcon at %s: collecting the workers' connections", path)
        assert self.engine is not None
        self.engine.run_in_thread(lambda: self._give(path), self._given)

    def _give(self, path: str) -> str:
        """On a thread: collect, pass on, answer the workers; returns "" or why it failed."""
        from xcon.handover import (
            ACK_WAIT,
            PARCEL_WAIT,
            TAKEN,
            HandoverError,
            merge_parcels,
            recv_parcel,
            send_parcel,
        )

        listeners: list[socket.socket] = []
        conns: list[socket.socket] = []
        fds: list[int] = []
        try:
            for w in self.workers:
                here = os.path.join(self.directory, f"w{w.index}.give")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(here)
                lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listeners.append(lst)
                lst.bind(here)
                lst.listen(1)
                lst.settimeout(PARCEL_WAIT)
                status, answer, _ = call(
                    w, "POST", "/handover", json.dumps({"socket": here}).encode()
                )
                if status != 202:
                    raise HandoverError(
                        f"worker w{w.index}: {answer.decode(errors='replace').strip()}"
                    )
            parts = []
            for lst in listeners:
                conn, _ = lst.accept()
                conn.settimeout(ACK_WAIT)
                conns.append(conn)
                state, theirs = recv_parcel(conn)
                fds += theirs
                parts.append((state, theirs))
            state, merged, left = merge_parcels(parts)
            for n in left:
                os.close(n)
                fds.remove(n)
            control = []
            for b in self.server.bound_sockets() if self.server is not None else []:
                merged.append(b.sock.fileno())
                control.append({"fd": len(merged) - 1, "address": b.address, "unlink": b.unlink})
            state["control"] = control
            if self.lock is not None and self.lock.held:
                merged.append(self.lock.fileno())
                state["lock"] = {"fd": len(merged) - 1, "path": self.lock.path}
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(ACK_WAIT)
                s.connect(path)
                send_parcel(s, state, merged)
                if s.recv(len(TAKEN)) != TAKEN:
                    raise HandoverError("the new xcon gave up")
            finally:
                s.close()
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.sendall(TAKEN)  # each worker exits, its connections in the new xcon
            return ""
        except (OSError, HandoverError, WorkerError) as e:
            return getattr(e, "strerror", None) or str(e) or type(e).__name__
        finally:
            for c in conns:
                c.close()  # without TAKEN: the worker reads again and carries on
            for lst in listeners:
                lst.close()
            for n in fds:
                with contextlib.suppress(OSError):
                    os.close(n)

    def _given(self, why: object, err: BaseException | None) -> None:
        if err is not None:
            why = f"{type(err).__name__}: {err}"
        if why:
            log.warning("handover failed (%s): carrying on", why)
            self.handing = False
            return
        log.info("handed over to the new xcon: exiting")
        self.handed = True
        if self.server is not None:
            self.server.keep_files()
        if self.lock is not None:
            self.lock.forget()
        self.stopped_by = "handed over"
        assert self.engine is not None
        self.engine.stop()

    def _spawn(self, w: Worker, handover: socket.socket | None = None) -> None:
        """Start worker ``w`` (``handover``: its end of the socket its share
        of a takeover comes on)."""
        from xcon.handover import ENV_FROM

        env = dict(os.environ)
        env[ENV] = f"{w.index}:{self.directory}"
        passed: tuple[int, ...] = ()
        if handover is not None:
            env[ENV_FROM] = f"{handover.fileno()}:{os.getpid()}"
            passed = (handover.fileno(),)
        argv = [a for a in self.setup.argv if a != "--takeover"]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(w.sock)
        w.proc = subprocess.Popen(
            [sys.executable, "-m", "xcon", *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=passed,
        )
        w.started = time.monotonic()
        w.up = False
        log.info("worker w%d started (pid %d, %d link(s))", w.index, w.proc.pid, w.load)

    def _reap(self) -> None:
        assert self.engine is not None
        for w in self.workers:
            if w.proc is None or w.proc.poll() is None:
                continue
            code = w.proc.returncode
            w.proc = None
            w.up = False
            if self.stopping or self.handing:
                continue
            if code in (1, 2) and not w.ever_up:  # its start failed: its error is on stderr
                log.error("worker w%d could not start (exit code %d): stopping", w.index, code)
                self.exit_code = code
                self._stop(signal.SIGTERM, f"worker w{w.index} could not start")
                return
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            lived = time.monotonic() - w.started
            delay = 0.0 if lived > QUICK_DEATH else w.backoff
            w.backoff = RESPAWN_MIN if lived > QUICK_DEATH else min(w.backoff * 2, RESPAWN_MAX)
            w.restarts += 1
            log.error(
                "worker w%d ended (%s): starting it again%s; its %d link(s) connect again",
                w.index,
                how,
                f" in {delay:.2f} s" if delay else "",
                w.load,
            )
            self._write_health()
            if delay:
                self.engine.call_later(delay, functools.partial(self._respawn, w))
            else:
                self._respawn(w)

    def _respawn(self, w: Worker) -> None:
        if not self.stopping and w.proc is None:
            self._spawn(w)

    def _stop(self, signum: int, why: str = "") -> None:
        if self.stopping:
            return
        self.stopping = True
        self.stopped_by = why or signal.Signals(signum).name
        if not why:
            log.info("received %s, stopping the workers", self.stopped_by)
        assert self.engine is not None
        self.engine.stop()

    def _pass_on(self, signum: int) -> None:
        for w in self.workers:
            if w.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signum)

    def _shutdown(self) -> None:
        self.stopping = True
        if self.handed:  # the workers exit by themselves; their connections are the new xcon's
            for w in self.workers:
                if w.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        w.proc.wait(STOP_GRACE)
            if self.directory:
                shutil.rmtree(self.directory, ignore_errors=True)
            for service in self.services:
                with contextlib.suppress(Exception):
                    service.close()
            if self.engine is not None:
                self.engine.close()
            return
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.close()
        procs = [w.proc for w in self.workers if w.proc is not None]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in %.0f s: killed", p.pid, STOP_GRACE)
                p.kill()
                p.wait()
        if self.health is not None:
            why = self.stopped_by if " " in self.stopped_by else f"stopped by {self.stopped_by}"
            self.health.stopped(why if self.stopped_by else "stopped")
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self.engine is not None:
            self.engine.close()

    # -- health ------------------------------------------------------------------------
    def poll(self) -> None:
        """Ask every worker for its health (on a thread), then write the file."""
        if self._polling or self.stopping:
            return
        self._polling = True
        assert self.engine is not None
        workers = [w for w in self.workers if w.proc is not None]

        def ask() -> list[tuple[Worker, dict[str, Any] | None]]:
            out: list[tuple[Worker, dict[str, Any] | None]] = []
            for w in workers:
                try:
                    status, body, _ = call(w, "GET", "/health")
                    out.append((w, json.loads(body) if status == 200 else None))
                except (WorkerError, ValueError):
                    out.append((w, None))
            return out

        self.engine.run_in_thread(ask, self._polled)

    def _polled(self, result: object, err: BaseException | None) -> None:
        self._polling = False
        if err is not None or not isinstance(result, list):
            return
        for w, doc in result:
            if doc is None or w.proc is None:
                continue
            w.health = (int(doc["connected"]), int(doc["total"]), int(doc["ready"]))
            w.links = int(doc["links"])
            if not w.up:
                w.up = w.ever_up = True
                log.info("worker w%d ready (pid %s)", w.index, w.pid)
                if w.live:
                    self._add_again(w)
        self._write_health()

    def counts(self) -> tuple[int, int, int]:
        connected = total = ready = 0
        for w in self.workers:
            c, t, r = w.health
            if not w.up:  # its ports are not connected while it is down
                c = r = 0
                t = max(t, 2 * w.load)
            connected, total, ready = connected + c, total + t, ready + r
        return connected, total, ready

    def health_status(self) -> tuple[int, str]:
        from xcon.health import health_status

        code, message = health_status(*self.counts())
        down = [f"w{w.index}" for w in self.workers if not w.up]
        if down:
            code = 1
            message += f" ({', '.join(down)} starting)"
        return code, message

    def _write_health(self) -> None:
        if self.health is None or self.stopping:
            return
        code, message = self.health_status()
        self.health.say(code, message)

    def _add_again(self, w: Worker) -> None:
        """A restarted worker gets the links it had added live again."""
        assert self.engine is not None
        bodies = list(w.live.items())

        def add() -> list[str]:
            failed = []
            for name, body in bodies:
                try:
                    status, answer, _ = call(w, "POST", "/links", body)
                except WorkerError as e:
                    failed.append(f"{name}: {e}")
                    continue
                if status != 201:
                    failed.append(f"{name}: {answer.decode(errors='replace').strip()}")
            return failed

        def done(failed: object, err: BaseException | None) -> None:
            for line in failed if isinstance(failed, list) else [str(err)]:
                log.error("worker w%d: link added live not added again: %s", w.index, line)

        self.engine.run_in_thread(add, done)

    # -- what the API asks -------------------------------------------------------------
    def least_loaded(self, name: str = "") -> Worker:
        """Where link ``name`` goes: with the links it shares a socket with,
        else to the running worker with the fewest links."""
        keys = together(name) if name else set()
        if keys:
            for w in self.workers:
                if any(keys & together(other) for other in [*w.names, *w.live]):
                    return w
        alive = [w for w in self.workers if w.up] or self.workers
        return min(alive, key=lambda w: (w.load, w.index))

    def reload(self, pending: Pending | None) -> None:
        """The file read here (on a thread), new links dealt to the least
        loaded workers, then each worker reloads its share; ``pending`` gets
        the merged answer (None: SIGHUP, logged)."""
        from xcon.control.server import error_response

        assert self.engine is not None
        setup = self.setup
        if setup.config is None or self.load is None:
            if pending is not None:
                pending.resolve(
                    error_response(409, "xcon was not started with --config: nothing to reload")
                )
            return
        log.info("reloading %s", setup.config)

        read = self.load

        def load() -> list[str]:
            config = read()
            return [cl.name for cl in config.links] + [h.name for h in config.hubs]

        def loaded(names: object, err: BaseException | None) -> None:
            if err is not None:
                log.error("reload failed, nothing changed: %s", err)
                if pending is not None:
                    pending.resolve(error_response(400, str(err)))
                return
            assert isinstance(names, list)
            self._deal(names)
            self._fan_out("POST", "/reload", None, pending, _merge_reloads)

        self.engine.run_in_thread(load, loaded)

    def _deal(self, names: list[str]) -> None:
        wanted = set(names)
        for w in self.workers:
            w.names = [n for n in w.names if n in wanted]
        placed = {n for w in self.workers for n in w.names}
        for name in names:
            if name not in placed:
                w = self.least_loaded(name)
                w.names.append(name)
                self.owner[name] = w
        for w in self.workers:
            write_share(self.directory, w.index, w.names)

    def restart(self, pending: Pending | None) -> None:
        """Every worker restarts in place (its connections handed over, docs/restart.md)."""
        log.info("restarting the workers in place")
        self._fan_out("POST", "/restart", None, pending, _merge_restarts)

    def _fan_out(
        self,
        method: str,
        target: str,
        body: bytes | None,
        pending: Pending | None,
        merge: Callable[[Supervisor, list[tuple[Worker, int, Any]]], Response],
    ) -> None:
        """``method target`` to every worker (on a thread); ``merge`` makes the
        answer of theirs: (worker, status, parsed body or text); status 0: it
        did not answer."""
        assert self.engine is not None
        workers = list(self.workers)

        def ask() -> list[tuple[Worker, int, Any]]:
            out: list[tuple[Worker, int, Any]] = []
            for w in workers:
                try:
                    status, data, ctype = call(w, method, target, body)
                except WorkerError as e:
                    out.append((w, 0, str(e)))
                    continue
                if "json" in ctype:
                    try:
                        out.append((w, status, json.loads(data)))
                        continue
                    except ValueError:
                        pass
                out.append((w, status, data.decode("utf-8", "replace")))
            return out

        def done(result: object, err: BaseException | None) -> None:
            from xcon.control.server import error_response

            if err is not None:
                answer = error_response(500, f"{type(err).__name__}: {err}")
            else:
                try:
                    answer = merge(self, result)  # type: ignore[arg-type]
                except Exception as e:  # noqa: BLE001 - one line, a 500, xcon goes on
                    log.error("merging the workers' answers failed: %s: %s", type(e).__name__, e)
                    answer = error_response(500, f"{type(e).__name__}: {e}")
            if pending is not None:
                pending.resolve(answer)
            elif answer.status >= 400:
                log.error("%s %s: %s", method, target, answer.body.decode(errors="replace").strip())
            else:
                log.info("%s %s: done by %d workers", method, target, len(workers))

        self.engine.run_in_thread(ask, done)


# -- merging the workers' answers -----------------------------------------------------


def _ok(results: list[tuple[Worker, int, Any]]) -> list[tuple[Worker, Any]]:
    return [(w, doc) for w, status, doc in results if 200 <= status < 300]


def _merge_reloads(sup: Supervisor, results: list[tuple[Worker, int, Any]]) -> Response:
    from xcon.control.config import summary
    from xcon.control.server import error_response, json_response

    for _w, status, doc in results:
        if status >= 400 or status == 0:
            message = doc.get("error") if isinstance(doc, dict) else str(doc)
            return error_response(status or 502, str(message))
    merged: dict[str, Any] = {
        "added": [],
        "removed": [],
        "changed": [],
        "failed": [],
        "unchanged": 0,
    }
    for _w, doc in _ok(results):
        for key in ("added", "removed", "changed", "failed"):
            merged[key] += doc.get(key, [])
        merged["unchanged"] += doc.get("unchanged", 0)
    log.info("reloaded %s: %s", sup.setup.config, summary(merged))  # type: ignore[arg-type]
    return json_response(200, merged)


def _merge_restarts(sup: Supervisor, results: list[tuple[Worker, int, Any]]) -> Response:
    from xcon.control.server import error_response, json_response

    for w, status, doc in results:
        if status not in (200, 202):
            message = doc.get("error") if isinstance(doc, dict) else str(doc)
            return error_response(status or 502, f"worker w{w.index}: {message}")
    return json_response(
        202, {"restarting": True, "pid": os.getpid(), "workers": [w.pid for w in sup.workers]}
    )


def _merge_links(sup: Supervisor, results: list[tuple[Worker, int, Any]]) -> Response:
    from xcon.control.server import json_response

    links = []
    for w, doc in _ok(results):
        for link in doc.get("links", []):
            link["worker"] = w.index
            links.append(link)
            sup.owner[link["name"]] = w
    return json_response(200, {"links": links})


def _merge_status(sup: Supervisor, results: list[tuple[Worker, int, Any]]) -> Response:
    from xcon.control.routes import ROUTES
    from xcon.control.server import json_response

    docs = _ok(results)
    first = docs[0][1] if docs else {}
    return json_response(
        200,
        {
            "xcon": first.get("xcon", ""),
            "fast_path": first.get("fast_path", ""),
            "engine": first.get("engine", ""),
            "uptime_s": round(time.time() - sup.started, 1),
            "links": sum(doc.get("links", 0) for _w, doc in docs),
            "workers": [
                {
                    "worker": w.index,
                    "pid": w.pid,
                    "up": w.up,
                    "links": w.load,
                    "restarts": w.restarts,
                }
                for w in sup.workers
            ],
            "routes": [str(r) for r in ROUTES],
        },
    )


def _merge_reset(sup: Supervisor, results: list[tuple[Worker, int, Any]]) -> Response:
    from xcon.control.server import json_response

    reset = [name for _w, doc in _ok(results) for name in doc.get("reset", [])]
    if not reset:
        for _w, status, doc in results:
            if status == 404:
                return json_response(404, doc)
    return json_response(200, {"reset": reset})


#: The control API's own series: the supervisor's (the workers' count only its calls).
CONTROL_FAMILIES = frozenset(
    {
        "xcon_control_refused_requests",
        "xcon_control_accept_errors",
        "xcon_control_streams",
        "xcon_control_streams_refused",
        "xcon_control_streams_stalled",
    }
)


def _merge_metrics(sup: Supervisor, results: list[tuple[Worker, int, Any]]) -> Response:
    from xcon.control.server import Response

    texts = [(w.index, doc) for w, status, doc in results if status == 200 and isinstance(doc, str)]
    server = sup.server
    refused = getattr(sup.api, "access", None)
    control: list[tuple[str, str, str, Sequence[tuple[str, float]]]] = []
    if server is not None:
        reasons = refused.refused if refused is not None else {}
        control = [
            (
                "xcon_control_refused_requests_total",
                "counter",
                "Control API requests refused: no or a wrong token, or not this client's to make.",
                [(f'reason="{r}"', reasons.get(r, 0)) for r in ("token", "forbidden")],
            ),
            (
                "xcon_control_accept_errors_total",
                "counter",
                "Connections to the control API not accepted for lack of descriptors or memory.",
                [("", server.accept_errors)],
            ),
            (
                "xcon_control_streams",
                "gauge",
                "Live streams (captures, events) the control API is sending.",
                [("", server.streams)],
            ),
            (
                "xcon_control_streams_refused_total",
                "counter",
                "Live streams refused (503): the most run already.",
                [("", server.streams_refused)],
            ),
            (
                "xcon_control_streams_stalled_total",
                "counter",
                "Live streams ended because their client read nothing for too long.",
                [("", server.streams_stalled)],
            ),
        ]
    own = control + [
        (
            "xcon_workers",
            "gauge",
            "Worker processes xcon runs (--workers).",
            [("", len(sup.workers))],
        ),
        (
            "xcon_worker_up",
            "gauge",
            "1 while the worker answers, 0 while it is being started.",
            [(f'worker="{w.index}"', int(w.up)) for w in sup.workers],
        ),
        (
            "xcon_worker_restarts_total",
            "counter",
            "Times the worker ended and was started again.",
            [(f'worker="{w.index}"', w.restarts) for w in sup.workers],
        ),
    ]
    body = merge_metrics(texts, own, leave_out=CONTROL_FAMILIES)
    return Response(200, body.encode(), "text/plain; version=0.0.4; charset=utf-8")


def merge_metrics(
    texts: list[tuple[int, str]],
    own: Sequence[tuple[str, str, str, Sequence[tuple[str, float]]]] = (),
    leave_out: frozenset[str] = frozenset(),
) -> str:
    """The workers' Prometheus texts as one: each family once (its HELP and
    TYPE, then every worker's samples), each sample labelled ``worker``;
    the families ``leave_out`` names are left out; then ``own``: (name,
    type, help, [(labels, value)])."""
    families: dict[str, list[str]] = {}
    heads: dict[str, list[str]] = {}
    for index, text in texts:
        family = ""
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    head = heads.setdefault(family, [])
                    if len(head) < 2 and not any(h.split(None, 2)[1] == parts[1] for h in head):
                        head.append(line)
                    families.setdefault(family, [])
                continue
            families.setdefault(family, []).append(_labelled(line, index))
    out: list[str] = []
    for family, samples in families.items():
        if family.removesuffix("_total") in leave_out:
            continue
        out += heads.get(family, [])
        out += samples
    for name, kind, text, values in own:
        out.append(f"# HELP {name} {text}")  # text format 0.0.4: a counter's family ends in _total
        out.append(f"# TYPE {name} {kind}")
        out += [
            f"{name}{{{labels}}} {value}" if labels else f"{name} {value}"
            for labels, value in values
        ]
    return "\n".join(out) + "\n"


def _labelled(sample: str, index: int) -> str:
    label = f'worker="{index}"'
    brace = sample.find("{")
    space = sample.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        close = sample.index("}", brace)
        inside = sample[brace + 1 : close].strip()
        sep = "," if inside and not inside.endswith(",") else ""
        return f"{sample[:close]}{sep}{label}{sample[close:]}"
    return f"{sample[:space]}{{{label}}}{sample[space:]}"


# -- the API -------------------------------------------------------------------------


class SupervisorAPI:
    """The control API's handler in the supervisor: the access check as in
    one process, then each route forwarded to the worker that has the link,
    or to every worker with the answers merged."""

    def __init__(self, sup: Supervisor, access: Any) -> None:
        self.sup = sup
        self.access = access

    def __call__(self, req: Request) -> Response | Pending | Streaming:
        from xcon.control.access import Refused
        from xcon.control.api import checked_route, root_only
        from xcon.control.server import Pending, Response, error_response

        found = checked_route(self.access, req, self.sup.owner.__contains__)
        if isinstance(found, Response):
            return found
        route, name = found
        target = route.target(name)
        if req.query:
            target += "?" + urlencode(req.query, doseq=True)
        body = req.body or None
        sup = self.sup
        handler = route.handler
        if handler in ("restart", "handover"):
            try:
                what = "restart xcon" if handler == "restart" else "hand xcon's connections over"
                root_only(self.access, req, what)
            except Refused as e:
                return error_response(e.status, str(e))
        pending = Pending()
        if handler == "health":
            code, message = sup.health_status()
            connected, total, ready = sup.counts()
            from xcon.control.server import json_response

            return json_response(
                200,
                {
                    "code": code,
                    "message": message,
                    "connected": connected,
                    "ready": ready,
                    "total": total,
                    "links": sum(w.links for w in sup.workers),
                    "file_error": sup.health.error if sup.health is not None else None,
                    "workers": [
                        {"worker": w.index, "pid": w.pid, "up": w.up, "restarts": w.restarts}
                        for w in sup.workers
                    ],
                },
            )
        if handler == "handover":
            from xcon.control.api import handover_socket
            from xcon.control.server import json_response
            from xcon.errors import LinkError

            try:
                sup.give(handover_socket(req))
            except LinkError as e:
                return error_response(e.status, str(e))
            except ValueError as e:
                return error_response(400, str(e))
            return json_response(202, {"handing_over": True, "pid": os.getpid()})
        if handler == "restart":
            sup.restart(pending)
        elif handler == "reload":
            sup.reload(pending)
        elif handler == "list_links":
            sup._fan_out("GET", target, None, pending, _merge_links)
        elif handler == "status":
            sup._fan_out("GET", target, None, pending, _merge_status)
        elif handler == "metrics":
            sup._fan_out("GET", target, None, pending, _merge_metrics)
        elif handler == "reset_counters":
            sup._fan_out("POST", target, body, pending, _merge_reset)
        elif handler == "events":
            return self._stream(req, list(sup.workers), target, pending)
        elif handler == "add_link":
            self._add(target, body, pending)
        elif handler == "capture_to_file":
            self._capture_to_file(req, target, body, name, pending)
        elif handler == "capture_live":
            return self._stream(req, self._candidates(name), target, pending, first=True)
        else:
            self._to_owner(req.method, target, body, name, pending, handler == "remove_link")
        return pending

    def _candidates(self, name: str) -> list[Worker]:
        """The workers to ask about link ``name``: the one that has it first."""
        first = self.sup.owner.get(name)
        if first is None:
            i = owner_of(name, [[*w.names, *w.live] for w in self.sup.workers])
            first = self.sup.workers[i] if i is not None else None
        rest = [w for w in self.sup.workers if w is not first]
        return ([first] if first is not None else []) + rest

    def _to_owner(
        self,
        method: str,
        target: str,
        body: bytes | None,
        name: str,
        pending: Pending,
        removing: bool = False,
    ) -> None:
        """To the worker that has link ``name`` (the one known first, then the
        others while they say "no such link")."""
        from xcon.control.server import Response, error_response

        sup = self.sup
        assert sup.engine is not None
        workers = self._candidates(name)

        def ask() -> tuple[Worker | None, int, bytes, str]:
            answer: tuple[Worker | None, int, bytes, str] = (None, 0, b"", "")
            for w in workers:
                try:
                    status, data, ctype = call(w, method, target, body)
                except WorkerError as e:
                    if answer[0] is None:
                        answer = (
                            None,
                            503,
                            json.dumps({"error": str(e)}).encode(),
                            "application/json",
                        )
                    continue
                if status != 404 or not _no_link(data):
                    return w, status, data, ctype
                if answer[0] is None and answer[1] != 503:
                    answer = (w, status, data, ctype)
            return answer

        def done(result: object, err: BaseException | None) -> None:
            if err is not None:
                pending.resolve(error_response(500, f"{type(err).__name__}: {err}"))
                return
            w, status, data, ctype = cast("tuple[Worker | None, int, bytes, str]", result)
            if w is not None and status < 300:
                if removing:
                    sup.owner.pop(name, None)
                    w.live.pop(name, None)
                    w.links = max(0, w.links - 1)
                else:
                    sup.owner[name] = w
                if method == "GET" and "json" in ctype:  # one link's detail says its worker
                    with contextlib.suppress(ValueError, TypeError):
                        doc = json.loads(data)
                        if isinstance(doc, dict) and "ends" in doc:
                            doc["worker"] = w.index
                            data = json.dumps(doc, indent=1).encode() + b"\n"
            pending.resolve(Response(status, data, ctype or "application/json"))

        sup.engine.run_in_thread(ask, done)

    def _capture_to_file(
        self, req: Request, target: str, body: bytes | None, name: str, pending: Pending
    ) -> None:
        """A capture to a file no worker writes yet (each worker checks its own
        captures; the supervisor checks the others' first)."""
        from xcon.control.server import error_response

        sup = self.sup
        assert sup.engine is not None
        try:
            doc = req.json()
            file = doc.get("file") if isinstance(doc, dict) else None
        except ValueError:
            file = None
        if not isinstance(file, str) or not file:
            self._to_owner(req.method, target, body, name, pending)
            return
        from xcon.capture.manager import DEFAULT_DIR

        directory = os.path.realpath(sup.setup.capture_dir or DEFAULT_DIR)
        real = os.path.join(directory, file)

        def writers() -> list[str]:
            for w in sup.workers:
                try:
                    status, data, _ = call(w, "GET", "/links")
                except WorkerError:
                    continue
                if status != 200:
                    continue
                for link in json.loads(data).get("links", []):
                    for cap in link.get("captures") or []:
                        if cap.get("state", "running") != "running":
                            continue
                        paths = [cap.get("file"), *(cap.get("files") or [])]
                        if real in {os.path.realpath(p) for p in paths if p}:
                            return [
                                f"{file} is being written by capture {cap['id']} of {link['name']}"
                            ]
            return []

        def checked(found: object, err: BaseException | None) -> None:
            if isinstance(found, list) and found:
                pending.resolve(error_response(409, found[0]))
            else:
                self._to_owner(req.method, target, body, name, pending)

        sup.engine.run_in_thread(writers, checked)

    def _add(self, target: str, body: bytes | None, pending: Pending) -> None:
        from xcon.control.server import Response, error_response

        sup = self.sup
        assert sup.engine is not None
        try:
            spec = json.loads(body or b"{}").get("spec", "")
        except (ValueError, AttributeError):
            spec = ""
        w = sup.least_loaded(spec if isinstance(spec, str) else "")

        def ask() -> tuple[int, bytes, str]:
            return call(w, "POST", target, body)

        def done(result: object, err: BaseException | None) -> None:
            if err is not None:
                pending.resolve(error_response(503, str(err)))
                return
            status, data, ctype = cast("tuple[int, bytes, str]", result)
            if status == 201:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    doc = json.loads(data)
                    doc["worker"] = w.index
                    sup.owner[doc["name"]] = w
                    w.live[doc["name"]] = body or b""
                    w.links += 1
                    data = json.dumps(doc, indent=1).encode() + b"\n"
            pending.resolve(Response(status, data, ctype or "application/json"))

        sup.engine.run_in_thread(ask, done)

    def _stream(
        self,
        req: Request,
        workers: list[Worker],
        target: str,
        pending: Pending,
        first: bool = False,
    ) -> Pending:
        """A streamed answer from the workers: from the first that has the
        link (``first``: a live capture), or from all of them, line by line
        (the events)."""
        sup = self.sup
        assert sup.engine is not None
        relay = Relay(sup.engine)
        threading.Thread(
            target=relay.run, args=(workers, target, pending, first), name="relay", daemon=True
        ).start()
        return pending


def _read(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes from a worker, or b"" when it went away first."""
    from xcon.handover import HandoverError, recv_exact

    try:
        return recv_exact(sock, n)
    except HandoverError:
        return b""


def _no_link(answer: bytes) -> bool:
    """A worker's 404 says it has no such link (another worker may)."""
    return answer.lstrip().startswith(b"{") and b'"no link ' in answer


class Relay:
    """A streamed body passed on from workers (a :class:`~xcon.control.server.StreamBody`):
    threads read the workers' streams and queue pieces, at most
    :data:`DEPTH` of them, waiting while the queue is full (so a slow client
    holds the worker's stream back, which bounds itself)."""

    DEPTH = 64

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.content_type = "application/octet-stream"
        self.ended = False
        self._pieces: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._wake: Callable[[], None] | None = None
        self._gone = False
        self._live: list[Any] = []
        self._running = 0

    # -- the loop's side -------------------------------------------------------------
    def pull(self) -> bytes | None:
        with self._cond:
            if not self._pieces:
                return None
            piece = self._pieces.popleft()
            self._cond.notify_all()
            return piece

    def set_wakeup(self, wake: Callable[[], None] | None) -> None:
        with self._cond:
            self._wake = wake
            ready = bool(self._pieces) or self.ended
        if wake is not None and ready:
            wake()

    def gone(self) -> None:
        with self._cond:
            self._gone = True
            live = list(self._live)
            self._cond.notify_all()
        for resp in live:
            with contextlib.suppress(OSError):
                resp.sock.shutdown(2)

    # -- the threads' side -----------------------------------------------------------
    def _put(self, piece: bytes) -> bool:
        with self._cond:
            while len(self._pieces) >= self.DEPTH and not self._gone:
                self._cond.wait(1.0)
            if self._gone:
                return False
            self._pieces.append(piece)
            wake = self._wake
        if wake is not None:
            self.engine.call_soon_threadsafe(wake)
        return True

    def _end(self) -> None:
        with self._cond:
            self._running -= 1
            if self._running > 0:
                return
            self.ended = True
            wake = self._wake
        if wake is not None:
            self.engine.call_soon_threadsafe(wake)

    def run(self, workers: list[Worker], target: str, pending: Pending, first: bool) -> None:
        from xcon.control.server import Response, Streaming
        from xcon.control.transport import Client, Unreachable

        opened = []
        refusal: tuple[int, bytes, str] | None = None
        for w in workers:
            try:
                live = Client(path=w.sock, timeout=CALL_TIMEOUT).stream("GET", target)
                while live.status == 0 and not live.complete and live.receive():
                    pass
            except Unreachable as e:
                refusal = refusal or (
                    503,
                    json.dumps({"error": str(e)}).encode(),
                    "application/json",
                )
                continue
            if live.status != 200:
                while not live.complete and live.receive():
                    pass
                data = b"".join(live.take())
                live.close()
                if first and live.status == 404 and _no_link(data):
                    refusal = refusal or (404, data, "application/json")
                    continue
                refusal = (live.status, data, live.headers.get("content-type", "application/json"))
                if first:
                    break
                continue
            opened.append((w, live))
            if first:
                break
        if not opened:
            status, data, ctype = refusal or (
                503,
                b'{"error": "no worker is running"}\n',
                "application/json",
            )
            self.engine.call_soon_threadsafe(lambda: pending.resolve(Response(status, data, ctype)))
            return
        self.content_type = opened[0][1].headers.get("content-type", self.content_type)
        self._live = [live for _w, live in opened]
        self._running = len(opened)
        streaming = Streaming(self)
        self.engine.call_soon_threadsafe(lambda: pending.resolve(streaming))
        for w, live in opened[1:]:
            threading.Thread(
                target=self._follow, args=(live, not first), name=f"relay-w{w.index}", daemon=True
            ).start()
        self._follow(opened[0][1], not first)

    def _follow(self, live: Any, by_line: bool) -> None:
        from xcon.control.transport import Unreachable

        partial = b""
        try:
            going = True
            while going:
                for piece in live.take():
                    if by_line:
                        piece, _, partial = (partial + piece).rpartition(b"\n")
                        if not piece:
                            continue
                        piece += b"\n"
                    if piece and not self._put(piece):
                        return
                if not going:
                    break
                try:
                    going = live.receive()
                except Unreachable:
                    going = False
            for piece in live.take():
                if piece and not self._put(piece):
                    return
        finally:
            with contextlib.suppress(OSError):
                live.close()
            self._end()
