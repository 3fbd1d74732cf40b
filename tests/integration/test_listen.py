"""The listening port (xcon plays the qemu NIC): who counts as connected, and
clients that hold the only slot without sending anything."""

from __future__ import annotations

import socket

import pytest

from xcon.engines import make_engine
from xcon.ports.listen import IDLE_GRACE, ListenPort
from xcon.testing.frames import encode_frames, numbered
from xcon.testing.loop import Recorder, run_for, run_until
from xcon.testing.loopback import new_host


@pytest.fixture
def served(engine):
    """A started ListenPort with a recording owner, and a factory of clients."""
    eng = make_engine(engine)
    host = new_host()
    port = ListenPort(eng, 10001, host=host)
    rec = Recorder()
    port.owner = rec
    rec.port = port
    port.start()
    clients: list[socket.socket] = []

    def client() -> socket.socket:
        s = socket.create_connection((host, 10001), timeout=5)
        clients.append(s)
        return s

    try:
        yield eng, port, rec, client
    finally:
        port.close()
        for s in clients:
            s.close()
        eng.close()


def test_connected_only_after_a_whole_frame(served):
    eng, port, rec, client = served
    assert port.healthy and not port.connected  # listening: ready, nobody there
    c = client()
    run_until(eng, lambda: port.up, "the client to be served")
    assert port.healthy and not port.connected
    c.sendall(encode_frames([numbered(1, 64)])[:3])  # a partial header: not yet
    run_for(eng, 0.1)
    assert not port.connected
    c.sendall(encode_frames([numbered(1, 64)])[3:])
    run_until(eng, lambda: port.connected, "the first frame")
    assert "state" in rec.events  # the health file hears about it


def test_a_silent_client_alone_is_left_alone(served):
    eng, port, rec, client = served
    client()
    run_until(eng, lambda: port.up, "the client to be served")
    run_for(eng, IDLE_GRACE + 1.0)
    assert port.up and rec.downs == []


def test_a_silent_client_gives_way_to_a_waiting_one(served):
    eng, port, rec, client = served
    squatter = client()
    squatter.sendall(b"\0\0")  # two header bytes, then nothing
    run_until(eng, lambda: port.up, "the squatter to be served")
    real = client()  # waits in the backlog
    run_until(eng, lambda: rec.ups == 2, "the waiting client to be served")
    assert rec.downs and "another client waiting" in rec.downs[0]
    real.sendall(encode_frames([numbered(7, 100)]))
    run_until(eng, lambda: rec.frames == [numbered(7, 100)], "the real client's frame")
    assert port.connected
    squatter.settimeout(1)
    assert squatter.recv(10) == b""  # dropped


def test_a_flood_of_idle_connections_does_not_lock_out_the_real_client(served):
    eng, port, rec, client = served
    flood = [client() for _ in range(6)]  # fill the backlog with silent clients
    run_until(eng, lambda: port.up, "a flood client to be served")
    run_for(eng, 0.2)
    for s in flood:  # the flood gives up
        s.close()
    real = client()
    real.sendall(encode_frames([numbered(1, 80)]))
    run_until(eng, lambda: numbered(1, 80) in rec.frames, "the real client's frame")


def test_a_client_that_talks_is_served_while_a_flood_stays_connected(served):
    """200 silent connections stay open; the real client, which sends a frame at
    once, takes the slot without waiting out anyone's idle grace."""
    eng, port, rec, _client = served
    host = port.host
    flood = []
    try:
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((host, 10001))
            flood.append(s)
            if len(flood) % 8 == 0:
                run_for(eng, 0.01)  # the loop drains the backlog as a busy xcon would
        run_until(eng, lambda: port.up, "a flood client to be served")
        real = socket.socket()
        real.setblocking(False)
        real.connect_ex((host, 10001))
        flood.append(real)

        def connected() -> bool:
            try:
                real.getpeername()
                return True
            except OSError:
                return False

        run_until(eng, connected, "the real client's connect")
        real.send(encode_frames([numbered(5, 90)]))
        run_until(eng, lambda: numbered(5, 90) in rec.frames, "the real client's frame")
        assert port.connected
        assert len(port._cands) <= 16, "waiting clients are bounded"
    finally:
        for s in flood:
            s.close()
