"""Real routing daemons on the qemu routers: BIRD with OSPF and BFD.

One :class:`Bird` runs inside a :class:`~xcon.testing.qemu.QemuRouter`'s
namespace (``ip netns exec NS bird -f -c CONF -s SOCK -P PID``, a child of the
test) and speaks OSPFv2 (area 0, point-to-point, hello 1 s, dead 4 s) over the
router's tap with BFD on the neighbour (``min rx/tx interval`` ``bfd_ms``,
multiplier 3: a link dark for 3 x ``bfd_ms`` takes the session down and OSPF's
adjacency with it).  Each advertises ``192.0.2.N/32`` (N: the last byte of its
router id) from a ``protocol static`` exported into OSPF, so routes are
exchanged.  BIRD logs every BFD session and OSPF neighbour state change to its
own log file (``debug { states, events }``, times to the millisecond); that log
is what counts flaps.  :func:`missing` names ``bird2`` where BIRD is not
installed; :func:`routing_marks` is the ``pytestmark`` of such a module.

Two routers joined by xcon, converged, then "did this change flap anything":

    pair = routed_pair(lab, bfd_ms=50)   # routers, BIRDs, xcon --p2p LINK; Full and Up
    mark = pair.mark()
    ...                                  # change, reload or hand over xcon
    pair.wait_through()                  # a ping crosses the link after the change
    assert pair.flaps_since(mark) == []

Count only after traffic crossed the link again (:meth:`RoutedPair.wait_through`),
never after a sleep: a dark spell long enough to take BFD down is logged during
the spell, so once a frame has crossed after the change every flap it caused is
in the logs.  Every :class:`Bird` made through :func:`start_bird` (and so
:func:`routed_pair`) is stopped, its files removed, when the lab closes, also
after a failure.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from xcon.testing import qemu
from xcon.testing.control import wait_api
from xcon.testing.ping import ping
from xcon.testing.process import XconProcess
from xcon.testing.qemu import Lab, QemuRouter, netns_exec
from xcon.testing.wait import wait_until

__all__ = [
    "Bird",
    "BfdSession",
    "RoutedPair",
    "Transition",
    "missing",
    "routed_pair",
    "routing_marks",
    "start_bird",
]

TOOLS = (("bird", "bird2"), ("birdc", "bird2"))

#: A state change in BIRD's log: ``bfd1: Session to 10.0.0.2 changed state from Up to Down``
#: or ``ospf1: Neighbor 10.0.0.2 on tap changed state from Full to Down``.
_CHANGE = re.compile(
    r"^(\S+ \S+) <TRACE> (bfd|ospf)\d*: (?:Session to|Neighbor) (\S+)(?: on \S+)? "
    r"changed state from (\S+) to (\S+)$",
    re.M,
)
_BFD_ROW = re.compile(r"^(\S+)\s+(\S+)\s+(Up|Down|Init|AdminDown)\s+(.+?)\s+([\d.]+)\s+([\d.]+)$")


def missing() -> str | None:
    """Why BIRD on qemu routers cannot run here (qemu's reasons, or ``bird2``), or None."""
    return qemu.missing(*TOOLS)


def routing_marks(timeout: int = 120) -> list:
    """``pytestmark`` of a module of tests with BIRD on qemu routers (see qemu_marks)."""
    return qemu.qemu_marks(timeout, *TOOLS)


@dataclass(frozen=True)
class Transition:
    """One state change BIRD logged: ``protocol`` is ``bfd`` or ``ospf``."""

    at: float  # the time BIRD logged it (time.time(), ms resolution)
    protocol: str
    peer: str  # the BFD peer's address, or the OSPF neighbour's router id
    old: str
    new: str

    @property
    def flap(self) -> bool:
        """A BFD session that left Up, or an OSPF adjacency that left Full."""
        return self.old == ("Up" if self.protocol == "bfd" else "Full")


@dataclass(frozen=True)
class BfdSession:
    """A row of ``birdc show bfd sessions``."""

    address: str
    interface: str
    state: str
    since: str
    interval: float
    timeout: float


class Bird:
    """BIRD in ``router``'s namespace, its files under ``workdir/bird-TAP``."""

    def __init__(self, router: QemuRouter, workdir: Path | str, bfd_ms: int = 50) -> None:
        self.router, self.bfd_ms = router, bfd_ms
        self.dir = Path(workdir) / f"bird-{router.tap}"
        self.conf, self.sock = self.dir / "bird.conf", self.dir / "bird.ctl"
        self.logfile, self.pidfile = self.dir / "bird.log", self.dir / "bird.pid"
        self.router_id = router.ip
        #: The prefix this router advertises into OSPF.
        self.prefix = f"192.0.2.{router.ip.rsplit('.', 1)[1]}/32"
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        tap = self.router.tap
        return f"""\
log "{self.logfile}" all;
timeformat log "%F %T.%3f";
router id {self.router_id};
protocol device {{ }}
protocol static {{ ipv4; route {self.prefix} blackhole; }}
protocol bfd {{
  debug {{ states, events }};
  interface "{tap}" {{
    min rx interval {self.bfd_ms} ms; min tx interval {self.bfd_ms} ms; multiplier 3;
  }};
}}
protocol ospf v2 {{
  debug {{ states, events }};
  ipv4 {{ import all; export where source = RTS_STATIC; }};
  area 0 {{ interface "{tap}" {{ type ptp; hello 1; dead 4; bfd on; }}; }};
}}
"""

    def start(self) -> Bird:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config())
        self.logfile.touch()
        cmd = ["bird", "-f", "-c", str(self.conf), "-s", str(self.sock), "-P", str(self.pidfile)]
        with open(self.dir / "stderr", "wb") as err:
            self.proc = subprocess.Popen(
                netns_exec(self.router.netns, *cmd), stdout=err, stderr=subprocess.STDOUT
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                text = (self.dir / "stderr").read_text(errors="replace")
                raise RuntimeError(f"bird exited ({self.proc.returncode}): {text.strip()}")
            return self.sock.exists()

        wait_until(ready, 10, f"bird's control socket {self.sock}")
        return self

    def stop(self) -> None:
        """Stop BIRD (SIGTERM, then SIGKILL) and remove its files."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- asking BIRD ----------------------------------------------------------------
    def birdc(self, command: str) -> str:
        """``birdc -s SOCK COMMAND``'s output (raises with it when birdc fails)."""
        r = subprocess.run(
            ["birdc", "-s", str(self.sock), *command.split()],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if r.returncode != 0:
            raise RuntimeError(f"birdc {command} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r.stdout

    def bfd_sessions(self) -> list[BfdSession]:
        """The BFD sessions, from ``birdc show bfd sessions``."""
        rows = (
            _BFD_ROW.match(line.strip()) for line in self.birdc("show bfd sessions").splitlines()
        )
        return [BfdSession(m[1], m[2], m[3], m[4], float(m[5]), float(m[6])) for m in rows if m]

    def converged(self) -> bool:
        """The OSPF neighbour is Full and its BFD session Up."""
        full = re.search(r"\sFull/", self.birdc("show ospf neighbors"))
        return bool(full) and any(s.state == "Up" for s in self.bfd_sessions())

    def wait_converged(self, timeout: float = 20) -> float:
        """Wait for OSPF Full and BFD Up; returns the seconds it took.  Raises
        WaitTimeout with birdc's view and the log's changes."""
        t0 = time.monotonic()
        wait_until(self.converged, timeout, self._view)
        return time.monotonic() - t0

    def _view(self) -> str:
        text = self.birdc("show ospf neighbors") + self.birdc("show bfd sessions")
        return f"OSPF Full and BFD Up in {self.router.netns}:\n{text}{self.transitions_since(0)}"

    # -- the log ----------------------------------------------------------------------
    def mark(self) -> int:
        """A point in the log: what :meth:`flaps_since` counts from."""
        return self.logfile.stat().st_size

    def transitions_since(self, mark: int) -> list[Transition]:
        """Every BFD session and OSPF neighbour state change logged after ``mark``."""
        with open(self.logfile, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return [
            Transition(datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f").timestamp(), *m.groups()[1:])
            for m in _CHANGE.finditer(text)
        ]

    def flaps_since(self, mark: int) -> list[Transition]:
        """The BFD sessions that left Up and OSPF adjacencies that left Full after ``mark``."""
        return [t for t in self.transitions_since(mark) if t.flap]


def start_bird(lab: Lab, router: QemuRouter, bfd_ms: int = 50) -> Bird:
    """A started :class:`Bird` on ``router``, stopped when ``lab`` closes."""
    bird = Bird(router, lab.tmp, bfd_ms)
    lab.stoppers.append(bird.stop)
    return bird.start()


@dataclass
class RoutedPair:
    """Two qemu routers with BIRD each, joined by ``xc`` on ``link``."""

    routers: tuple[QemuRouter, QemuRouter]
    birds: tuple[Bird, Bird]
    link: str
    xc: XconProcess

    def wait_converged(self, timeout: float = 20) -> None:
        for b in self.birds:
            b.wait_converged(timeout)

    def mark(self) -> tuple[int, int]:
        return (self.birds[0].mark(), self.birds[1].mark())

    def transitions_since(self, mark: tuple[int, int]) -> list[Transition]:
        """Both routers' state changes after ``mark``, in time order."""
        got = [t for b, m in zip(self.birds, mark, strict=True) for t in b.transitions_since(m)]
        return sorted(got, key=lambda t: t.at)

    def flaps_since(self, mark: tuple[int, int]) -> list[Transition]:
        return [t for t in self.transitions_since(mark) if t.flap]

    def wait_through(self, timeout: float = 15) -> float:
        """Wait until a ping sent now crosses the link both ways (three in a
        row, 50 ms apart); returns the seconds it took."""
        a, b = self.routers
        t0 = time.monotonic()
        wait_until(
            lambda: ping(a.netns, b.ip, count=3, interval=0.05, wait=0.5).received >= 3,
            timeout,
            f"pings from {a.netns} to {b.ip} through {self.link}",
        )
        return time.monotonic() - t0


def routed_pair(
    lab: Lab,
    bfd_ms: int = 50,
    start: Callable[[str], XconProcess] | None = None,
    timeout: float = 20,
) -> RoutedPair:
    """Two routers of ``lab`` with BIRD each (BFD at ``bfd_ms`` x 3), joined by
    the xcon ``start(LINK)`` returns (default ``lab.xcon("--p2p", LINK)``), its
    control API up and both routers converged (OSPF Full, BFD Up)."""
    ra, rb = lab.router("ra"), lab.router("rb")
    birds = (start_bird(lab, ra, bfd_ms), start_bird(lab, rb, bfd_ms))
    link = f"{ra.endpoint}--{rb.endpoint}"
    xc = start(link) if start else lab.xcon("--p2p", link)
    wait_api(xc)
    pair = RoutedPair((ra, rb), birds, link, xc)
    pair.wait_converged(timeout)
    return pair
