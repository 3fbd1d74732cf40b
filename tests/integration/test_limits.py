"""Many links against a low open-file limit: xcon makes room, or says which limit to raise."""

from __future__ import annotations

import resource
from functools import partial

from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import ether

LINKS = 16  # 32 sockets: more than the soft limit below allows


def _nofile(soft: int, hard: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_low_soft_limit_is_raised_and_every_link_forwards(peers, xcon):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    pairs = [(peers(nic=i), peers(nic=i + 100)) for i in range(1, LINKS + 1)]
    xc = xcon(
        "--p2p",
        *[f"{endpoint(a)}--{endpoint(b)}" for a, b in pairs],
        preexec=partial(_nofile, 24, hard),
    )
    xc.wait_health("0", contains=f"All {2 * LINKS} sockets connected", timeout=20)
    for i, (a, _b) in enumerate(pairs):
        a.send(ether(bytes([i]) * 60))
    for i, (_a, b) in enumerate(pairs):
        b.wait_frames(1)
        assert b.frames == [ether(bytes([i]) * 60)]
    assert "Too many open files" not in xc.log()
    assert xc.terminate() == 0


def test_hard_limit_too_low_is_a_clear_error(peers, xcon):
    pairs = [(peers(nic=i, start=False), peers(nic=i + 100, start=False)) for i in range(1, 17)]
    xc = xcon(
        "--p2p",
        *[f"{endpoint(a)}--{endpoint(b)}" for a, b in pairs],
        "--workers",
        "1",
        preexec=partial(_nofile, 24, 24),
    )
    assert xc.proc.wait(15) == 1
    log = xc.log()
    assert "32 sockets need about 96 open files, but the hard limit is 24" in log
    assert "ulimit -Hn" in log
    assert "Traceback" not in log


def test_hard_limit_too_low_for_a_worker_is_one_error(peers, xcon):
    pairs = [(peers(nic=i, start=False), peers(nic=i + 100, start=False)) for i in range(1, 17)]
    xc = xcon(
        "--p2p",
        *[f"{endpoint(a)}--{endpoint(b)}" for a, b in pairs],
        "--workers",
        "2",
        preexec=partial(_nofile, 24, 24),
    )
    assert xc.proc.wait(15) == 1
    errors = [line for line in xc.log().splitlines() if line.startswith("xcon: error:")]
    assert len(errors) == 1, xc.log()
    assert "16 sockets need about 80 open files, but the hard limit is 24" in errors[0]
    assert "worker" not in xc.log()  # refused before any worker started
