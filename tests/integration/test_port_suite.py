"""The port contract, one suite for every kind of link end, on both engines.

Each kind of end (a row of :data:`xcon.linkspec.KIND_TABLE`) comes with a
*kit* of the kind's name: the end it parses (its port made by the table, with
the engine's :class:`~xcon.ports.services.PortServices`) and how to play its
peer (send frames, read what the port sent, vanish mid-frame, come back).
Every test below runs for every kit on every engine, in-process: a recording
owner stands in for the bridge and sees exactly what a bridge would.  A new
kind of end adds a kit (a :class:`Kit` subclass named as the kind) and must
pass the whole suite; a kind without a kit fails
:func:`test_every_kind_of_end_has_a_kit`.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import threading

import pytest

from xcon.engines import make_engine
from xcon.framing import iter_frames
from xcon.limits import MAX_FRAME
from xcon.linkspec import KIND_TABLE, make_port, parse_end
from xcon.ports import Port
from xcon.ports.dgram import DatagramPort
from xcon.ports.services import PortServices
from xcon.testing.fakedgram import FakeDgram, vxlan_header
from xcon.testing.fakeqemu import FakeQemu
from xcon.testing.frames import encode_frames, numbered
from xcon.testing.loop import Recorder, run_for, run_until
from xcon.testing.loopback import free_udp_port, new_host

TIMEOUT = 5.0


# -- kits: one per kind of end ----------------------------------------------------------


class Kit:
    """A port of one kind and its peer; a subclass with a ``name`` is the kit of
    the kind of that name."""

    name: str
    #: Which tests apply beyond the common ones: "stream", "dgram" or "device".
    family: str
    #: The largest frame the kind carries.
    max_frame = MAX_FRAME
    port: Port

    def make(self, services: PortServices, spec: str) -> Port:
        """The port of ``spec`` as xcon makes it (the table's kind)."""
        end = parse_end(spec)
        assert end.kind == self.name, f"{spec!r} is not a {self.name} end"
        return make_port(services, end)

    def send_frames(self, frames: list[bytes]) -> None:
        raise NotImplementedError

    def frames(self) -> list[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class StreamPeer(Kit):
    """The far end of a stream port, as seen by the test."""

    family = "stream"

    def send_raw(self, data: bytes) -> None:
        raise NotImplementedError

    def send_frames(self, frames: list[bytes]) -> None:
        self.send_raw(encode_frames(frames))

    def frames(self) -> list[bytes]:
        raise NotImplementedError

    def vanish(self) -> None:
        """Close abruptly (the port must go down)."""
        raise NotImplementedError

    def come_back(self) -> None:
        """Be reachable again (the port must come up again)."""
        raise NotImplementedError

    def pause(self) -> None:
        """Stop reading (the port's sends back up)."""
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError


class FakePeerKit(Kit):
    """A kit whose peer is a fake qemu NIC or datagram socket: it records the frames
    it receives, and stops reading when told."""

    peer: FakeQemu | FakeDgram

    def frames(self) -> list[bytes]:
        return list(self.peer.frames)

    def pause(self) -> None:
        self.peer.pause_reading()

    def resume(self) -> None:
        self.peer.resume_reading()


class QemuKit(FakePeerKit, StreamPeer):
    """``HOST/N``: :class:`~xcon.ports.qemu.QemuPort` against a fake qemu NIC."""

    name = "qemu"
    peer: FakeQemu

    def __init__(self, services: PortServices) -> None:
        self.peer = FakeQemu(new_host(), 1).start()
        self.port = self.make(services, f"{self.peer.host}/1")

    def send_raw(self, data: bytes) -> None:
        self.peer.send_raw(data)

    def vanish(self) -> None:
        self.peer.disconnect_client()

    def come_back(self) -> None:
        pass  # qemu listens again by itself; the port reconnects

    def close(self) -> None:
        self.peer.stop()


class TcpKit(QemuKit):
    """``tcp:HOST:PORT``: :class:`~xcon.ports.qemu.QemuPort` on a port that is not 10000+N."""

    name = "tcp"

    def __init__(self, services: PortServices) -> None:
        self.peer = FakeQemu(new_host(), port=24567).start()
        self.port = self.make(services, f"tcp:{self.peer.host}:24567")


class UnixKit(QemuKit):
    """``unix:PATH``: :class:`UnixPort` against a fake qemu ``-netdev stream`` server."""

    name = "unix"

    def __init__(self, services: PortServices) -> None:
        self.dir = tempfile.mkdtemp(prefix="xcon-unix-")
        self.peer = FakeQemu(path=os.path.join(self.dir, "nic1.sock")).start()
        self.port = self.make(services, f"unix:{self.peer.path}")

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.dir, ignore_errors=True)


class ListenKit(StreamPeer):
    """``listen:HOST:PORT``: :class:`~xcon.ports.listen.ListenPort` with a plain
    TCP client as the qemu side."""

    name = "listen"

    def __init__(self, services: PortServices) -> None:
        self.host = new_host()
        self.port = self.make(services, f"listen:{self.host}:10001")
        self.port.prepare()
        self._setup()

    def _connect(self) -> socket.socket:
        s = socket.create_connection((self.host, 10001), timeout=TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def _setup(self) -> None:
        self._got = bytearray()
        self._lock = threading.Lock()
        self._reading = threading.Event()
        self._reading.set()
        self.sock: socket.socket | None = None
        self.come_back()

    def come_back(self) -> None:
        s = self._connect()
        self.sock = s
        with self._lock:
            self._got.clear()
        threading.Thread(target=self._read, args=(s,), daemon=True).start()

    def pause(self) -> None:
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    def _read(self, s: socket.socket) -> None:
        while True:
            if not self._reading.wait(0.05):
                continue
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._got += data

    def send_raw(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def frames(self) -> list[bytes]:
        with self._lock:
            data = bytes(self._got)
        return [data[o : o + n] for o, n in iter_frames(data, 0, len(data))]

    def vanish(self) -> None:
        assert self.sock is not None
        # shutdown first: close() alone would wait for the reader thread's recv.
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


class ListenUnixKit(ListenKit):
    """``listen:unix:PATH``: xcon listens on a unix socket; the test is the qemu client."""

    name = "listen-unix"

    def __init__(self, services: PortServices) -> None:
        self.dir = tempfile.mkdtemp(prefix="xcon-unix-")
        self.path = os.path.join(self.dir, "l.sock")
        self.port = self.make(services, f"listen:unix:{self.path}")
        self.port.prepare()
        self._setup()

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(self.path)
        s.settimeout(None)
        return s

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.dir, ignore_errors=True)


class UdpKit(FakePeerKit):
    """``udp:``: a qemu ``-netdev dgram`` NIC (one frame per datagram)."""

    name = "udp"
    family = "dgram"
    max_frame = 65507  # the largest UDP payload over IPv4
    port: DatagramPort
    peer: FakeDgram

    def __init__(self, services: PortServices) -> None:
        host = new_host()
        self.peer = FakeDgram(host, 0, vni=self.vni)
        self.local = (host, free_udp_port(host))
        self.peer.xcon_addr = self.local
        port = self.make(services, self.spec(host))
        assert isinstance(port, DatagramPort)
        self.port = port

    vni: int | None = None

    def spec(self, host: str) -> str:
        return f"udp:{host}:{self.peer.port}@{host}:{self.local[1]}"

    def send_frames(self, frames: list[bytes]) -> None:
        self.peer.send_frames(frames)

    def close(self) -> None:
        self.peer.close()


class VxlanKit(UdpKit):
    """``vxlan:``: a VXLAN tunnel endpoint (8-byte header, VNI 4242)."""

    name = "vxlan"
    vni = 4242
    max_frame = 65507 - 8

    def spec(self, host: str) -> str:
        return f"vxlan:{host}:{self.peer.port}/{self.vni}@{self.local[1]}"

    def __init__(self, services: PortServices) -> None:
        super().__init__(services)
        # xcon binds every address; the test sends from its own loopback address
        self.peer.xcon_addr = ("127.0.0.1", self.local[1])


class DeviceKit(Kit):
    """A device end in a namespace of its own; the test plays the kernel side
    with a packet socket (IPv6 off, no address: the kernel itself sends nothing)."""

    family = "device"
    max_frame = 9014  # MTU 9000 and the Ethernet header

    def __init__(self, services: PortServices) -> None:
        from xcon.testing.netns import sh, suffix

        self.ns = f"xcp-{suffix()}"
        sh("ip", "netns", "add", self.ns)
        try:
            self.port = self.make_device(services, suffix())
        except BaseException:
            self.close()
            raise

    def make_device(self, services: PortServices, tag: str) -> Port:
        raise NotImplementedError

    def quiet_up(self, ifname: str) -> None:
        from xcon.testing.netns import sh

        sh(
            "ip",
            "netns",
            "exec",
            self.ns,
            "sysctl",
            "-qw",
            f"net.ipv6.conf.{ifname}.disable_ipv6=1",
        )
        sh("ip", "-n", self.ns, "link", "set", ifname, "mtu", "9000", "up")

    def send_frames(self, frames: list[bytes]) -> None:
        for f in frames:
            self.peer.send(f)

    def frames(self) -> list[bytes]:
        return list(self.peer.incoming)

    def close(self) -> None:
        from xcon.testing.netns import sh

        peer = getattr(self, "peer", None)
        if peer is not None:
            peer.close()
        sh("ip", "netns", "del", self.ns, check=False)


class TapKit(DeviceKit):
    """``tap:NAME``: the tap is made here, then moved into the kit's namespace
    (its descriptor keeps working), where a packet socket is its kernel side."""

    name = "tap"

    def make_device(self, services: PortServices, tag: str) -> Port:
        from xcon.testing.netns import PacketSocket, sh

        ifname = f"xp{tag}"
        port = self.make(services, f"tap:{ifname}")
        port.prepare()
        sh("ip", "link", "set", ifname, "netns", self.ns)
        self.quiet_up(ifname)
        self.peer = PacketSocket(self.ns, ifname)
        return port


class RawKit(DeviceKit):
    """``raw:IFNAME``: one end of a veth pair (socket made inside the namespace);
    a packet socket on the other end is the wire."""

    name = "raw"

    def make_device(self, services: PortServices, tag: str) -> Port:
        from xcon.testing.netns import PacketSocket, in_netns, sh

        near, far = f"xr{tag}", f"xw{tag}"
        sh("ip", "-n", self.ns, "link", "add", near, "type", "veth", "peer", "name", far)
        for dev in (near, far):
            self.quiet_up(dev)
        port = self.make(services, f"raw:{near}")
        in_netns(self.ns, port.prepare)
        self.peer = PacketSocket(self.ns, far)
        return port


def _named_kits() -> dict[str, type[Kit]]:
    found: dict[str, type[Kit]] = {}
    todo = list(Kit.__subclasses__())
    while todo:
        k = todo.pop()
        todo += k.__subclasses__()
        if "name" in vars(k):
            found[k.name] = k
    return found


#: The kit of each kind of end, by the kind's name.
KITS = _named_kits()
_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="tap and raw ends need root and iproute2 (tests/root covers them further)",
)


def kits(*families: str) -> list:
    """The kits of the table's kinds (in its order) whose family is one of ``families``."""
    out = []
    for kind in KIND_TABLE:
        kit = KITS.get(kind.name)
        if kit is not None and kit.family in families:
            marks = [_ROOT] if kit.family == "device" else []
            out.append(pytest.param(kit, marks=marks, id=kind.name))
    return out


def test_every_kind_of_end_has_a_kit():
    assert sorted(KITS) == sorted(kind.name for kind in KIND_TABLE)


@pytest.fixture(params=kits("stream", "dgram", "device"))
def kit_class(request):
    return request.param


@pytest.fixture(params=kits("stream"))
def stream_kit_class(request):
    return request.param


@pytest.fixture(params=kits("dgram"))
def dgram_kit_class(request):
    return request.param


@pytest.fixture
def loop(engine):
    eng = make_engine(engine)
    yield eng
    eng.close()


@pytest.fixture
def services(loop):
    """What the ports of the engine share, as xcon makes it with its engine."""
    return PortServices(loop)


@pytest.fixture
def end(kit_class, loop, services):
    """(kit, recorder) with the port started and up."""
    yield from started(kit_class(services), loop)


@pytest.fixture
def stream_end(stream_kit_class, loop, services):
    yield from started(stream_kit_class(services), loop)


@pytest.fixture
def dgram_end(dgram_kit_class, loop, services):
    yield from started(dgram_kit_class(services), loop)


def started(kit, loop):
    rec = Recorder()
    kit.port.owner = rec
    rec.port = kit.port
    kit.port.start()
    try:
        run_until(loop, lambda: kit.port.up, "the port to come up")
        yield kit, rec
    finally:
        kit.port.close()
        kit.close()


# -- the contract ------------------------------------------------------------------------


def test_up_once_and_whole_frames_both_ways(end, loop):
    kit, rec = end
    assert rec.ups == 1 and kit.port.stats.connects == 1
    out = [numbered(i, 60 + i * 97) for i in range(40)] + [numbered(99, kit.max_frame)]
    inb = [numbered(1000 + i, 1514) for i in range(40)] + [numbered(2000, kit.max_frame)]
    rec.send(out)
    kit.send_frames(inb)
    run_until(loop, lambda: len(rec.frames) == 41 and len(kit.frames()) == 41, "frames")
    assert rec.frames == inb
    assert kit.frames() == out


def test_frames_arriving_in_pieces_are_handed_on_whole(stream_end, loop):
    kit, rec = stream_end
    frames = [numbered(i, 300) for i in range(5)]
    data = encode_frames(frames)
    for i in range(0, len(data), 101):
        kit.send_raw(data[i : i + 101])
        run_for(loop, 0.002)
    run_until(loop, lambda: len(rec.frames) == 5, "frames")
    assert rec.frames == frames


def test_zero_length_frames_are_reported_not_handed_on(stream_end, loop):
    kit, rec = stream_end
    kit.send_raw(b"\0\0\0\0" + encode_frames([numbered(1, 64)]) + b"\0\0\0\0")
    run_until(loop, lambda: rec.zero == 2 and len(rec.frames) == 1, "frames")
    assert rec.frames == [numbered(1, 64)]


def test_paused_port_reads_nothing_until_resumed(end, loop):
    kit, rec = end
    kit.port.set_reading(False)
    kit.send_frames([numbered(1, 100)])
    run_for(loop, 0.2)
    assert rec.frames == []
    kit.port.set_reading(True)
    run_until(loop, lambda: len(rec.frames) == 1, "the frame after resuming")


def test_peer_gone_mid_frame_loses_only_that_frame_and_comes_back(stream_end, loop):
    kit, rec = stream_end
    data = encode_frames([numbered(1, 500), numbered(2, 500)])
    kit.send_raw(data[:-200])
    run_until(loop, lambda: len(rec.frames) == 1, "the whole frame")
    kit.vanish()
    run_until(loop, lambda: len(rec.downs) == 1, "port_down")
    assert not kit.port.up
    assert kit.port.stats.partial_bytes == 304
    assert kit.port.stats.disconnects == 1
    kit.come_back()
    run_until(loop, lambda: rec.ups == 2, "the port to come back")
    kit.send_raw(encode_frames([numbered(3, 80)]))
    run_until(loop, lambda: len(rec.frames) == 2, "a frame on the new connection")
    assert rec.frames == [numbered(1, 500), numbered(3, 80)]
    assert len(rec.downs) == 1


def test_oversized_length_resets_the_connection(stream_end, loop):
    kit, rec = stream_end
    kit.send_raw(encode_frames([numbered(1, 64)]) + struct.pack(">I", MAX_FRAME + 1) + b"x")
    run_until(loop, lambda: rec.downs, "port_down")
    assert rec.frames == [numbered(1, 64)]  # what came before still went on
    assert kit.port.stats.protocol_errors == 1
    assert "exceeds 69632" in rec.downs[0]
    if isinstance(kit, ListenKit):  # the client is the test: it reconnects
        kit.come_back()
    run_until(loop, lambda: rec.ups == 2, "a new connection")


def test_a_send_the_peer_cannot_take_is_held_until_writable(stream_end, loop):
    kit, rec = stream_end
    kit.pause()
    frames = [numbered(i, 60000) for i in range(400)]  # 24 MB: more than socket buffers
    rec.send(frames)
    run_for(loop, 0.2)
    assert rec.queue, "the kernel took 24 MB without the peer reading"
    assert kit.port.up
    kit.resume()
    run_until(loop, lambda: len(kit.frames()) == 400, "every frame")
    assert kit.frames() == frames


def test_close_reports_down_once_and_stays_down(end, loop):
    kit, rec = end
    kit.port.close()
    assert rec.downs == ["closed"]
    run_for(loop, 0.3)
    assert rec.ups == 1 and not kit.port.up


# -- datagram ends --------------------------------------------------------------------


def test_datagram_end_counts_as_connected_once_the_peer_is_heard(dgram_end, loop):
    kit, rec = dgram_end
    assert kit.port.up and kit.port.healthy and not kit.port.connected
    rec.send([numbered(1, 64)])  # sent although nothing was heard yet
    kit.peer.wait_frames(1)
    kit.send_frames([numbered(2, 64)])
    run_until(loop, lambda: kit.port.connected, "the peer to be heard")
    assert "state" in rec.events and rec.frames == [numbered(2, 64)]


def test_datagrams_from_others_or_with_another_vni_are_dropped_and_counted(dgram_end, loop):
    kit, rec = dgram_end
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind((new_host(), 0))  # another address (a VTEP's source port varies)
    try:
        header = vxlan_header(kit.vni) if kit.vni is not None else b""
        stranger.sendto(header + numbered(1, 100), kit.peer.xcon_addr)
        if kit.vni is not None:
            kit.peer.send(numbered(2, 100), header=vxlan_header(kit.vni + 1))  # other VNI
            kit.peer.send(numbered(3, 100), header=vxlan_header(kit.vni, flags=0))  # no I flag
            kit.peer.send(
                numbered(4, 100), header=bytes([0x08 | 0x80, 1, 2, 3]) + header[4:7] + b"\xff"
            )
        kit.send_frames([numbered(5, 100)])
        run_until(loop, lambda: rec.frames, "the peer's frame")
        run_for(loop, 0.1)
        if kit.vni is not None:
            # reserved bits are ignored; another VNI, a missing I flag, a stranger are not
            assert rec.frames == [numbered(4, 100), numbered(5, 100)]
            assert kit.port.rx_dropped_by == {"bad_header": 2, "foreign": 1, "truncated": 0}
        else:
            assert rec.frames == [numbered(5, 100)]  # the kernel filters a connected socket
    finally:
        stranger.close()


def test_udp_peer_gone_is_seen_and_heard_again(loop, services):
    kit = UdpKit(services)
    rec = Recorder()
    kit.port.owner = rec
    rec.port = kit.port
    kit.port.start()
    try:
        kit.send_frames([numbered(1, 64)])
        run_until(loop, lambda: kit.port.connected, "the peer to be heard")
        port_no = kit.peer.port
        kit.peer.close()  # the qemu router stops: its port is closed
        for i in range(5):
            rec.send([numbered(10 + i, 64)])
            run_for(loop, 0.05)
        run_until(loop, lambda: not kit.port.connected, "ICMP port unreachable to be seen")
        assert kit.port.up and kit.port.refused >= 1
        kit.peer = FakeDgram(kit.local[0], port_no)  # it is back
        kit.peer.xcon_addr = kit.local
        kit.send_frames([numbered(20, 64)])
        run_until(loop, lambda: kit.port.connected, "the peer to be heard again")
        rec.send([numbered(21, 64)])
        kit.peer.wait_frames(1)
        assert kit.peer.frames == [numbered(21, 64)]
    finally:
        kit.port.close()
        kit.close()
