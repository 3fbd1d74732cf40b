"""``xcon demo``: a live cross-connect between two fake qemu routers on loopback.

Starts two fake qemu NICs (``127.0.77.1:10001`` and ``127.0.77.2:10001``),
runs ``xcon --p2p 127.0.77.1/1--127.0.77.2/1`` as its own process, and streams
numbered, self-checking frames through it: first at a light rate (as routing
protocols do), then as fast as the routers can send.  A live line shows
frames/s, Gbit/s and one-way latency; the summary checks that nothing was
lost, reordered or corrupted and that xcon exits cleanly.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

from xcon.errors import OneLineParser
from xcon.limits import Range
from xcon.testing.fakeqemu import FakeQemu
from xcon.testing.frames import check_numbered, numbered, wire
from xcon.testing.process import XconProcess
from xcon.testing.wait import WaitTimeout

#: Send time (monotonic ns) of every 64th frame, by sequence number; the receiver
#: looks it up to sample one-way latency (both peers share this process's clock).
SEND_TIMES: dict[int, int] = {}


class Receiver:
    """Checks every frame and samples latency of every 64th."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames = 0
        self.bytes = 0
        self.next_seq = 0
        self.lost = 0
        self.reordered = 0
        self.corrupt = 0
        self.latencies_us: list[float] = []
        self._window: list[float] = []

    def on_frame(self, f: memoryview) -> None:
        now = time.monotonic_ns()
        data = bytes(f)
        try:
            seq = check_numbered(data)
        except ValueError:
            with self.lock:
                self.corrupt += 1
            return
        with self.lock:
            if seq == self.next_seq:
                self.next_seq += 1
            elif seq > self.next_seq:
                self.lost += seq - self.next_seq
                self.next_seq = seq + 1
            else:
                self.reordered += 1
            self.frames += 1
            self.bytes += len(data)
            if seq % 64 == 0:
                sent_ns = SEND_TIMES.get(seq)
                if sent_ns is not None:
                    us = (now - sent_ns) / 1000
                    self.latencies_us.append(us)
                    self._window.append(us)

    def take_window(self) -> list[float]:
        with self.lock:
            w, self._window = self._window, []
        return w


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


#: ``--seconds`` and ``--size``, checked as every bounded option is (xcon.limits).
SECONDS = Range("seconds", 1, 3600)
SIZE = Range("size", 64, 65535, whole=True)


def main(argv: Sequence[str] = ()) -> int:
    ap = OneLineParser(
        prog="xcon demo",
        description="A live cross-connect between two fake qemu routers on loopback: "
        "frames at a light rate, then as fast as the routers send; the summary checks "
        "that nothing was lost, reordered or corrupted.",
    )
    ap.add_argument(
        "--seconds",
        type=SECONDS.arg_type(),
        default=6.0,
        help="total duration, 1 to 3600 (default 6)",
    )
    ap.add_argument(
        "--size",
        type=SIZE.arg_type(),
        default=1500,
        help="frame size in bytes, 64 to 65535 (default 1500)",
    )
    args = ap.parse_args(list(argv))
    size = args.size

    recv = Receiver()
    a = FakeQemu("127.0.77.1", 1, record=False)
    b = FakeQemu("127.0.77.2", 1, record=False, on_frame=recv.on_frame)
    try:
        a.start()
        b.start()
    except OSError as e:
        print(
            f"xcon demo: cannot listen on 127.0.77.1/2:10001 ({e.strerror}); is another demo running?"
        )
        return 1
    workdir = tempfile.mkdtemp(prefix="xcon-demo-")
    link = "127.0.77.1/1--127.0.77.2/1"
    print(f"xcon demo: two fake qemu routers, linked by: xcon --p2p {link}")
    xc = XconProcess(["--p2p", link], cwd=workdir)
    rc = 1
    try:
        try:
            a.wait_connected(10)
            b.wait_connected(10)
        except WaitTimeout:
            print("xcon demo: xcon did not connect to the routers:\n" + xc.log())
            return rc
        print(f"health file: {xc.wait_health('0').splitlines()[1]}")
        rc = _run(a, b, recv, xc, args.seconds, size)
    finally:
        xc.kill()
        a.stop()
        b.stop()
        if rc == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:  # kept for a look: the path is printed
            print(f"xcon demo: xcon's log is kept in {xc.log_path}")
    return rc


def _run(
    a: FakeQemu, b: FakeQemu, recv: Receiver, xc: XconProcess, seconds: float, size: int
) -> int:
    light = min(2.0, seconds / 3)
    stop = threading.Event()
    sent = [0]
    phase = ["light"]

    def sender() -> None:
        seq = 0
        t0 = time.monotonic()
        while not stop.is_set():
            full = time.monotonic() - t0 >= light
            phase[0] = "full speed" if full else "light load"
            batch = 64 if full else 1
            frames = []
            for i in range(batch):
                s = seq + i
                if s % 64 == 0:
                    SEND_TIMES[s] = time.monotonic_ns()
                frames.append(wire(numbered(s, size)))
            try:
                a.send_raw(b"".join(frames))
            except OSError:
                break
            seq += batch
            sent[0] = seq
            if not full:
                time.sleep(0.001)

    t = threading.Thread(target=sender, daemon=True)
    tty = sys.stdout.isatty()
    start = time.monotonic()
    t.start()
    last_t, last_f, last_b = start, 0, 0
    rates = []
    while time.monotonic() - start < seconds:
        time.sleep(0.5)
        now = time.monotonic()
        with recv.lock:
            f, nb = recv.frames, recv.bytes
        dt = now - last_t
        fps = (f - last_f) / dt
        gbps = (nb - last_b + 4 * (f - last_f)) * 8 / dt / 1e9
        w = recv.take_window()
        if phase[0] == "full speed":
            rates.append((fps, gbps))
        line = (
            f"{now - start:4.1f}s  {phase[0]:>13}  {fps:10,.0f} frames/s  {gbps:6.2f} Gbit/s  "
            f"latency p50 {_pct(w, 50):8.0f} us  p99 {_pct(w, 99):8.0f} us"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
        last_t, last_f, last_b = now, f, nb
    stop.set()
    t.join(5)
    if tty:
        print()
    try:
        b.wait_frames(sent[0], timeout=5)
    except WaitTimeout:
        pass  # the summary below counts what did not arrive
    time.sleep(0.2)
    rc = xc.terminate()
    ok = (
        recv.lost == 0
        and recv.corrupt == 0
        and recv.reordered == 0
        and recv.frames == sent[0]
        and rc == 0
    )
    peak = max(rates, default=(0.0, 0.0))
    print()
    print("summary")
    print(
        f"  frames sent {sent[0]:,}, received {recv.frames:,}: lost {recv.lost}, "
        f"corrupt {recv.corrupt}, out of order {recv.reordered}"
    )
    print(
        f"  peak {peak[0]:,.0f} frames/s, {peak[1]:.2f} Gbit/s of {size}-byte frames "
        "(the Python fake routers, not xcon, set this pace)"
    )
    print(
        f"  one-way latency over the run: p50 {_pct(recv.latencies_us, 50):.0f} us, "
        f"p99 {_pct(recv.latencies_us, 99):.0f} us"
    )
    print(f"  xcon exited with {rc} after SIGTERM")
    print("OK" if ok else "FAILED")
    if not ok:
        sys.stdout.write(xc.log()[-2000:])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
