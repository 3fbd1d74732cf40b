"""``xcon fake-router``: a router small enough to try xcon by hand.

Each ``END=ADDRESS/PREFIX`` is one NIC of the router, listening as a qemu NIC
does (``HOST/N``: TCP 10000+N; ``tcp:HOST:PORT``; ``unix:PATH``) or talking
one frame per UDP datagram (``udp:RHOST:RPORT@[LHOST:]LPORT``, the syntax of
xcon's own UDP end: it sends to RHOST:RPORT from LPORT).  ``HOST/N:VID`` puts
the address on VLAN VID of that NIC (frames tagged VID), the trunk side of
xcon's access port.  The router has a MAC per NIC (``02:00`` and the
address), answers ARP requests for its address and ICMP echo requests to it,
with ``--ping ADDR`` sends echo requests and prints each reply as ping does,
and prints one line per other frame it receives.

The NICs are the test kit's fake qemu NICs (:mod:`xcon.testing.fakeqemu`,
:mod:`xcon.testing.fakedgram`): one thread each, which calls back with every
frame; the frames are built and read by :mod:`xcon.testing.packets`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xcon.errors import ModeError, OneLineParser
from xcon.limits import Range
from xcon.linkspec import Endpoint, SpecError, TcpEnd, UdpEnd, UnixEnd, parse_end
from xcon.netconf import parse_address
from xcon.testing.fakedgram import FakeDgram
from xcon.testing.fakeqemu import FakeQemu
from xcon.testing.frames import tagged, wire
from xcon.testing.packets import (
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST,
    ECHO_REPLY,
    ECHO_REQUEST,
    arp,
    arp_fields,
    check_frame,
    echo_fields,
    icmp_echo,
    locate,
)
from xcon.testing.wait import WaitTimeout

PROG = "xcon fake-router"
COUNT = Range("count", 1, 10**9, whole=True)
INTERVAL = Range("interval", 0.01, 3600, unit=" s")
#: How long an ARP request waits for its reply before the ping is counted lost.
ARP_WAIT = 1.0
#: With --count: how long the last replies are waited for.
LINGER = 2.0
#: An echo request's data: 56 bytes, as ping sends by default.
DATA = bytes(range(8, 64))
IP_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 58: "ICMPv6", 89: "OSPF"}
ETHER_NAMES = {0x86DD: "IPv6", 0x8809: "slow protocols (LACP)", 0x88CC: "LLDP", 0x888E: "EAPOL"}

Interface = ipaddress.IPv4Interface
StreamEnd = Endpoint | TcpEnd | UnixEnd


@dataclass(frozen=True)
class NicSpec:
    end: StreamEnd | UdpEnd
    iface: Interface


def parse_nic(text: str) -> NicSpec:
    """``END=ADDRESS/PREFIX``; raises ValueError with the one-line reason."""
    end_text, sep, addr = text.rpartition("=")
    if not sep or not end_text:
        raise ValueError(f"{text!r}: expected END=ADDRESS/PREFIX, e.g. vr1/1=10.0.0.1/24")
    try:
        end = parse_end(end_text)
    except SpecError as e:
        raise ValueError(str(e)) from None
    if not isinstance(end, Endpoint | TcpEnd | UnixEnd | UdpEnd):
        raise ValueError(
            f"{end_text!r}: a fake router's NIC is HOST/N[:VID], tcp:HOST:PORT, unix:PATH "
            "or udp:RHOST:RPORT@[LHOST:]LPORT"
        )
    try:
        iface = parse_address(addr, 4, f"{text!r}:")
    except ModeError as e:
        raise ValueError(str(e)) from None
    assert isinstance(iface, Interface)
    return NicSpec(end, iface)


def mac_text(mac: bytes) -> str:
    return mac.hex(":")


def rtt_text(ms: float) -> str:
    """A round trip as ping prints it: three significant digits or so."""
    return f"{ms:.{3 if ms < 1 else 2 if ms < 10 else 1 if ms < 100 else 0}f}"


def describe(frame: bytes) -> str:
    """A short line for a frame: VLAN, ARP, IPv4/IPv6 and protocol, or ethertype."""
    size = f", {len(frame)} bytes"
    if len(frame) < 14:
        return f"runt frame{size}"
    tag, off = "", 12
    while frame[off : off + 2] in (b"\x81\x00", b"\x88\xa8") and len(frame) >= off + 6:
        tag += f"vlan {int.from_bytes(frame[off + 2 : off + 4], 'big') & 0xFFF} "
        off += 4
    et = int.from_bytes(frame[off : off + 2], "big")
    if et == 0x0806 and (a := arp_fields(frame, off + 2)) is not None:
        op, smac, sip, _tmac, tip = a
        if op == ARP_REQUEST:
            return f"{tag}ARP request who-has {tip} tell {sip}{size}"
        if op == ARP_REPLY:
            return f"{tag}ARP reply {sip} is-at {mac_text(smac)}{size}"
        return f"{tag}ARP op {op} {sip} > {tip}{size}"
    p = locate(frame)
    if p is not None and p.version == 4:
        src = ipaddress.IPv4Address(frame[p.l3 + 12 : p.l3 + 16])
        dst = ipaddress.IPv4Address(frame[p.l3 + 16 : p.l3 + 20])
        what = IP_NAMES.get(p.proto, f"proto {p.proto}")
        echo = echo_fields(p)
        if echo is not None:
            kind, ident, seq, _ = echo
            what += f" echo {'request' if kind == ECHO_REQUEST else 'reply'} id {ident} seq {seq}"
        elif p.proto in (6, 17) and len(frame) >= p.l4 + 4:
            sport, dport = (int.from_bytes(frame[p.l4 + i : p.l4 + i + 2], "big") for i in (0, 2))
            what += f" {sport} > {dport}"
        return f"{tag}IPv4 {src} > {dst} {what}{size}"
    if p is not None:
        src6 = ipaddress.IPv6Address(frame[p.l3 + 8 : p.l3 + 24])
        dst6 = ipaddress.IPv6Address(frame[p.l3 + 24 : p.l3 + 40])
        what = IP_NAMES.get(p.proto, f"next header {p.proto}")
        return f"{tag}IPv6 {src6} > {dst6} {what}{size}"
    macs = f"{mac_text(frame[6:12])} > {mac_text(frame[0:6])}"
    if et < 0x600:
        return f"{tag}802.3 length {et} {macs}{size}"
    name = ETHER_NAMES.get(et, f"ethertype 0x{et:04x}")
    return f"{tag}{name} {macs}{size}"


class Nic:
    """One NIC: its address, MAC, VLAN and the fake qemu NIC (or UDP peer) carrying it."""

    def __init__(self, spec: NicSpec, on_frame: Callable[[Nic, bytes], None], say: Say) -> None:
        self.name = str(spec.end)
        self.iface = spec.iface
        self.ip = spec.iface.ip
        self.mac = b"\x02\x00" + self.ip.packed
        self.vid = spec.end.vid
        self.tag = tagged(bytes(12), self.vid)[12:16] if self.vid is not None else b""
        self._end = spec.end
        self._on_frame = on_frame
        self._say = say
        self._stream: FakeQemu | None = None
        self._dgram: FakeDgram | None = None

    def start(self) -> str:
        """Listen (or bind); returns where, for the start line.  Raises OSError."""
        end = self._end
        if isinstance(end, UdpEnd):
            try:
                info = socket.getaddrinfo(end.remote, end.port, type=socket.SOCK_DGRAM)[0][4]
            except OSError as e:
                raise OSError(f"{end.remote}: {e.strerror or e}") from None
            remote = (str(info[0]), int(info[1]))
            local = end.local_host or ("::" if ":" in remote[0] else "0.0.0.0")
            try:
                self._dgram = FakeDgram(local, end.local_port, record=False, on_frame=self._frame)
            except OSError as e:
                raise OSError(f"cannot bind {local}:{end.local_port}: {e.strerror or e}") from None
            self._dgram.xcon_addr = remote
            return f"UDP {local}:{end.local_port}, sending to {remote[0]}:{remote[1]}"
        if isinstance(end, UnixEnd):
            if os.path.lexists(end.path) and not stat.S_ISSOCK(os.lstat(end.path).st_mode):
                raise OSError(f"cannot listen on {end.path}: it exists and is not a socket")
            q = FakeQemu(path=end.path, record=False, on_frame=self._frame, on_client=self._client)
            where = end.path
        else:
            port = end.port if isinstance(end, TcpEnd) else 10000 + end.nic
            q = FakeQemu(
                end.host, port=port, record=False, on_frame=self._frame, on_client=self._client
            )
            where = f"{end.host}:{port}"
        try:
            q.start()
        except OSError as e:
            raise OSError(f"cannot listen on {where}: {e.strerror or e}") from None
        self._stream = q
        return f"listening on {where}"

    def _frame(self, frame: memoryview | bytes) -> None:
        self._on_frame(self, bytes(frame))

    def _client(self, peer: str | None) -> None:
        self._say(f"{self.name}: connection from {peer}" if peer else f"{self.name}: disconnected")

    def send(self, frame: bytes) -> bool:
        """Send one frame (tagged on a VLAN NIC); False when nothing is connected."""
        if self.tag:
            frame = frame[:12] + self.tag + frame[12:]
        try:
            if self._dgram is not None:
                self._dgram.send(frame)
                return True
            q = self._stream
            if q is None or not q.connected:
                return False
            q.send_raw(wire(frame), timeout=1.0)
            return True
        except (OSError, WaitTimeout):
            return False

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
        if self._dgram is not None:
            self._dgram.close()


class Say:
    """Whole lines to stdout, one thread at a time, flushed (a pipe sees each at once)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


class Router:
    """The router's behaviour: ARP, echo replies, pings, a line per other frame."""

    def __init__(self, specs: Sequence[NicSpec], say: Say) -> None:
        self.say = say
        self.nics = [Nic(s, self.received, say) for s in specs]
        #: Neighbours learnt from ARP: (NIC name, address) -> MAC.
        self.neighbours: dict[tuple[str, ipaddress.IPv4Address], bytes] = {}
        self.cond = threading.Condition()
        self.pinger: Pinger | None = None

    def nic_for(self, addr: ipaddress.IPv4Address) -> Nic | None:
        return next((n for n in self.nics if addr in n.iface.network), None)

    def received(self, nic: Nic, frame: bytes) -> None:
        problems = check_frame(frame)
        if problems:  # dropped, as a stack drops it (a corrupt impairment shows here)
            self.say(f"{nic.name}: {describe(frame)}, bad: {', '.join(problems)}")
        elif not self._handled(nic, frame):
            self.say(f"{nic.name}: {describe(frame)}")

    def _handled(self, nic: Nic, frame: bytes) -> bool:
        """Answer what is for this NIC (ARP, echo); True for a ping's reply, which
        the pinger prints instead of the frame's line."""
        if nic.tag:
            if frame[12:16] != nic.tag:
                return False
            frame = frame[:12] + frame[16:]  # the rest as if it were untagged
        elif frame[12:14] in (b"\x81\x00", b"\x88\xa8"):
            return False  # a VLAN this NIC is not on
        if frame[:6] not in (nic.mac, BROADCAST):
            return False
        if frame[12:14] == b"\x08\x06":
            self._arp(nic, frame)
            return False
        p = locate(frame)
        echo = echo_fields(p) if p is not None else None
        if p is None or echo is None or frame[p.l3 + 16 : p.l3 + 20] != nic.ip.packed:
            return False
        kind, ident, seq, data = echo
        src = ipaddress.IPv4Address(frame[p.l3 + 12 : p.l3 + 16])
        if kind == ECHO_REQUEST:
            reply = icmp_echo(
                str(nic.ip), str(src), ident, seq, data, reply=True,
                src_mac=nic.mac, dst_mac=frame[6:12],
            )  # fmt: skip
            nic.send(reply)
            return False
        pinger = self.pinger
        return (
            kind == ECHO_REPLY
            and pinger is not None
            and pinger.replied(src, ident, seq, frame[p.l3 + 8], 8 + len(data))
        )

    def _arp(self, nic: Nic, frame: bytes) -> None:
        a = arp_fields(frame, 14)
        if a is None:
            return
        op, smac, sip, _tmac, tip = a
        if tip != str(nic.ip) or sip == "0.0.0.0":
            return
        with self.cond:
            self.neighbours[(nic.name, ipaddress.IPv4Address(sip))] = smac
            self.cond.notify_all()
        if op == ARP_REQUEST:
            reply = arp(ARP_REPLY, nic.mac, str(nic.ip), sip, target_mac=smac, dst_mac=smac)
            nic.send(reply)

    def resolve(self, nic: Nic, addr: ipaddress.IPv4Address) -> bytes | None:
        """The MAC of ``addr`` on ``nic``: known, or asked for with ARP (waits up to
        ARP_WAIT s); None when nothing answers."""
        key = (nic.name, addr)
        with self.cond:
            if key in self.neighbours:
                return self.neighbours[key]
        nic.send(arp(ARP_REQUEST, nic.mac, str(nic.ip), str(addr)))
        with self.cond:
            self.cond.wait_for(lambda: key in self.neighbours, ARP_WAIT)
            return self.neighbours.get(key)


class Pinger:
    """``--ping``: echo requests at an interval, replies printed as ping prints them."""

    def __init__(self, router: Router, nic: Nic, dst: ipaddress.IPv4Address) -> None:
        self.router = router
        self.nic = nic
        self.dst = dst
        self.ident = os.getpid() & 0xFFFF
        self.lock = threading.Lock()
        #: Send time (monotonic ns) of each echo request still unanswered, by icmp_seq.
        self.waiting: dict[int, int] = {}
        self.rtts: list[float] = []
        self.transmitted = 0

    def replied(
        self, src: ipaddress.IPv4Address, ident: int, seq: int, ttl: int, size: int
    ) -> bool:
        now = time.monotonic_ns()
        if src != self.dst or ident != self.ident:
            return False
        with self.lock:
            sent = self.waiting.pop(seq, None)
            if sent is None:
                return False
            ms = (now - sent) / 1e6
            self.rtts.append(ms)
        self.router.say(f"{size} bytes from {src}: icmp_seq={seq} ttl={ttl} time={rtt_text(ms)} ms")
        return True

    def ping(self, seq: int) -> None:
        """One echo request (ARP first when the neighbour is not known)."""
        with self.lock:
            self.transmitted += 1
        mac = self.router.resolve(self.nic, self.dst)
        if mac is None:
            self.router.say(f"From {self.nic.ip} icmp_seq={seq} Destination Host Unreachable")
            return
        frame = icmp_echo(
            str(self.nic.ip), str(self.dst), self.ident, seq, DATA,
            src_mac=self.nic.mac, dst_mac=mac,
        )  # fmt: skip
        with self.lock:
            self.waiting[seq] = time.monotonic_ns()
        self.nic.send(frame)

    def all_answered(self) -> bool:
        with self.lock:
            return not self.waiting

    def statistics(self, elapsed: float) -> list[str]:
        with self.lock:
            sent, rtts = self.transmitted, list(self.rtts)
        loss = 100 * (sent - len(rtts)) / sent if sent else 0
        lines = [
            f"--- {self.dst} ping statistics ---",
            f"{sent} packets transmitted, {len(rtts)} received, {loss:.4g}% packet loss, "
            f"time {elapsed * 1000:.0f}ms",
        ]
        if rtts:
            avg = sum(rtts) / len(rtts)
            mdev = math.sqrt(max(0.0, sum(r * r for r in rtts) / len(rtts) - avg * avg))
            lines.append(
                f"rtt min/avg/max/mdev = {min(rtts):.3f}/{avg:.3f}/{max(rtts):.3f}/{mdev:.3f} ms"
            )
        return lines


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _sleep(seconds: float) -> bool:
    """Sleep up to ``seconds``; True when SIGINT or SIGTERM came (they are blocked
    and taken here, so a signal never lands inside another thread's lock)."""
    return signal.sigtimedwait(STOP_SIGNALS, max(0.0, seconds)) is not None


def _run_pings(p: Pinger, count: int | None, interval: float) -> int:
    nic = p.nic
    p.router.say(
        f"PING {p.dst} ({p.dst}) from {nic.ip} {nic.name}: {len(DATA)}({len(DATA) + 28}) bytes of data."
    )
    start = next_at = time.monotonic()
    seq = 0
    stopped = False
    while count is None or seq < count:
        seq += 1
        p.ping(seq & 0xFFFF)
        next_at += interval
        if count is not None and seq == count:
            break
        if _sleep(next_at - time.monotonic()):
            stopped = True
            break
    if count is not None and not stopped:  # the last replies, as ping -c waits for them
        deadline = time.monotonic() + LINGER
        while not p.all_answered() and time.monotonic() < deadline:
            if _sleep(0.01):
                stopped = True
                break
    for line in p.statistics(time.monotonic() - start):
        p.router.say(line)
    return 0 if stopped or p.rtts else 1


def _setup(nics: Sequence[str], ping: str | None) -> tuple[Router, ipaddress.IPv4Address | None]:
    """The router of the NICs and the address to ping, checked; raises
    ValueError with the one-line reason."""
    specs = [parse_nic(t) for t in nics]
    seen: dict[object, str] = {}
    for s in specs:
        for r in s.end.resources:
            if r in seen:
                raise ValueError(f"{s.end} and {seen[r]} are the same NIC")
            seen[r] = str(s.end)
    router = Router(specs, Say())
    if ping is None:
        return router, None
    try:
        dst = ipaddress.IPv4Address(ping)
    except ValueError:
        raise ValueError(f"--ping {ping!r} is not an IPv4 address") from None
    nic = router.nic_for(dst)
    if nic is None:
        nets = ", ".join(f"{n.iface} on {n.name}" for n in router.nics)
        raise ValueError(f"--ping {dst}: not in the network of a NIC ({nets})")
    if dst == nic.ip:
        raise ValueError(f"--ping {dst}: that is the router's own address on {nic.name}")
    return router, dst


def parse(argv: Sequence[str]) -> tuple[Router, Pinger | None, int | None, float]:
    """The router, its pinger, --count and --interval from the command line,
    checked, nothing started; a bad argument is one line and SystemExit(2)."""
    ap = OneLineParser(
        prog=PROG,
        description="A fake router for trying xcon by hand: each END=ADDRESS/PREFIX is a NIC "
        "listening as a qemu NIC does (HOST/N: TCP 10000+N; HOST/N:VID: the address on "
        "VLAN VID; tcp:HOST:PORT; unix:PATH) or on UDP (udp:RHOST:RPORT@[LHOST:]LPORT, as "
        "xcon's udp end). It answers ARP and ping, pings with --ping, and prints a line "
        "per other frame. Ctrl-C ends it.",
    )
    ap.add_argument(
        "nics", nargs="+", metavar="END=ADDRESS/PREFIX", help="a NIC, e.g. vr1/1=10.0.0.1/24"
    )
    ap.add_argument("--ping", metavar="ADDR", help="send echo requests to ADDR, one per interval")
    ap.add_argument(
        "--count", type=COUNT.arg_type(), help="stop after N echo requests (with --ping)"
    )
    ap.add_argument(
        "--interval", type=INTERVAL.arg_type(),
        help="seconds between echo requests, 0.01 to 3600 (default 1)",
    )  # fmt: skip
    args = ap.parse_args(list(argv))
    try:
        router, dst = _setup(args.nics, args.ping)
        if args.ping is None and (args.count is not None or args.interval is not None):
            raise ValueError("--count and --interval apply to --ping only")
    except ValueError as e:
        ap.error(str(e))
        raise
    pinger = None
    if dst is not None:
        nic = router.nic_for(dst)
        assert nic is not None
        pinger = router.pinger = Pinger(router, nic, dst)
    return router, pinger, args.count, args.interval or 1.0


def main(argv: Sequence[str] = ()) -> int:
    router, pinger, count, interval = parse(argv)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # before any thread starts
    started: list[Nic] = []
    try:
        for nic in router.nics:
            try:
                where = nic.start()
            except OSError as e:
                sys.stderr.write(f"{PROG}: error: {nic.name}: {e}\n")
                return 1
            started.append(nic)
            router.say(f"{nic.name}: {nic.iface}, MAC {mac_text(nic.mac)}, {where}")
        if pinger is not None:
            return _run_pings(pinger, count, interval)
        signal.sigwait(STOP_SIGNALS)
        return 0
    finally:
        for nic in started:
            nic.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
