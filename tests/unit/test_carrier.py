"""The routers' carrier follows their links (xcon/carrier.py), on FakeEngine's
clock with FakePorts and monitors that record what they are told."""

from __future__ import annotations

import logging

import pytest

from xcon import carrier as carrier_mod
from xcon.app import Xcon
from xcon.carrier import Carriers
from xcon.links import end_name
from xcon.monitor import Monitor, MonitorError
from xcon.testing.fakeport import FakeEngine, FakePort


class Router:
    """What one router's monitor was told, in order; it may be made to fail."""

    def __init__(self) -> None:
        self.told: list[bool] = []
        self.fail: str | None = None

    @property
    def carrier(self) -> bool | None:
        return self.told[-1] if self.told else None


class FakeMonitor(Monitor):
    routers: dict[str, Router] = {}

    def set_link(self, up: bool, timeout: float = 3.0) -> None:
        router = self.routers[self.host]
        if router.fail:
            raise MonitorError(f"monitor {self.host}: {router.fail}")
        router.told.append(up)


@pytest.fixture
def lab():
    engine = FakeEngine()
    app = Xcon(engine=engine, health_path=None)  # type: ignore[arg-type]
    ports: dict[str, FakePort] = {}

    def make_port(services, end):
        ports[end_name(end)] = p = FakePort(services.engine, end_name(end))
        return p

    app.make_port = make_port  # type: ignore[assignment]
    app.open_ports = lambda ps: None
    app.running = True
    routers: dict[str, Router] = {}
    FakeMonitor.routers = routers

    def mon(host: str) -> FakeMonitor:
        routers[host] = Router()
        return FakeMonitor(host, 4000, "p01")

    class Lab:
        pass

    lab = Lab()
    lab.engine, lab.app, lab.ports, lab.routers, lab.mon = engine, app, ports, routers, mon
    lab.carriers = Carriers(app)

    def settle(seconds: float = 0.0) -> None:
        engine.run_soon()
        engine.advance(seconds)
        engine.run_soon()

    lab.settle = settle
    return lab


def add(lab, spec="r1/1--r2/1", **kw):
    left, right = spec.split("--")
    link = lab.app.add_link(spec, {left: lab.mon("r1"), right: lab.mon("r2")}, **kw)
    lab.settle()
    return link


def test_carrier_on_when_both_ends_connect_off_at_once_when_the_far_end_goes(lab):
    add(lab)
    r1, r2 = lab.routers["r1"], lab.routers["r2"]
    assert r1.told == [True] and r2.told == [True]  # both connected: said once
    lab.ports["r2/1"].set_down("peer closed")
    lab.settle()
    assert r1.told == [True, False]  # at once: no timer needed
    assert r2.told == [True]  # r2's own connection is gone: nothing to tell it now
    lab.ports["r2/1"].set_up()
    lab.settle()
    assert r1.told == [True, False, True]  # back, no hold after a steady link
    assert r2.told == [True, True]  # told again: a new qemu starts with carrier on


def test_pulled_link_and_add_down_set_carrier_off_one_way_leaves_it(lab):
    link = add(lab, "r1/1--r2/1", admin_up=False)
    r1, r2 = lab.routers["r1"], lab.routers["r2"]
    assert r1.told == [False] and r2.told == [False]  # `add --down` tells the routers
    lab.app.set_admin(link.name, True)
    lab.settle()
    assert r1.carrier is True and r2.carrier is True
    lab.app.set_admin(link.name, False, "a2b")  # one-way: carrier untouched
    lab.settle()
    assert r1.told == [False, True] and r2.told == [False, True]
    lab.app.set_admin(link.name, False)
    lab.settle()
    assert r1.carrier is False and r2.carrier is False


def test_a_flapping_peer_is_held_before_carrier_goes_on_again(lab):
    add(lab)
    r1 = lab.routers["r1"]
    far = lab.ports["r2/1"]
    for _ in range(3):
        far.set_down("flap")
        lab.settle()
        far.set_up()
        lab.settle()
    # the second and third returns came within the flap window: held
    assert r1.told == [True, False, True, False]
    lab.settle(carrier_mod.HOLD_FIRST)
    assert r1.told == [True, False, True, False, True]
    far.set_down("flap")
    lab.settle()
    far.set_up()
    lab.settle(carrier_mod.HOLD_FIRST)
    assert r1.carrier is False  # the hold doubled
    lab.settle(carrier_mod.HOLD_FIRST)
    assert r1.carrier is True
    lab.settle(carrier_mod.FLAP_WINDOW + 1)  # steady: the next return is at once
    far.set_down("flap")
    lab.settle()
    far.set_up()
    lab.settle()
    assert r1.carrier is True


def test_a_failing_monitor_is_retried_with_backoff_and_counted(lab, caplog):
    caplog.set_level(logging.INFO, "xcon.carrier")
    link = add(lab)
    r1 = lab.routers["r1"]
    r1.fail = "Connection refused"
    lab.app.set_admin(link.name, False)
    lab.settle()
    ec = lab.carriers.of(link.name)["r1/1"]
    assert ec.errors == 1 and ec.last_error.endswith("Connection refused")
    lab.settle(carrier_mod.RETRY_MIN)
    lab.settle(2 * carrier_mod.RETRY_MIN)
    assert ec.errors == 3
    assert caplog.text.count("cannot set r1/1's NIC off") == 1  # logged once per error
    r1.fail = None
    lab.settle(5 * carrier_mod.RETRY_MIN)
    assert r1.carrier is False and ec.state is False and ec.last_error == ""
    assert "r1/1's monitor answers again" in caplog.text


def test_ends_still_connecting_when_added_get_a_grace(lab):
    lab.app.running = False  # ports start later, one at a time
    link = lab.app.add_link("r1/1--r2/1", {"r1/1": lab.mon("r1"), "r2/1": lab.mon("r2")})
    lab.ports["r1/1"].start()
    lab.settle()
    assert lab.routers["r1"].told == []  # r2 may still be connecting
    lab.settle(carrier_mod.START_GRACE)
    assert lab.routers["r1"].told == [False]
    lab.ports["r2/1"].start()
    lab.settle()
    assert lab.routers["r1"].told == [False, True] and lab.routers["r2"].told == [True]
    assert link.name in lab.carriers.ends


def test_a_removed_link_and_exit_set_carrier_off(lab):
    link = add(lab)
    lab.app.remove_link(link.name)
    lab.settle()
    assert lab.routers["r1"].carrier is False and lab.routers["r2"].carrier is False
    add(lab, "r1/2--r2/2")
    assert lab.routers["r1"].carrier is True
    lab.carriers.close()  # --on-exit down
    assert lab.routers["r1"].carrier is False and lab.routers["r2"].carrier is False


def test_on_exit_keep_leaves_the_routers_alone(lab):
    lab.carriers.on_exit = "keep"
    add(lab)
    lab.carriers.close()
    assert lab.routers["r1"].told == [True]


def test_settle_reports_monitor_errors_for_the_api(lab):
    link = add(lab)
    lab.routers["r2"].fail = "Error: Device 'p01' not found"
    lab.app.set_admin(link.name, False)
    got = []
    lab.carriers.settle(link, got.append)
    lab.settle()
    assert got == [["monitor r2: Error: Device 'p01' not found"]]
    got.clear()
    lab.carriers.settle(link, got.append)  # nothing pending for r1; r2 retried now
    lab.settle()
    assert got and got[0][0].endswith("not found")


def test_monitors_by_rule_and_vrnetlabs_convention(lab):
    lab.app.link_added.clear()  # no carrier service: these monitors are not reachable
    lab.app.link_changed.clear()
    lab.app.vrnetlab_monitors = True
    lab.app.monitor_rules = {"r2/1": Monitor("10.0.0.2", 4001, "p05")}
    link = lab.app.add_link("r1/3--r2/1:10")
    assert {k: str(v) for k, v in link.monitors.items()} == {
        "r1/3": "r1:4000,p03",
        "r2/1": "10.0.0.2:4001,p05",
    }
    link = lab.app.add_link("r3/1--tcp:127.0.0.1:9000", {"r3/1": "r3:4100,x1"})
    assert {k: str(v) for k, v in link.monitors.items()} == {"r3/1": "r3:4100,x1"}
