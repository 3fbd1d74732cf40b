"""Real routing daemons through xcon: BIRD with OSPF and BFD on two qemu routers.

Each router's namespace runs BIRD (``xcon.testing.bird``): OSPF on the tap
behind the router's NIC with BFD at 50 ms x 3, so a link dark for 150 ms
takes the BFD session down and the adjacency with it, and BIRD's log says
when.  A pulled cable is seen (the kit sees flaps); a config reload and links
added and removed beside the routers' link are not (zero flaps); a cold
restart of xcon is dark long enough to flap today, and the figures are printed.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime

from xcon.testing.bird import routing_marks
from xcon.testing.control import Follower, ctl, wait_api, write
from xcon.testing.fakeqemu import endpoint
from xcon.testing.ping import Pinger
from xcon.testing.process import XconProcess
from xcon.testing.wait import wait_until

pytestmark = routing_marks(timeout=60)


def test_ospf_and_bfd_come_up_through_xcon_and_routes_are_learned(routed_pair):
    pair = routed_pair()
    ba, bb = pair.birds
    for here, there in ((ba, bb), (bb, ba)):
        (session,) = here.bfd_sessions()
        assert session.address == there.router.ip and session.state == "Up"
        assert session.interval == 0.05 and session.timeout == 0.15
        wait_until(
            lambda h=here, t=there: t.prefix in h.birdc("show route protocol ospf1"),
            15,
            lambda h=here, t=there: f"{t.prefix} learned by OSPF:\n{h.birdc('show route')}",
        )
    assert ba.flaps_since(0) == [] and bb.flaps_since(0) == []


def test_a_pulled_cable_takes_bfd_down_and_the_kit_sees_it(routed_pair):
    pair = routed_pair(bfd_ms=50)
    mark = pair.mark()
    follower = Follower(pair.xc, "?type=admin.changed")
    try:
        t0 = time.time()
        r = ctl(pair.xc, "down", pair.link)
        took = time.time() - t0
        assert r.returncode == 0, r.stderr
        (pulled,) = follower.wait(lambda ev: ev, what="the pull's event")
    finally:
        follower.close()
    pulled_at = datetime.fromisoformat(pulled["time"]).timestamp()

    def both_down() -> bool:
        return {t.peer for t in pair.flaps_since(mark) if t.protocol == "bfd"} == {
            r.ip for r in pair.routers
        }

    wait_until(both_down, 5, lambda: f"BFD down on both routers: {pair.transitions_since(mark)}")
    flaps = pair.flaps_since(mark)
    first = min(t.at for t in flaps if t.protocol == "bfd")
    print(
        f"BFD down {(first - pulled_at) * 1000:.0f} ms after xcon pulled the link "
        f"({(first - t0) * 1000:.0f} ms after xcon ctl down started; it took {took * 1000:.0f} ms)"
    )
    # 3 x 50 ms without a packet, the last one at most 50 ms before the pull
    assert 0.05 <= first - pulled_at < 1.0, flaps
    assert {t.protocol for t in flaps} == {"bfd", "ospf"}, "BFD takes the adjacency down"

    mark = pair.mark()
    t1 = time.monotonic()
    assert ctl(pair.xc, "up", pair.link).returncode == 0
    pair.wait_converged()
    print(f"OSPF Full and BFD Up again {time.monotonic() - t1:.2f} s after xcon ctl up")
    ups = [t for t in pair.transitions_since(mark) if t.protocol == "bfd" and t.new == "Up"]
    assert len(ups) == 2, pair.transitions_since(mark)


def test_a_config_reload_does_not_flap_bfd(lab, routed_pair, peers, tmp_path):
    cfg = tmp_path / "xcon.toml"

    def start(link: str):
        write(cfg, f'links = ["{link}"]\n')
        return lab.xcon("--config", str(cfg))

    pair = routed_pair(start=start)
    xc, mark = pair.xc, pair.mark()
    other = f"{endpoint(peers())}--{endpoint(peers())}"
    write(cfg, f'links = ["{pair.link}", "{other}"]\n')
    r = ctl(xc, "reload")
    assert r.returncode == 0, r.stderr
    xc.wait_health("0", contains="All 4 sockets connected")
    write(cfg, f'links = ["{pair.link}"]\n')
    xc.proc.send_signal(signal.SIGHUP)
    xc.wait_log("0 added, 1 removed, 0 changed, 1 unchanged")
    pair.wait_through()
    assert pair.transitions_since(mark) == []


def test_links_added_and_removed_live_do_not_flap_bfd(routed_pair, peers):
    pair = routed_pair()
    mark = pair.mark()
    for _ in range(3):
        other = f"{endpoint(peers())}--{endpoint(peers())}"
        assert ctl(pair.xc, "add", other).returncode == 0
        pair.xc.wait_health("0", contains="All 4 sockets connected")
        assert ctl(pair.xc, "remove", other).returncode == 0
    pair.wait_through()
    assert pair.transitions_since(mark) == []


def test_a_cold_restart_of_xcon_is_reported_as_the_routers_see_it(lab, routed_pair):
    """Not a "no flap" test: a cold restart is dark for longer than BFD's 150 ms
    today.  What BIRD reports is checked against ping's view of the same dark
    spell (10 ms apart), and the figures printed."""
    pair = routed_pair(bfd_ms=50)
    (ra, rb), mark = pair.routers, pair.mark()
    with Pinger(ra.netns, rb.ip, interval=0.01) as pinger:
        time.sleep(0.5)  # replies before the restart, so the dark spell has a start
        t0 = time.time()
        assert pair.xc.terminate() == 0, pair.xc.log()
        xc = lab.xcon("--p2p", pair.link)
        wait_api(xc)
        # through first: then a flap, logged during the dark spell, is over
        # (else converged may still be the state before SIGTERM)
        pair.wait_through()
        pair.wait_converged()
        converged = time.time() - t0
        p = pinger.stop()
    dark, lost = max(p.gaps())
    back = next(ts for (ts, _), (dt, _) in zip(p.replies[1:], p.gaps(), strict=True) if dt == dark)
    changes, flaps = pair.transitions_since(mark), pair.flaps_since(mark)
    downs = [t for t in flaps if t.protocol == "bfd"]
    ups = [t for t in changes if t.protocol == "bfd" and t.new == "Up"]
    print(
        f"cold restart: dark {dark * 1000:.0f} ms for ping ({lost} lost at 10 ms), first reply "
        f"{back - t0:.2f} s after SIGTERM; OSPF Full and BFD Up {converged:.2f} s after it"
    )
    if downs:
        print(
            f"cold restart flapped BFD: down {(downs[0].at - t0) * 1000:.0f} ms after SIGTERM, "
            f"up again {max(t.at for t in ups) - t0:.2f} s after it: {flaps}"
        )
    else:
        print("cold restart: no BFD flap")
    # BFD goes down after 150 ms without a packet, sent every 50 ms at most:
    # ping's dark spell (its end within 10 ms) says whether a flap must, or
    # cannot, have been seen; one that was is within the spell, and over
    if dark > 0.3:
        assert {t.peer for t in downs} == {r.ip for r in pair.routers}, changes
    elif dark < 0.1:
        assert changes == [], changes
    assert all(t0 < t.at < back + 0.05 for t in downs), (t0, back, downs)
    assert {t.peer for t in ups} == {t.peer for t in downs}, changes
    for bird in pair.birds:
        assert [s.state for s in bird.bfd_sessions()] == ["Up"]


def test_takeovers_do_not_flap_bfd(lab, routed_pair):
    """``xcon --takeover`` (docs/restart.md) 10 times, BFD at 50 ms x 3: not
    one BFD or OSPF state change; ping's longest gap printed."""
    pair = routed_pair(bfd_ms=50)
    (ra, rb), mark = pair.routers, pair.mark()
    xc = pair.xc
    with Pinger(ra.netns, rb.ip, interval=0.01) as pinger:
        time.sleep(0.3)
        for _ in range(10):
            new = XconProcess(
                ["--p2p", pair.link, "--takeover", "--engine", lab.engine],
                cwd=xc.workdir,
                health_file=xc.health_file,
            )
            lab.xcons.append(new)
            old = xc
            wait_until(
                lambda old=old: old.proc.poll() is not None,
                15,
                lambda old=old, new=new: f"{old.log()}\n{new.log()}",
            )
            assert old.proc.returncode == 0 and "handed over to the new xcon" in old.log()
            xc = new
            wait_api(xc)
            pair.wait_through()
            time.sleep(0.2)  # one handover at a time, as a user makes them
        p = pinger.stop()
    dark, lost = max(p.gaps())
    print(f"10 takeovers: longest ping gap {dark * 1000:.0f} ms ({lost} lost at 10 ms)")
    assert pair.transitions_since(mark) == []


def test_restarts_in_place_do_not_flap_bfd(lab, routed_pair):
    """``xcon ctl restart`` 10 times: the same process runs the command line
    again (``exec``).  On epoll a forked child forwards meanwhile and hands
    its connections back (BFD at 50 ms x 3); on uvloop the process stops
    reading, then execs: the new image's start is the pause, 0.1 to 0.3 s
    on a loaded 2-core machine (BFD at 200 ms x 3; docs/restart.md)."""
    pair = routed_pair(bfd_ms=50 if lab.engine == "epoll" else 200)
    (ra, rb), mark = pair.routers, pair.mark()
    xc = pair.xc
    with Pinger(ra.netns, rb.ip, interval=0.01) as pinger:
        time.sleep(0.3)
        for i in range(10):
            assert ctl(xc, "restart").returncode == 0
            n = 2 * (i + 1)
            wait_until(lambda n=n: xc.log().count("taken over, connected to") >= n, 10, xc.log)
            wait_api(xc)
            pair.wait_through()
            time.sleep(0.3)
        p = pinger.stop()
    dark, lost = max(p.gaps())
    print(f"10 restarts in place: longest ping gap {dark * 1000:.0f} ms ({lost} lost at 10 ms)")
    assert xc.proc.poll() is None, "the same process runs on"
    assert pair.transitions_since(mark) == []
