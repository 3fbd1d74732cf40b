"""The control plane's plain parts: config file checks, monitor addresses, the HMP
exchange against a stand-in monitor, --control-listen addresses, ctl helpers."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from xcon.control import parse_listen
from xcon.control.client import link_path, links_table, monitors_arg
from xcon.control.config import ConfigError, parse_config
from xcon.linkspec import SpecError
from xcon.monitor import Monitor, MonitorError, hmp, parse_monitor
from xcon.testing.errors import one_line_error
from xcon.testing.fakemonitor import FakeMonitor

# -- config -----------------------------------------------------------------------------------


def test_config_links_in_both_forms():
    cfg = parse_config(
        {
            "links": ["vr1/1--vr2/1"],
            "link": [
                {"spec": "vr1/2--vr3/1:7", "monitors": {"vr3/1": "vr3:4000"}, "admin": "down"}
            ],
        }
    )
    assert [cl.name for cl in cfg.links] == ["vr1/1--vr2/1", "vr1/2--vr3/1:7"]
    second = cfg.links[1]
    assert not second.admin_up
    assert second.monitors == (("vr3/1", "vr3:4000,p01"),)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"lnks": []}, "unknown key 'lnks'"),
        ({"links": "vr1/1--vr2/1"}, '"links" is a list'),
        ({"link": {"spec": "a/1--b/1"}}, "[[link]] entries are tables"),
        ({"link": [{"spec": 5}]}, '"spec" is the link'),
        ({"link": [{"spec": "a/1--b/1", "colour": 1}]}, "unknown key 'colour'"),
        ({"links": ["a/1b/1"]}, "links[0]: 'a/1b/1': a p2p link is END--END"),
        ({"links": ["a/1--b/1", "a/1--c/1"]}, "a/1 is in two links"),
        ({"link": [{"spec": "a/1--b/1", "admin": "off"}]}, '"admin" is "up" or "down"'),
        ({"link": [{"spec": "a/1--b/1", "monitors": {"c/1": "c:4000"}}]}, "not an end of a/1--b/1"),
        (
            {"link": [{"spec": "a/1--unix:/x", "monitors": {"unix:/x": "h:4000"}}]},
            "name the NIC's netdev",
        ),
    ],
)
def test_config_errors_name_the_file_and_the_entry(doc, message):
    said = one_line_error(ConfigError, parse_config, doc, "lab.toml")
    assert said.startswith("lab.toml: ") and message in said


def test_reloads_asked_for_during_one_share_the_next_read(tmp_path):
    """One read at a time, off the loop; those who asked meanwhile get the
    next read's outcome (so files are applied in the order they were read)."""
    from xcon.app import Xcon
    from xcon.control.config import ConfigReloader
    from xcon.errors import BadRequest
    from xcon.testing.fakeport import FakeEngine

    engine = FakeEngine()  # run_in_thread reads at once and hands back through call_soon
    app = Xcon(engine=engine, health_path=None)
    cfg = tmp_path / "lab.toml"
    cfg.write_text("links = []\n")
    reloader = ConfigReloader(app, str(cfg))
    got: dict[str, object] = {}
    reloader.reload(lambda r: got.setdefault("first", r))
    cfg.write_bytes(b"# caf\xe9\n")  # not UTF-8: the next read's outcome
    reloader.reload(lambda r: got.setdefault("second", r))
    reloader.reload(lambda r: got.setdefault("third", r))
    assert got == {}  # nothing answered inside the call
    engine.run_soon()
    assert got["first"] == {"added": [], "removed": [], "changed": [], "failed": [], "unchanged": 0}
    assert isinstance(got["second"], BadRequest) and got["second"] is got["third"]
    assert "not UTF-8 (byte 0xe9 on line 1)" in str(got["second"])
    assert reloader.reloads == 1


# -- monitors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, default, want",
    [
        ("vr1:4000", "p01", Monitor("vr1", 4000, "p01")),
        ("vr1:4000,net3", "p01", Monitor("vr1", 4000, "net3")),
        ("[::1]:4001", "p02", Monitor("::1", 4001, "p02")),
        ("127.0.0.1:4000,s0", None, Monitor("127.0.0.1", 4000, "s0")),
    ],
)
def test_parse_monitor(text, default, want):
    assert parse_monitor(text, default) == want
    assert parse_monitor(str(want), None) == want


@pytest.mark.parametrize(
    "text, message",
    [
        ("vr1", "expected HOST:PORT"),
        ("vr1:99999", "is not in 1..65535"),
        ("::1:4000", "in brackets"),
        ("vr1:4000", "name the NIC's netdev"),
        ("vr1:4000,bad netdev", "is not a qemu netdev id"),
        ("-x:4000,p01", "not a valid host name"),
    ],
)
def test_parse_monitor_errors(text, message):
    with pytest.raises(SpecError, match=message):
        parse_monitor(text, None)


def test_hmp_set_link_against_a_monitor_that_echoes():
    mon = FakeMonitor({"set_link nope off": "Error: Device 'nope' not found"})
    try:
        Monitor("127.0.0.1", mon.port, "p01").set_link(False)
        Monitor("127.0.0.1", mon.port, "p01").set_link(True)
        with pytest.raises(MonitorError, match="Device 'nope' not found"):
            Monitor("127.0.0.1", mon.port, "nope").set_link(False)
        assert mon.commands == ["set_link p01 off", "set_link p01 on", "set_link nope off"]
    finally:
        mon.close()


def test_hmp_unreachable_and_silent_monitors_are_one_line():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(MonitorError, match=f"monitor 127.0.0.1:{port}: "):
        hmp("127.0.0.1", port, "info network", timeout=1)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        with pytest.raises(MonitorError, match="no prompt within"):
            hmp("127.0.0.1", silent.getsockname()[1], "info network", timeout=0.3)
    finally:
        silent.close()


# -- addresses and the client's helpers ---------------------------------------------------------


def test_control_listen_addresses():
    assert parse_listen("127.0.0.1:9810") == ("127.0.0.1", 9810)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:9") == ("127.0.0.1", 9)
    with pytest.raises(ValueError, match="not a loopback address"):
        parse_listen("0.0.0.0:9810")
    assert parse_listen("0.0.0.0:9810", any_address=True) == ("0.0.0.0", 9810)
    for bad in ("9810", "vr1:9810", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_client_helpers():
    assert link_path("vr1/1--unix:/a b", "down") == "/links/vr1%2F1--unix%3A%2Fa%20b/down"
    assert monitors_arg(["vr1/1=vr1:4000", "vr2/1=[::1]:4000,p01"]) == {
        "vr1/1": "vr1:4000",
        "vr2/1": "[::1]:4000,p01",
    }
    with pytest.raises(ValueError):
        monitors_arg(["vr1:4000"])
    assert links_table([]) == "no links\n"


# -- access ---------------------------------------------------------------------------
def test_access_roles_and_what_each_may_do(tmp_path):
    from xcon.control.access import (
        ADMIN,
        NOBODY,
        OPERATOR,
        READER,
        Access,
        Peer,
        Refused,
        parse_allow_ends,
    )

    me = os.geteuid()
    acc = Access(token="t" * 20, group=4242, allow_ends=parse_allow_ends("qemu,udp"))
    unix = lambda uid, gid=9999, groups=(): Peer("unix", uid=uid, gid=gid, groups=groups)  # noqa: E731
    tcp = Peer("tcp", address="127.0.0.1:5555")
    assert acc.role(unix(0), None) == ADMIN
    assert acc.role(unix(me), None) == ADMIN
    assert acc.role(unix(1234, gid=4242), None) == OPERATOR
    assert acc.role(unix(1234, groups=(1, 4242)), None) == OPERATOR
    assert acc.role(unix(1234), None) == NOBODY
    assert acc.role(Peer("unix"), None) == NOBODY  # no credentials: nobody
    assert acc.role(tcp, None) == READER
    assert acc.role(tcp, "Bearer " + "t" * 20) == OPERATOR
    assert acc.role(tcp, "bearer   " + "t" * 20 + " ") == OPERATOR
    assert acc.role(tcp, "Bearer " + "t" * 19) == READER
    assert acc.role(tcp, "Basic " + "t" * 20) == READER
    # a reader: GETs of the index, links, health and metrics only
    for path in ("/", "/links", "/links/a%2F1--b%2F1", "/health", "/metrics", "/links/"):
        assert acc.check(tcp, "GET", path, None) == READER
    for method, path in (
        ("GET", "/links/x/capture"),
        ("POST", "/links"),
        ("DELETE", "/links/x"),
        ("POST", "/reload"),
        ("GET", "/nowhere"),
    ):
        with pytest.raises(Refused) as e:
            acc.check(tcp, method, path, None)
        assert e.value.status == 401
    with pytest.raises(Refused) as e:
        acc.check(unix(1234), "GET", "/links", None)
    assert e.value.status == 403 and "uid 1234" in str(e.value)
    # operators add only the allowed kinds, and name no monitors
    acc.check_add(OPERATOR, tcp, ["qemu", "udp"])
    acc.check_add(ADMIN, tcp, ["raw", "tap"])
    with pytest.raises(Refused, match="with raw ends"):
        acc.check_add(OPERATOR, tcp, ["qemu", "raw"])
    with pytest.raises(Refused, match="monitors"):
        acc.check_monitors(OPERATOR, tcp)
    acc.check_monitors(ADMIN, tcp)
    assert acc.refused == {"token": 5, "forbidden": 3}
    # without a token the TCP listener is read-only: 403, saying how to allow changes
    with pytest.raises(Refused) as e:
        Access().check(tcp, "POST", "/links", "Bearer anything-at-all-here")
    assert e.value.status == 403 and "--control-token-file" in str(e.value)


def test_allow_ends_and_group_arguments():
    from xcon.control.access import END_KINDS, parse_allow_ends, parse_group

    assert parse_allow_ends("none") == frozenset()
    assert parse_allow_ends(" qemu , vxlan ") == {"qemu", "vxlan"}
    assert parse_allow_ends(",".join(END_KINDS)) == set(END_KINDS)
    for bad in ("", ",", "qemu,nope", "QEMU"):
        with pytest.raises(ValueError, match="--control-allow-ends"):
            parse_allow_ends(bad)
    assert parse_group("0") == 0
    assert parse_group("root") == 0
    with pytest.raises(ValueError, match="no such group"):
        parse_group("no-such-group-here-xyz")


def test_token_file_made_and_read(tmp_path):
    from xcon.control.access import load_token, read_token_file
    from xcon.errors import ModeError

    path = str(tmp_path / "token")
    made = load_token(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_token(path) == made == read_token_file(path)
    os.chmod(path, 0o640)
    with pytest.raises(ModeError, match="chmod 600") as e:
        load_token(path)
    assert e.value.exit_code == 2
    os.mkfifo(tmp_path / "fifo", 0o600)
    with pytest.raises(ModeError, match="not a regular file"):
        load_token(str(tmp_path / "fifo"))  # opened non-blocking: never waits for a writer
    with pytest.raises(ValueError, match="--token-file"):
        read_token_file(str(tmp_path / "missing"))
