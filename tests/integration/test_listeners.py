"""The listener watch: a booting lab of routers on this host costs no connection attempts.

Routers on local addresses are not probed with connect: xcon lists the
kernel's TCP listeners (sock_diag) and connects once a NIC's port listens.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from xcon.engines import make_engine
from xcon.ports.listeners import ListenerWatch, LocalAddresses, listener_key
from xcon.testing.fakeqemu import FakeQemu
from xcon.testing.loop import run_until


def key(ip: str, port: int) -> bytes:
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return listener_key(fam, socket.inet_pton(fam, ip), port)


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def loop(engine):
    eng = make_engine(engine)
    yield eng
    eng.close()


def listener(ip: str, port: int, family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen()
    return s


def witness(loop, watch: ListenerWatch, ip: str) -> None:
    """A listener appears on ``ip`` and the watch sees it: it has listed the kernel's
    listeners (and called back everything that was due) since this was called."""
    port = free_port(ip)
    seen: list[bool] = []
    assert watch.wait(frozenset({key(ip, port)}), lambda: seen.append(True)) is not None
    with listener(ip, port):
        run_until(loop, lambda: bool(seen), f"the watch to see {ip}:{port}")


def test_seen_once_its_port_listens_and_not_before(loop):
    watch = ListenerWatch(loop)
    port = free_port("127.0.0.1")
    seen: list[float] = []
    w = watch.wait(frozenset({key("127.61.0.9", port)}), lambda: seen.append(time.monotonic()))
    assert w is not None, "nothing listens yet: the caller must wait"
    witness(loop, watch, "127.61.0.20")
    assert seen == []
    with listener("127.61.0.9", port):
        t0 = time.monotonic()
        run_until(loop, lambda: bool(seen), "the watch to see the listener")
        assert seen[0] - t0 < 0.5
        witness(loop, watch, "127.61.0.21")
        assert len(seen) == 1, "called back once"
        # Already listening: no wait at all.
        assert watch.wait(frozenset({key("127.61.0.9", port)}), lambda: None) is None


def test_a_listener_on_another_address_or_port_does_not_count(loop):
    watch = ListenerWatch(loop)
    port = free_port()
    seen: list[bool] = []
    watch.wait(frozenset({key("127.61.0.10", port)}), lambda: seen.append(True))
    with listener("127.61.0.11", port), listener("127.61.0.10", free_port("127.61.0.10")):
        witness(loop, watch, "127.61.0.22")
    assert seen == []


@pytest.mark.parametrize("wild", ["0.0.0.0", "::"])
def test_a_wildcard_listener_counts_for_every_local_address(loop, wild):
    watch = ListenerWatch(loop)
    port = free_port()
    seen: list[bool] = []
    watch.wait(frozenset({key("127.61.0.12", port)}), lambda: seen.append(True))
    fam = socket.AF_INET6 if ":" in wild else socket.AF_INET
    with listener(wild, port, fam):
        run_until(loop, lambda: bool(seen), f"a listener on {wild} to count")


def test_cancel_stops_the_watch(loop):
    watch = ListenerWatch(loop)
    port = free_port()
    seen: list[bool] = []
    w = watch.wait(frozenset({key("127.61.0.13", port)}), lambda: seen.append(True))
    assert w is not None
    watch.cancel(w)
    with listener("127.61.0.13", port):
        witness(loop, watch, "127.61.0.23")
    assert seen == []


def test_which_addresses_are_local():
    is_local = LocalAddresses().is_local
    assert is_local(socket.AF_INET, "127.0.0.1")
    assert is_local(socket.AF_INET, "127.250.1.2")
    assert is_local(socket.AF_INET6, "::1")
    assert not is_local(socket.AF_INET, "192.0.2.1")  # TEST-NET-1: nobody's address
    assert not is_local(socket.AF_INET6, "2001:db8::1")
    assert not is_local(socket.AF_INET6, "fe80::1%lo")  # link-local: probe as before


def test_no_connection_attempts_while_local_routers_are_down(xcon):
    """Two routers down for a second: each NIC is tried once at start and then left alone
    until its listener appears; the link is then up within a watch interval."""
    a, b = FakeQemu("127.61.1.1", 3), FakeQemu("127.61.1.2", 4)
    xc = xcon("--p2p", "127.61.1.1/3--127.61.1.2/4", log_level="debug")
    try:
        xc.wait_log("127.61.1.1/3: not listening yet; connecting as soon as it is")
        xc.wait_log("127.61.1.2/4: not listening yet; connecting as soon as it is")
        time.sleep(1.0)  # the routers stay down: probing would try each NIC ~6 more times
        # The loop answers after that second, both NICs still waiting for their
        # listener: what it tried meanwhile is in the log.
        counters = xc.counters().splitlines()
        for end in ("127.61.1.1/3", "127.61.1.2/4"):
            [line] = [ln for ln in counters if f"counters {end}: " in ln]
            assert ": down connects=0 " in line and "last_error='not listening'" in line, line
        log = xc.log()
        attempts = len(re.findall(r"127\.61\.1\.[12]/[34]: (not reachable|attempt failed)", log))
        assert attempts <= 2, f"{attempts} connection attempts while down:\n{log}"
        a.start()
        b.start()
        t0 = time.monotonic()
        xc.wait_health("0", contains="All 2 sockets connected", timeout=3)
        assert time.monotonic() - t0 < 1.0
    finally:
        a.stop()
        b.stop()
