"""Handing a running xcon's connections to the next xcon, without a frame
lost and without the routers seeing a disconnect (docs/restart.md).

Two ways, one parcel:

* ``xcon --takeover ARGS`` (a new process): it builds its links from ARGS,
  then asks the running xcon, through its control socket, to hand over
  (``POST /handover`` with the path of a unix socket it listens on).  The
  running one *gives*: it stops reading every port (:meth:`Giver.freeze`),
  waits until nothing it holds is still on its way out (frames queued for a
  slow router, a delay line), packs its state and passes its descriptors
  over that socket (``SCM_RIGHTS``), and exits 0 once the new one says it
  has taken them; if the new one fails first, it reads again and carries on.
* In place (``xcon ctl restart`` or SIGUSR2): the same parcel, written to a
  memory file whose descriptor, with every descriptor it names, survives
  ``exec`` of the same command line (a container whose PID 1 is xcon keeps
  its PID).

What travels: per link end of a kind that can be handed over (a connected
TCP or unix stream to a router: ``HOST/N``, ``tcp:``, ``unix:``; a UDP end's
socket: ``udp:``), its socket
and the bytes read from it that were not sent yet (whole frames a slow
router was not taking, and the partial frame in flight), its counters and
peer; per link, its directions' counters, whether it is pulled, its
impairments (words and seed) and its routers' carrier as last set; the
control API's listening sockets and the health file's lock.  ``--takeover``
refuses links with ends of other kinds (their descriptors are the running
xcon's); an in-place restart by ``exec`` closes and opens them again.  Captures end in the old xcon (their files are
complete); a flap schedule does not carry over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xcon.app import Xcon
    from xcon.control.sockets import Bound
    from xcon.lockfile import LockFile
    from xcon.ports import Port

log = logging.getLogger("xcon")

#: The parcel's format; a parcel of another version is refused.
VERSION = 1
#: Descriptors per message (the kernel's SCM_MAX_FD is 253).
FDS_PER_MESSAGE = 250
#: Longest the giver waits for what it holds to leave before giving up.
DRAIN_WAIT = 2.0
#: Longest the giver waits for the taker to say it took the parcel.
ACK_WAIT = 10.0
#: Longest the taker waits for the parcel.
PARCEL_WAIT = 10.0
#: The environment variable naming the parcel's memory file after ``exec``.
ENV = "XCON_HANDOVER_FD"
#: The environment variable naming, after ``exec``, the socket to the forked
#: child that forwards meanwhile and its pid (``FD:PID``).
ENV_FROM = "XCON_HANDOVER_FROM"
#: What the new image says on that socket once it is ready to take over.
READY = b"ready\n"
#: The taker's answer once it holds everything.
TAKEN = b"taken\n"


class HandoverError(Exception):
    """A handover that cannot be done (one line for the user)."""


# -- what can be handed over ----------------------------------------------------------
def handable_socket(port: Port) -> Any:
    """The socket ``port`` can pass on (a router connection's, a UDP end's), or None."""
    return port.handable_socket() if port.up else None


# -- the giver ------------------------------------------------------------------------
class Giver:
    """The running xcon's side: freeze, drain, pack, pass, exit (or thaw)."""

    def __init__(self, app: Xcon) -> None:
        # What packing and passing use, loaded before the links go dark.
        import base64  # noqa: F401
        import json  # noqa: F401

        self.app = app
        self.frozen = False

    def freeze(self, on: bool) -> None:
        """Stop (or resume) reading every port: what arrives waits in the kernel."""
        self.frozen = on
        for link in self.app.links.values():
            for port in link.bridge.ports:
                port.freeze(on)

    def drained(self) -> bool:
        """Nothing waits to be sent: no flow blocked on its destination, no
        stage (delay line, rate queue) holding frames."""
        for link in self.app.links.values():
            for d in link.bridge.directions():
                flow = d.flow
                if flow.blocked or (flow.stage is not None and flow.stage.holding()):
                    return False
        return True

    def wait_drained(self, done: Callable[[str], None]) -> None:
        """Call ``done("")`` once drained, or ``done(reason)`` after :data:`DRAIN_WAIT`."""
        deadline = time.monotonic() + DRAIN_WAIT
        eng = self.app.engine

        def check() -> None:
            if self.drained():
                done("")
            elif time.monotonic() > deadline:
                done(f"frames still queued after {DRAIN_WAIT:g} s (a router is not reading)")
            else:
                eng.call_later(0.001, check)

        eng.call_soon(check)  # never inside the caller: the API answers first

    def pack(self) -> tuple[dict[str, Any], list[int]]:
        """The parcel: the state (JSON-able) and the descriptors it names by index."""
        import base64

        app = self.app
        fds: list[int] = []

        def fd(n: int) -> int:
            fds.append(n)
            return len(fds) - 1

        links: dict[str, Any] = {}
        for name, link in app.links.items():
            ports = {}
            for port in link.bridge.ports:
                sock = handable_socket(port)
                if sock is None:
                    continue
                buf = port.inbuf
                ports[port.name] = {
                    "fd": fd(sock.fileno()),
                    "pending": base64.b64encode(bytes(buf.mv[buf.start : buf.end])).decode(),
                    "peer": port.peer,
                    "stats": port_stats(port),
                    "extra": port.handover_state(),
                }
            carriers = app.carriers.of(name) if app.carriers is not None else {}
            links[name] = {
                "ports": ports,
                "flows": {
                    d.flow.stats.name: flow_stats(d.flow.stats) for d in link.bridge.directions()
                },
                "admin": link.p2p.admin_state() if link.p2p is not None else None,
                "impairs": app.impairment_words(link),
                "carrier": {end: ec.state for end, ec in carriers.items()},
            }
        control: list[dict[str, Any]] = []
        for b in app.control_sockets():
            control.append({"fd": fd(b.sock.fileno()), "address": b.address, "unlink": b.unlink})
        lock = None
        if app.lock is not None and app.lock.held:
            lock = {"fd": fd(app.lock.fileno()), "path": app.lock.path}
        state = {
            "version": VERSION,
            "pid": os.getpid(),
            "seed": app.seed,
            "links": links,
            "control": control,
            "lock": lock,
        }
        return state, fds

    def gone(self) -> None:
        """The taker holds everything: end this process without touching
        what it handed over (no carrier change, no socket file removed, the
        health file left to the new xcon)."""
        self.app.handed_over()


def port_stats(port: Port) -> dict[str, Any]:
    s = port.stats
    return {
        "connects": s.connects,
        "reconnects": s.reconnects,
        "disconnects": s.disconnects,
        "protocol_errors": s.protocol_errors,
        "partial_bytes": s.partial_bytes,
        "last_error": s.last_error,
        "rx_bytes": getattr(port, "rx_bytes", 0),
    }


def flow_stats(fs: Any) -> dict[str, Any]:
    return {
        "frames": fs.frames,
        "bytes": fs.bytes,
        "drops": dict(fs.drops),
        "events": dict(fs.events),
    }


# -- passing the parcel ---------------------------------------------------------------
def send_parcel(sock: socket.socket, state: dict[str, Any], fds: list[int]) -> None:
    """The state as one length-prefixed JSON message, then the descriptors
    in messages of :data:`FDS_PER_MESSAGE` (each with one byte)."""
    import json

    body = json.dumps(state).encode()
    head = len(body).to_bytes(4, "big") + len(fds).to_bytes(4, "big")
    sock.sendall(head + body)
    for i in range(0, len(fds), FDS_PER_MESSAGE):
        socket.send_fds(sock, [b"F"], fds[i : i + FDS_PER_MESSAGE])


def recv_parcel(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    import json

    head = recv_exact(sock, 8)
    size, nfds = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
    state = json.loads(recv_exact(sock, size))
    fds: list[int] = []
    while len(fds) < nfds:
        msg, got, _flags, _addr = socket.recv_fds(sock, 1, FDS_PER_MESSAGE)
        if not msg:
            raise HandoverError("the running xcon closed the handover before every descriptor")
        fds.extend(got)
    if state.get("version") != VERSION:
        raise HandoverError(
            f"the running xcon hands over version {state.get('version')}, not {VERSION}"
        )
    return state, fds


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise HandoverError("the running xcon closed the handover early")
        out += chunk
    return bytes(out)


# -- parcels of several processes (--workers) -------------------------------------------
def merge_parcels(
    parts: list[tuple[dict[str, Any], list[int]]],
) -> tuple[dict[str, Any], list[int], list[int]]:
    """The links of several parcels (each worker's) as one parcel's: (state,
    descriptors, descriptors left out: the workers' own control sockets and
    locks, for the caller to close).  Each port's ``fd`` is renumbered.  The state has no control sockets and no
    lock: the caller adds its own."""
    fds: list[int] = []
    left: list[int] = []
    links: dict[str, Any] = {}
    seed = None
    for state, theirs in parts:
        used = set()
        for name, saved in state["links"].items():
            for ps in saved["ports"].values():
                used.add(ps["fd"])
                fds.append(theirs[ps["fd"]])
                ps["fd"] = len(fds) - 1
            links[name] = saved
        left += [n for i, n in enumerate(theirs) if i not in used]
        if seed is None:
            seed = state.get("seed")
    state = {"version": VERSION, "pid": os.getpid(), "seed": seed, "links": links}
    return dict(state, control=[], lock=None), fds, left


def split_parcel(
    state: dict[str, Any], fds: list[int], shares: list[list[str]]
) -> list[tuple[dict[str, Any], list[int]]]:
    """One parcel per share of link names (each worker's), with the links of
    ``state`` it names; no control sockets, no lock."""
    out = []
    for names in shares:
        mine: list[int] = []
        links = {}
        for name in names:
            saved = state["links"].get(name)
            if saved is None:
                continue
            saved = dict(saved, ports={k: dict(v) for k, v in saved["ports"].items()})
            for ps in saved["ports"].values():
                mine.append(fds[ps["fd"]])
                ps["fd"] = len(mine) - 1
            links[name] = saved
        sub = {k: v for k, v in state.items() if k not in ("links", "control", "lock")}
        out.append((dict(sub, links=links, control=[], lock=None), mine))
    return out


# -- in place: exec -------------------------------------------------------------------
def write_exec_parcel(state: dict[str, Any], fds: list[int]) -> int:
    """The parcel in a memory file for the same process after ``exec``: the
    descriptors keep their numbers (made inheritable), the file names them."""
    import json

    state = dict(state, fds=fds)
    mfd = os.memfd_create("xcon-handover", 0)  # inheritable: no MFD_CLOEXEC
    os.write(mfd, json.dumps(state).encode())
    os.lseek(mfd, 0, os.SEEK_SET)
    for n in fds:
        os.set_inheritable(n, True)
    return mfd


def read_exec_parcel(value: str) -> tuple[dict[str, Any], list[int]]:
    import json

    try:
        mfd = int(value)
        with os.fdopen(mfd, "rb") as f:
            state = json.loads(f.read())
    except (ValueError, OSError) as e:
        raise HandoverError(f"{ENV}={value!r}: not a handover parcel ({e})") from None
    if state.get("version") != VERSION:
        raise HandoverError(f"{ENV}: parcel version {state.get('version')}, not {VERSION}")
    fds = [int(n) for n in state.pop("fds")]
    for n in fds:
        os.set_inheritable(n, False)
    return state, fds


# -- the taker ------------------------------------------------------------------------
class Parcel:
    """What a taker received: the state and the descriptors (see :class:`Giver`)."""

    def __init__(self, state: dict[str, Any], fds: list[int]) -> None:
        self.state = state
        self.fds = fds
        self._used: set[int] = set()

    def take_fd(self, index: int) -> int:
        self._used.add(index)
        return self.fds[index]

    def control(self) -> list[Bound]:
        from xcon.control.sockets import Bound

        out = []
        for c in self.state["control"]:
            n = self.take_fd(c["fd"])
            sock = socket.socket(fileno=n)  # family and type read from the descriptor
            out.append(Bound(sock, c["address"], c["unlink"]))
        return out

    def lock(self) -> LockFile | None:
        from xcon.lockfile import LockFile

        lk = self.state.get("lock")
        if lk is None:
            return None
        fd = self.take_fd(lk["fd"])
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return LockFile(lk["path"], fd)

    def apply(self, app: Xcon) -> list[str]:
        """Give the links of ``app`` (built, not started) what the parcel holds
        for links of the same name; returns one line per link taken."""
        import base64

        taken = []
        for name, saved in self.state["links"].items():
            link = app.links.get(name)
            if link is None:
                continue
            by_name = {p.name: p for p in link.bridge.ports}
            moved = 0
            for pname, ps in saved["ports"].items():
                port = by_name.get(pname)
                if port is None:
                    continue
                sock = socket.socket(fileno=self.take_fd(ps["fd"]))
                pending = base64.b64decode(ps["pending"])
                port.adopt(sock, pending, ps["peer"], ps["stats"], ps.get("extra"))
                moved += 1
            for d in link.bridge.directions():
                fs = saved["flows"].get(d.flow.stats.name)
                if fs is not None:
                    st = d.flow.stats
                    st.frames, st.bytes = fs["frames"], fs["bytes"]
                    st.drops.update(fs["drops"])
                    st.events.update(fs["events"])
            app.restore_link(link, saved)
            taken.append(f"{name}: {moved} of {len(link.bridge.ports)} ends taken over")
        return taken

    def close_unused(self) -> None:
        """Close what no link of this xcon took (links it no longer has)."""
        for i, n in enumerate(self.fds):
            if i not in self._used:
                with contextlib.suppress(OSError):
                    os.close(n)


def take_from(value: str, timeout: float = PARCEL_WAIT) -> tuple[Parcel, socket.socket, int]:
    """After an in-place restart: say :data:`READY` to the forked child
    (``value`` is :data:`ENV_FROM`'s ``FD:PID``) and receive its parcel;
    returns it, the socket to answer on, and the child's pid (to reap)."""
    try:
        fd_text, _, pid_text = value.partition(":")
        sock = socket.socket(fileno=int(fd_text))
        pid = int(pid_text)
    except (ValueError, OSError) as e:
        raise HandoverError(f"{ENV_FROM}={value!r}: not a handover ({e})") from None
    try:
        sock.settimeout(timeout)
        sock.sendall(READY)
        state, fds = recv_parcel(sock)
    except (OSError, HandoverError):
        sock.close()
        raise
    return Parcel(state, fds), sock, pid


def take(control_path: str, timeout: float = PARCEL_WAIT) -> tuple[Parcel, socket.socket]:
    """Ask the xcon listening on ``control_path`` to hand over; returns the
    parcel and the connection to answer on (:data:`TAKEN`, or close it to
    let the running xcon carry on)."""
    import json

    from xcon.control.transport import Client, Unreachable

    path = os.path.abspath(control_path)
    here = f"{path}.takeover.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(here)
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        lst.bind(here)
    finally:
        os.umask(old)
    try:
        lst.listen(1)
        lst.settimeout(timeout)
        try:
            status, body, _ = Client(path=path).request("POST", "/handover", {"socket": here})
        except Unreachable as e:
            raise HandoverError(f"no xcon to take over: {e}") from None
        if status >= 300:
            try:
                why = json.loads(body).get("error", status)
            except ValueError:
                why = status
            raise HandoverError(f"the running xcon refused to hand over: {why}")
        try:
            conn, _ = lst.accept()
        except TimeoutError:
            raise HandoverError(
                f"the running xcon did not hand over within {timeout:g} s"
            ) from None
        conn.settimeout(timeout)
        state, fds = recv_parcel(conn)
        return Parcel(state, fds), conn
    finally:
        lst.close()
        with contextlib.suppress(OSError):
            os.unlink(here)
