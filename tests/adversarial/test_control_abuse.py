"""The control socket under abuse while a link forwards numbered frames.

At once, for about twelve seconds: slowloris clients (a request head one byte
at a time), clients posting 1 MB bodies, 1000 connections held open on the TCP
listener, and connections sending garbage.  Meanwhile xcon must keep
forwarding (the receiver never falls more than a moment behind the sender,
nothing is lost) and keep answering (``GET /health`` from a fresh client
within two seconds, every half second), and its log must hold no traceback.
"""

from __future__ import annotations

import os
import random
import resource
import socket
import threading
import time

import pytest

from xcon.control.client import Client
from xcon.testing.control import timed_health
from xcon.testing.fakeqemu import endpoint
from xcon.testing.traffic import Stream
from xcon.testing.wait import wait_until

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(120)]

ABUSE_SECONDS = 12.0


def slowloris(path: str, stop: threading.Event, closed: list[int]) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    head = b"GET /links HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    try:
        for b in head:
            if stop.is_set():
                return
            s.sendall(bytes([b]))
            time.sleep(0.3)
    except OSError:
        closed.append(1)  # xcon closed it: what must happen
    finally:
        s.close()


def big_bodies(path: str, stop: threading.Event, answers: list[bytes]) -> None:
    while not stop.is_set():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(path)
            s.sendall(b"POST /links HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
            try:
                s.sendall(b"{" * 1048576)
            except OSError:
                pass
            answers.append(s.recv(100))
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(0.05)


def garbage(path: str, stop: threading.Event, rng: random.Random) -> None:
    while not stop.is_set():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(path)
            s.sendall(rng.randbytes(rng.randrange(1, 5000)) + b"\r\n\r\n")
            s.recv(1000)
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(0.01)


def test_control_socket_abuse_keeps_links_forwarding_and_xcon_answering(peers, xcon):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    a, b = peers(record=True), peers()
    xc = xcon("--p2p", f"{endpoint(a)}--{endpoint(b)}", "--control-listen", "127.0.0.1:0")
    xc.wait_health("0", contains="All 2 sockets connected")
    line = xc.wait_log("control API on http://")
    url = line.split("control API on http://")[1].split()[0]
    host, port = url.rsplit(":", 1)
    path = os.path.join(xc.workdir, "xcon.sock")
    stream = Stream(a, b, size=200, fps=4000)
    stop = threading.Event()
    closed: list[int] = []
    answers: list[bytes] = []
    threads = [threading.Thread(target=slowloris, args=(path, stop, closed)) for _ in range(30)]
    threads += [threading.Thread(target=big_bodies, args=(path, stop, answers)) for _ in range(3)]
    threads += [
        threading.Thread(target=garbage, args=(path, stop, random.Random(i))) for i in range(3)
    ]
    for t in threads:
        t.daemon = True
        t.start()
    flood = []
    for _ in range(1000):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, int(port)))
        flood.append(s)
    lags, answer_times = [], []
    end = time.monotonic() + ABUSE_SECONDS
    try:
        while time.monotonic() < end:
            answer_times.append(timed_health(xc))
            lags.append(stream.sent - b.frame_count)
            time.sleep(0.5)
        st, data, _ = Client(url=f"http://{url}", timeout=2).request("GET", "/metrics")
        assert st == 200
    finally:
        stop.set()
        stream.stop()
        for s in flood:
            s.close()
        for t in threads:
            t.join(10)
    stream.finish()
    assert a.accepted == 1 and b.accepted == 1
    # the receiver kept up: never more than half a second of frames behind
    assert max(lags) < stream.fps / 2, lags
    assert max(answer_times) < 2.0
    assert len(closed) == 30, "every slowloris client was cut off"
    assert answers and all(x.startswith(b"HTTP/1.1 413 ") for x in answers if x)
    log = xc.log()
    assert "Traceback" not in log
    wait_until(lambda: xc.proc.poll() is None, 1, "xcon alive")
    print(
        f"abuse: {stream.sent} frames, max lag {max(lags)} frames, "
        f"health answered in {max(answer_times) * 1000:.0f} ms at most"
    )
    assert xc.terminate() == 0
