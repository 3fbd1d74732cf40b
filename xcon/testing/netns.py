"""Helpers for the root tests: network namespaces, sockets inside them, xcon run in one.

A socket belongs to the network namespace of the thread that created it, so
:func:`in_netns` creates sockets on a short-lived thread that has joined the
namespace (``setns``); the test process itself never leaves its own.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from xcon.testing.frames import encode_frames, take_frames
from xcon.testing.packets import check_frame
from xcon.testing.wait import wait_until

ROOT_REASON = "needs root (tap devices, AF_PACKET sockets, network namespaces)"
#: Mark for every module here: skipped, with the reason shown, when not root.
requires_root = pytest.mark.skipif(os.geteuid() != 0, reason=ROOT_REASON)


def requires_tool(tool: str, package: str) -> pytest.MarkDecorator:
    """Skip, saying which Debian package to install, when ``tool`` is not on PATH
    (``make test`` installs them when run as root on a machine with apt-get)."""
    return pytest.mark.skipif(
        shutil.which(tool) is None,
        reason=f"{tool} not found: Debian package {package} (make test installs it as root)",
    )


CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
SO_RCVBUFFORCE = 33

_libc = ctypes.CDLL(None, use_errno=True)


def suffix() -> str:
    return uuid.uuid4().hex[:6]


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def ip_json(ns: str, *args: str) -> Any:
    return json.loads(sh("ip", "-n", ns, "-j", *args).stdout or "[]")


def in_netns(ns: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a thread inside namespace ``ns``; returns its result."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            box["v"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised by the caller
            box["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]


def ns_prefix(ns: str, user: str | None = None) -> list[str]:
    """The command prefix that runs xcon inside ``ns`` (as ``user`` when given)."""
    cmd = ["ip", "netns", "exec", ns]
    if user:
        cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    return cmd


def workdir() -> str:
    d = tempfile.mkdtemp(prefix="xcon-root-")
    os.chmod(d, 0o777)
    return d


# -- a qemu-like client of xcon's listening port ----------------------------------------
class StreamClient:
    """Connects to xcon like ``-netdev socket,connect=``; records the frames it receives.

    ``responder(frame) -> reply | None`` answers frames (ARP/ICMP) from the reader thread.
    """

    def __init__(
        self,
        ns: str,
        port: int,
        host: str = "127.0.0.1",
        responder: Callable[[bytes], bytes | None] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.frames: list[bytes] = []
        self.responder = responder
        self._cond = threading.Condition()
        self._stop = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        deadline = time.monotonic() + timeout
        while True:
            s = in_netns(ns, lambda: socket.socket(family, socket.SOCK_STREAM))
            try:
                s.settimeout(2)
                s.connect((host, port))
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        s.settimeout(None)
        self.sock = s
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def send_frames(self, frames: Sequence[bytes]) -> None:
        data = encode_frames(frames)
        with self._send_lock:
            self.sock.sendall(data)

    def wait_frames(self, pred: Callable[[list[bytes]], bool], timeout: float = 10.0) -> None:
        wait_until(
            lambda: pred(self.frames),
            timeout,
            lambda: f"frames at the client (have {len(self.frames)})",
            self._cond,
        )

    def _read(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.sock], [], [], 0.05)
                if not r:
                    continue
                data = self.sock.recv(1 << 20)
            except (OSError, ValueError):
                return
            if not data:
                return
            got, buf = take_frames(buf + data)
            if got:
                with self._cond:
                    self.frames.extend(got)
                    self._cond.notify_all()
                if self.responder:
                    replies = [r for r in map(self.responder, got) if r]
                    if replies:
                        try:
                            self.send_frames(replies)
                        except OSError:
                            return

    def close(self) -> None:
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(5)
        self.sock.close()


# -- an AF_PACKET observer/sender on an interface in a namespace -------------------------
class PacketSocket:
    """Receives every frame of an interface (tags restored from PACKET_AUXDATA) and sends."""

    def __init__(self, ns: str, ifname: str) -> None:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
            s.bind((ifname, ETH_P_ALL))
            s.setblocking(False)
            return s

        self.sock: socket.socket = in_netns(ns, make)
        self.incoming: list[bytes] = []
        self.outgoing: list[bytes] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = bytearray(70000)
        anc = socket.CMSG_SPACE(20)
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            while True:
                try:
                    n, ancdata, _flags, addr = self.sock.recvmsg_into([buf], anc)
                except BlockingIOError:
                    break
                except OSError:
                    return
                frame = bytes(buf[:n])
                for level, kind, data in ancdata:
                    if level == SOL_PACKET and kind == PACKET_AUXDATA:
                        status, _l, _s, _m, _n, tci, tpid = struct.unpack("=IIIHHHH", data[:20])
                        if status & TP_STATUS_VLAN_VALID:
                            if not status & TP_STATUS_VLAN_TPID_VALID:
                                tpid = 0x8100
                            frame = frame[:12] + struct.pack(">HH", tpid, tci) + frame[12:]
                with self._cond:
                    (self.outgoing if addr[2] == PACKET_OUTGOING else self.incoming).append(frame)
                    self._cond.notify_all()

    def send(self, frame: bytes) -> None:
        select.select([], [self.sock], [], 5)
        self.sock.send(frame)

    def wait(self, pred: Callable[[list[bytes]], bool], timeout: float = 10.0) -> None:
        wait_until(
            lambda: pred(self.incoming),
            timeout,
            lambda: f"frames on the wire (have {len(self.incoming)} incoming)",
            self._cond,
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


# -- topologies with offloads left on ---------------------------------------------------
def veth_into(ns: str, ifname: str, peer_ns: str, peer: str) -> None:
    """A veth pair: ``ifname`` in ``ns``, ``peer`` in ``peer_ns`` (offloads as the
    kernel sets them: checksum offload and TSO on)."""
    sh(
        "ip",
        "-n",
        ns,
        "link",
        "add",
        ifname,
        "type",
        "veth",
        "peer",
        "name",
        peer,
        "netns",
        peer_ns,
    )


def address(ns: str, ifname: str, v4: str, v6: str | None = None) -> None:
    """Addresses (IPv6 without duplicate detection) on ``ifname``, and up."""
    sh("ip", "-n", ns, "addr", "add", v4, "dev", ifname)
    if v6:
        sh("ip", "-n", ns, "-6", "addr", "add", v6, "dev", ifname, "nodad")
    sh("ip", "-n", ns, "link", "set", ifname, "up")


SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x16
ETHTOOL_GTSO = 0x1E


def tx_offloads(ns: str, ifname: str) -> tuple[bool, bool]:
    """Whether ``ifname`` in ``ns`` has transmit checksum offload and TSO on
    (``ethtool -k``: tx-checksumming, tcp-segmentation-offload)."""

    def ask() -> tuple[bool, bool]:
        got = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for cmd in (ETHTOOL_GTXCSUM, ETHTOOL_GTSO):
                value = ctypes.create_string_buffer(struct.pack("II", cmd, 0), 8)
                ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
                fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq.ljust(40, b"\0"))
                got.append(struct.unpack("II", value.raw)[1] != 0)
        return got[0], got[1]

    result: tuple[bool, bool] = in_netns(ns, ask)
    return result


def check_wire_frame(frame: bytes) -> list[str]:
    """Complaints about a frame on its way to a router: above an MTU of 1500 (+
    Ethernet header and a VLAN tag), or any length or checksum wrong."""
    too_big = [f"above the MTU ({len(frame)} bytes)"] if len(frame) > 1518 else []
    return too_big + check_frame(frame)


# -- a checking relay between two listening xcon ports ----------------------------------
class FrameRelay:
    """Joins two listening xcon ports like ``xcon --p2p`` would, each port reached in
    its own namespace, and checks every frame that crosses with ``check(frame)``
    (a list of complaints, empty when the frame is fine).  ``problems[i]`` holds
    the complaints about frames read from end ``i``, ``frames[i]`` counts them and
    ``largest[i]`` is the longest."""

    def __init__(
        self,
        a: tuple[str, int],
        b: tuple[str, int],
        check: Callable[[bytes], list[str]],
        timeout: float = 10.0,
    ) -> None:
        self.check = check
        self.problems: list[list[str]] = [[], []]
        self.frames = [0, 0]
        self.largest = [0, 0]
        self._stop = threading.Event()
        self.socks = [self._connect(ns, port, timeout) for ns, port in (a, b)]
        self._threads = [
            threading.Thread(target=self._pump, args=(i,), daemon=True) for i in (0, 1)
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _connect(ns: str, port: int, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            s = in_netns(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                s.settimeout(2)
                s.connect(("127.0.0.1", port))
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return s
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _pump(self, i: int) -> None:
        src, dst = self.socks[i], self.socks[1 - i]
        rest = b""
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([src], [], [], 0.05)
                if not r:
                    continue
                data = src.recv(1 << 20)
                if not data:
                    return
                dst.sendall(data)
            except (OSError, ValueError):
                return
            got, rest = take_frames(rest + data)
            for f in got:
                self.frames[i] += 1
                self.largest[i] = max(self.largest[i], len(f))
                complaints = self.check(f)
                if complaints and len(self.problems[i]) < 100:
                    self.problems[i].append(f"{len(f)}-byte frame: {', '.join(complaints)}")

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        for s in self.socks:
            s.close()


# -- iperf3 between two namespaces ------------------------------------------------------
def iperf3(
    client_ns: str,
    server_ns: str,
    address: str,
    seconds: float = 2.0,
    reverse: bool = False,
    port: int = 5201,
) -> dict[str, Any]:
    """Run an iperf3 server in ``server_ns`` on ``address`` and a client in
    ``client_ns`` for ``seconds``; the client's JSON report (``error`` set when
    it failed).  The server is gone afterwards, whatever happened."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", address, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # ``-1`` serves one test, which a probe connection would use up: wait for the
        # listening socket in the server namespace's list instead.
        wait_until(
            lambda: (
                server.poll() is None
                and f":{port} " in sh("ip", "netns", "exec", server_ns, "ss", "-Hltn").stdout
            ),
            5,
            lambda: f"iperf3 listening on {address}:{port}",
            poll=0.05,
        )
        cmd = ["ip", "netns", "exec", client_ns, "iperf3", "-c", address, "-p", str(port)]
        cmd += ["-t", str(seconds), "-J", "--connect-timeout", "3000"]
        if reverse:
            cmd.append("-R")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
        try:
            report: dict[str, Any] = json.loads(r.stdout)
        except ValueError:
            report = {"error": f"iperf3 said: {r.stdout} {r.stderr}"}
        return report
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def received_bytes(report: dict[str, Any]) -> int:
    """Bytes the receiving side of an iperf3 TCP test got (0 when it failed)."""
    try:
        return int(report["end"]["sum_received"]["bytes"])
    except (KeyError, TypeError):
        return 0
