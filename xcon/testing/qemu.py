"""Real qemu "routers" for tests and benchmarks, with no guest at all.

A vrnetlab router is a qemu whose NIC N is ``-netdev socket,listen=:10000+N``.
For a test, the guest is not needed: qemu started with ``-machine none`` and a
hub (``hubport``) joining that socket netdev to a tap netdev forwards every
frame between the socket and the tap.  The tap is moved into a network
namespace and given an address there, so a ping from that namespace leaves
through the "router's NIC" exactly as a guest's frames would:

    namespace ── tap ══ qemu hub ══ socket netdev (listen HOST:PORT) ── xcon

The same qemu with ``connect=`` instead of ``listen=`` is the direct link of two
routers that xcon is measured against; with ``netdev=`` the NIC is any other
netdev (``stream`` on a unix socket, ``dgram`` over UDP).  With ``monitor=PORT``
qemu's HMP monitor listens on ``host:PORT`` as a vrnetlab router's does on 4000+N;
``set_link s0 off`` there takes the router's NIC down.  Everything here needs root (taps and
namespaces) and Debian's ``qemu-system-x86``; :func:`missing` says what lacks.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from xcon.limits import QEMU_BASE_PORT
from xcon.testing.process import XconProcess

QEMU = "qemu-system-x86_64"


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command; with ``check``, a failure raises with its stderr in the message."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def netns_exec(netns: str | None, *cmd: str) -> list[str]:
    """``cmd`` run inside ``netns`` (or as is when None)."""
    return ["ip", "netns", "exec", netns, *cmd] if netns else list(cmd)


def missing(*tools: tuple[str, str]) -> str | None:
    """Why real qemu routers cannot run here, or None.

    ``tools`` adds ``(command, Debian package)`` pairs the caller needs as well.
    """
    if os.geteuid() != 0:
        return "needs root (tap devices and network namespaces)"
    for tool, pkg in (
        (QEMU, "qemu-system-x86"),
        ("ip", "iproute2"),
        ("ping", "iputils-ping"),
        *tools,
    ):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian package {pkg})"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun missing: no tap devices"
    return None


def qemu_marks(timeout: int = 120, *tools: tuple[str, str]) -> list:
    """The ``pytestmark`` of a module of tests with real qemu routers: marked root,
    bounded by ``timeout`` s, and skipped, saying why, where missing(*tools) finds a reason."""
    import pytest

    why = missing(*tools)
    return [
        pytest.mark.root,
        pytest.mark.timeout(timeout),
        pytest.mark.skipif(why is not None, reason=str(why)),
    ]


def alive(pid: int) -> bool:
    """True while pid runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


class QemuRouter:
    """A qemu whose socket NIC listens on (or connects to) ``host:port``, bridged to a tap.

    ``netns``: the namespace the tap ends up in, with ``address`` (CIDR) and ``mac``;
    it must exist.  ``run_netns``: where qemu itself runs (its socket lives there);
    None for the caller's namespace.  ``connect``: the socket connects to
    ``host:port`` (a direct link to another router) instead of listening there.
    """

    def __init__(
        self,
        workdir: Path | str,
        tap: str,
        host: str,
        netns: str,
        address: str,
        nic: int = 1,
        mac: str | None = None,
        run_netns: str | None = None,
        connect: bool = False,
        port: int | None = None,
        netdev: str | None = None,
        monitor: int | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.tap, self.host, self.nic = tap, host, nic
        self.port = port if port is not None else QEMU_BASE_PORT + nic
        self.netns, self.address, self.mac = netns, address, mac
        self.run_netns, self.connect = run_netns, connect
        #: The NIC's netdev options after ``id=s0,`` (a ``stream`` or ``dgram``
        #: netdev); None for ``socket,listen=HOST:PORT`` (or ``connect=``).
        self.netdev = netdev
        #: TCP port of qemu's HMP monitor on ``host`` (as vrnetlab's 4000+N), or None.
        self.monitor = monitor
        self.pidfile = self.workdir / f"{tap}.pid"
        self.logfile = self.workdir / f"{tap}.log"
        self.pid: int | None = None

    @property
    def endpoint(self) -> str:
        """The router's NIC as xcon names it (``HOST/N``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}/{self.nic}"

    @property
    def monitor_address(self) -> str:
        """The monitor as xcon takes it: ``HOST:PORT,NETDEV`` (the NIC's netdev is ``s0``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.monitor},s0"

    @property
    def ip(self) -> str:
        """The tap's address inside ``netns``, without the prefix length."""
        return self.address.split("/")[0]

    def start(self) -> QemuRouter:
        mode = "connect" if self.connect else "listen"
        cmd = netns_exec(
            self.run_netns,
            QEMU,
            "-nodefaults",
            "-display",
            "none",
            "-machine",
            "none",
            "-daemonize",
            "-pidfile",
            str(self.pidfile),
            "-netdev",
            self._netdev(mode),
            "-netdev",
            f"tap,id=t0,ifname={self.tap},script=no,downscript=no",
            "-netdev",
            "hubport,id=h0,hubid=0,netdev=s0",
            "-netdev",
            "hubport,id=h1,hubid=0,netdev=t0",
            *(
                ("-monitor", f"tcp:{self.host}:{self.monitor},server,nowait")
                if self.monitor
                else ()
            ),
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=log, timeout=30).returncode
        if rc != 0:
            raise RuntimeError(f"qemu failed to start ({rc}): {self.logfile.read_text()}")
        self.pid = int(self.pidfile.read_text().strip())
        if self.run_netns != self.netns:
            here = ["-n", self.run_netns] if self.run_netns else []
            sh("ip", *here, "link", "set", self.tap, "netns", self.netns)
        if self.mac:
            sh("ip", "-n", self.netns, "link", "set", self.tap, "address", self.mac)
        sh("ip", "-n", self.netns, "addr", "add", self.address, "dev", self.tap)
        sh("ip", "-n", self.netns, "link", "set", self.tap, "up")
        return self

    def _netdev(self, mode: str) -> str:
        if self.netdev is not None:
            kind, _, rest = self.netdev.partition(",")
            return f"{kind},id=s0,{rest}"
        return f"socket,id=s0,{mode}={self.host}:{self.port}"

    def stop(self) -> None:
        """Kill this qemu (by its pidfile) and wait until it and its tap are gone."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                ours = str(self.pidfile).encode() in f.read()
        except FileNotFoundError:
            ours = False
        if ours:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + 5
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
                if not alive(pid):
                    break
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if sh("ip", "-n", self.netns, "link", "show", self.tap, check=False).returncode:
                break
            time.sleep(0.01)


class Lab:
    """What one test makes: namespaces, qemu routers and xcon processes
    (``--engine ENGINE``), all removed by :meth:`close`, also after a failure.
    Whatever else runs in its namespaces (a routing daemon) appends its stop
    function to :attr:`stoppers`: they run first."""

    def __init__(self, tmp: Path, engine: str) -> None:
        self.tmp = tmp
        self.engine = engine
        self.tag = secrets.token_hex(3)
        rnd = random.Random()
        self.subnet = f"10.{rnd.randrange(64, 250)}.{rnd.randrange(256)}"
        self.loopback = f"127.{rnd.randrange(2, 255)}.{rnd.randrange(256)}"
        self.namespaces: list[str] = []
        self.routers: list[QemuRouter] = []
        self.xcons: list[XconProcess] = []
        self.stoppers: list[Callable[[], None]] = []

    def netns(self, role: str) -> str:
        name = f"xcon-e2e-{self.tag}-{role}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def router(
        self,
        role: str,
        host: str | None = None,
        nic: int = 1,
        run_netns: str | None = None,
        netdev: str | None = None,
        monitor: int | None = None,
    ) -> QemuRouter:
        """A started qemu router whose tap is in a new namespace ``role`` at subnet.N/24."""
        n = len(self.routers) + 1
        netns = self.netns(role)
        r = QemuRouter(
            self.tmp,
            tap=f"xq{self.tag}{n}",
            host=host or f"{self.loopback}.{n}",
            nic=nic,
            netns=netns,
            address=f"{self.subnet}.{n}/24",
            mac=f"02:58:{self.tag[:2]}:{self.tag[2:4]}:{self.tag[4:]}:{n:02x}",
            run_netns=run_netns,
            netdev=netdev,
            monitor=monitor,
        )
        self.routers.append(r)
        r.start()
        return r

    def xcon(self, *args: str, netns: str | None = None) -> XconProcess:
        x = XconProcess(
            [*args, "--engine", self.engine],
            cwd=str(self.tmp / f"xcon{len(self.xcons)}"),
            prefix=netns_exec(netns),
        )
        self.xcons.append(x)
        return x

    def close(self) -> None:
        errors: list[Exception] = []
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception as e:
                errors.append(e)
        for x in self.xcons:
            x.kill()
        for router in self.routers:
            try:
                router.stop()
            except Exception as e:
                errors.append(e)
        for name in reversed(self.namespaces):
            r = sh("ip", "netns", "del", name, check=False)
            if r.returncode:
                errors.append(RuntimeError(f"ip netns del {name}: {r.stderr.strip()}"))
        for router in self.routers:
            sh("ip", "link", "del", router.tap, check=False)
        if errors:
            raise errors[0]


def report(
    record_property: Callable[[str, object], None], lab: Lab, name: str, value: object
) -> None:
    """Record a figure in the test report (junit property) and print it."""
    record_property(name, value)
    print(f"[qemu-e2e {lab.engine}] {name}: {value}")
