"""One table of routes: the API dispatches from it, ``GET /`` lists it, the
access check takes its reads from it, ``xcon ctl`` has its subcommands from it,
and docs/control.md lists the same routes.  Each test fails when one of them
differs from the table."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator

import pytest

from xcon.app import Xcon
from xcon.control import client
from xcon.control.access import READER, Access, Peer, Refused
from xcon.control.api import ControlAPI
from xcon.control.routes import NAME, ROUTES, NoRoute, Route, WrongMethod, commands, resolve
from xcon.control.server import Request, Response
from xcon.testing.fakeport import FakeEngine

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "control.md")
LINK = "vr1/1--unix:/run/a b"  # a name with '/' in it, and a space


def docs_routes() -> list[str]:
    """The first column of the table under ``## Routes`` in docs/control.md."""
    with open(DOCS, encoding="utf-8") as f:
        text = f.read()
    section = re.search(r"^## Routes\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, "docs/control.md has no '## Routes' section"
    rows = re.findall(r"^\|\s*`([A-Z]+ /[^`]*)`\s*\|\s*(.*?)\s*\|\s*$", section.group(1), re.M)
    assert all(does for _route, does in rows), "a route in docs/control.md says nothing"
    return [route for route, _does in rows]


@pytest.mark.skipif(not os.path.exists(DOCS), reason="no docs/control.md in this tree")
def test_the_docs_list_the_routes_of_the_table():
    listed = docs_routes()
    assert len(listed) == len(set(listed)), "a route listed twice in docs/control.md"
    table = [str(r) for r in ROUTES]
    assert set(listed) == set(table), (
        f"docs/control.md lists {sorted(set(listed) - set(table))} that xcon does not "
        f"answer, and leaves out {sorted(set(table) - set(listed))}"
    )


def test_routes_are_distinct_and_name_handlers_and_commands():
    assert len({str(r) for r in ROUTES}) == len(ROUTES)
    assert len({r.handler for r in ROUTES}) == len(ROUTES)
    for r in ROUTES:
        assert r.path.startswith("/") and r.path.count(NAME) <= 1 and r.does
    # every route but the one a new xcon calls (--takeover) is an xcon ctl subcommand
    assert [r.path for r in ROUTES if not r.ctl] == ["/handover"]


@pytest.fixture
def api() -> Iterator[ControlAPI]:
    app = Xcon(engine=FakeEngine(), health_path=None)
    api = ControlAPI(app, "fake")
    try:
        yield api
    finally:
        api.close()
        app.close()


def request(method: str, path: str, peer: Peer | None = None, auth: str = "") -> Request:
    headers = {"authorization": auth} if auth else {}
    if peer is None:
        return Request(method, path, {}, headers, b"")
    return Request(method, path, {}, headers, b"", peer=peer)


def test_get_index_lists_the_table(api):
    answer = api(request("GET", "/"))
    assert isinstance(answer, Response) and answer.status == 200
    assert json.loads(answer.body)["routes"] == [str(r) for r in ROUTES]


def test_every_route_reaches_its_handler_with_the_link_name(api):
    """Each route's methods and path (a link name with '/' in it) reach the
    method the table names, with the name; nothing else does."""
    reached: list[tuple[Route, str]] = []
    for r in ROUTES:
        assert api.handlers[r].__name__ == r.handler
        api.handlers[r] = lambda req, name, r=r: reached.append((r, name)) or Response(200, b"")
    for r in ROUTES:
        for method in r.methods:
            reached.clear()
            answer = api(request(method, r.path.replace(NAME, LINK) + "/"))
            assert answer.status == 200 and reached == [(r, LINK if NAME in r.path else "")]


@pytest.mark.parametrize(
    "method, path, status, allowed",
    [
        ("GET", "/nowhere", 404, None),
        ("GET", "/links/x/nowhere/else/capturex", 200, None),  # a link named so: GET /links/NAME
        ("PUT", "/links", 405, "GET, POST"),
        ("PATCH", "/links/x", 405, "GET, DELETE"),
        ("GET", "/links/x/impair", 405, "PUT, POST, DELETE"),
        ("GET", "/links/x/down", 405, "POST"),
        ("HEAD", "/health", 405, "GET"),
        ("GET", "/reload", 405, "POST"),
    ],
)
def test_a_path_or_method_not_in_the_table(api, method, path, status, allowed):
    for r in ROUTES:
        api.handlers[r] = lambda req, name: Response(200, b"")
    answer = api(request(method, path))
    assert answer.status == status
    if allowed is not None:
        assert ("Allow", allowed) in answer.headers
        assert json.loads(answer.body) == {"error": f"method not allowed here (allowed: {allowed})"}
    if status == 404:
        assert json.loads(answer.body) == {"error": f"no such route: {method} {path} (see GET /)"}


def test_a_link_present_owns_its_name_over_a_longer_route():
    """``/links/a/1--b:/x/down`` is ``NAME/down`` of ``a/1--b:/x`` unless a
    link called ``a/1--b:/x/down`` is present."""
    path = "/links/a/1--unix:/x/down"
    assert resolve("POST", path) == (ROUTES_BY["POST /links/NAME/down"], "a/1--unix:/x")
    present = {"a/1--unix:/x/down"}.__contains__
    assert resolve("GET", path, present) == (ROUTES_BY["GET /links/NAME"], "a/1--unix:/x/down")
    with pytest.raises(WrongMethod):
        resolve("GET", path)
    with pytest.raises(NoRoute):
        resolve("GET", "/link")


ROUTES_BY = {str(r): r for r in ROUTES}


def test_a_reader_makes_the_table_reads_and_nothing_else():
    """Over TCP without the token: the routes marked ``read``, no others (the
    live capture is not one: GET /links/NAME/capture)."""
    access = Access(token="t" * 20)
    tcp = Peer("tcp", address="127.0.0.1:5555")
    for r in ROUTES:
        for method in r.methods:
            path = r.path.replace(NAME, "a/1--b/1")
            if r.read:
                assert access.check(tcp, method, path, None) == READER
                assert access.check(tcp, "HEAD", path, None) == READER
            else:
                with pytest.raises(Refused) as e:
                    access.check(tcp, method, path, None)
                assert e.value.status == 401, str(r)
    assert {str(r) for r in ROUTES if r.read} == {
        "GET /",
        "GET /links",
        "GET /links/NAME",
        "GET /health",
        "GET /metrics",
    }
    with pytest.raises(Refused) as e:
        Access().check(tcp, "POST", "/reload", None)
    assert "read-only (GET of /, /links, /links/NAME, /health, /metrics)" in str(e.value)


#: ``xcon ctl`` command lines: together they make every request of the table.
CTL = [
    "status",
    "links",
    "add a/1--b/1 --monitor a/1=a:4000 --down",
    "link L",
    "remove L",
    "down L",
    "down L --direction a2b",
    "flap L --down 2s --up 10s --count 3",
    "flap L --stop",
    "up L --monitor a/1=a:4000",
    "capture L -w f.pcapng --filter icmp --size 10 --files 2",
    "capture L -w - --snaplen 128 --no-drops",
    "capture L --stop",
    "capture L --list",
    "impair L delay 10ms --direction a2b",
    "impair L --clear",
    "reset",
    "reset L",
    "health",
    "metrics",
    "reload",
    "restart",
    "events --link L --type link.down,admin",
]


def test_ctl_has_one_subcommand_per_command_of_the_table():
    parser = client.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    # then the views made of several requests (top)
    assert list(sub.choices) == commands() + list(client.VIEWS)
    assert commands() == list(dict.fromkeys(r.ctl for r in ROUTES if r.ctl))
    assert not set(client.VIEWS) & set(commands())
    assert set(client.SUBCOMMANDS) == set(commands())


@pytest.mark.parametrize("line", CTL)
def test_a_ctl_command_makes_a_request_of_the_table(line):
    argv = shlex.split(line)
    call = client.plan(client.build_parser().parse_args(argv))
    assert call.route in ROUTES
    assert call.path.startswith(call.route.target(call.name))
    if call.route.ctl != argv[0]:  # capture --list reads the link
        assert line == "capture L --list" and str(call.route) == "GET /links/NAME"


def test_ctl_makes_every_request_of_the_table_from_its_own_command():
    made = set()
    for line in CTL:
        argv = shlex.split(line)
        call = client.plan(client.build_parser().parse_args(argv))
        if call.route.ctl == argv[0]:
            made.add(call.route)
    assert made == {r for r in ROUTES if r.ctl}


def test_ctl_requests_carry_what_the_options_say():
    def plan(line: str) -> client.Call:
        return client.plan(client.build_parser().parse_args(shlex.split(line)))

    add = plan("add b/1--a/1 --monitor a/1=a:4000 --down")
    assert add.body == {"spec": "b/1--a/1", "admin": "down", "monitors": {"a/1": "a:4000"}}
    live = plan(f"capture '{LINK}' -w - --snaplen 128 --no-drops")
    assert live.live and live.path == (
        "/links/vr1%2F1--unix%3A%2Frun%2Fa%20b/capture?snaplen=128&drops=false"
    )
    assert plan("impair L --clear --direction b2a").body == {"direction": "b2a"}
    assert plan("reset").body == {} and plan("reset L").body == {"link": "L"}
    with pytest.raises(ValueError, match="apply to -w NAME only"):
        plan("capture L -w - --files 3")


def test_ctl_help_explains_the_arguments(capsys):
    for line, wants in (
        ("add --help", ["END--END", "HMP monitor", "netdev"]),
        ("impair --help", ["a2b: the frames from the link's first end to its second", "b2a"]),
        ("remove --help", ["either order"]),
    ):
        with pytest.raises(SystemExit):
            client.build_parser().parse_args(shlex.split(line))
        out = " ".join(capsys.readouterr().out.split())
        for want in wants:
            assert want in out, (line, want)
