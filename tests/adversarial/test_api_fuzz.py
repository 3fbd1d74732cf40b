"""Any body to any route of the control API: a 2xx or 4xx answer, never a 5xx,
never an exception out of the handler.

Bodies are random JSON (wrong types, unknown keys, odd unicode) around the
keys the routes read, with the numbers JSON should not carry (``Infinity``,
``NaN``, ``1e400``, thousands of digits) and nesting deep enough to exhaust
the parser's recursion.  The API runs in process on a real engine, with one
p2p link between fake qemu NICs, put back as it was after each request;
capture files land in the test's temporary directory and the routers'
monitors are not called (they would resolve names).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcon.control.routes import NAME, ROUTES, Route
from xcon.impair.spec import parse_netem
from xcon.monitor import Monitor

pytestmark = pytest.mark.adversarial


class Raw:
    """JSON text written as is (what ``json.dumps`` will not write)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)  # a float inf or nan comes out as Infinity or NaN


KEYS = [
    "spec", "monitors", "admin", "file", "snaplen", "filter", "drops", "size_mb", "seconds",
    "files", "direction", "netem", "delay", "jitter", "delay_corr", "distribution", "loss",
    "loss_corr", "gemodel", "duplicate", "corrupt", "corruption", "reorder", "gap", "rate",
    "limit", "link",
]  # fmt: skip
ODD_NUMBERS = [
    "Infinity", "-Infinity", "NaN", "1e308", "-1e308", "1e400", "-1e400", "1e-400", "9" * 5000,
    "-" + "9" * 400, "0.0000000001", "4294967296", "18446744073709551616", "31622401", "-0",
]  # fmt: skip
ODD_TEXT = [
    "", " ", "²", "٣", "1²", "inf", "nan", "1e400", "1e400ms", "1e400bit", "limit ²", "gap ٣",
    "delay 10ms 2ms", "rate 1e400bit", "loss 1e400%", "delay 1e10s", "rate 0.1bit",
    "loss gemodel 1e400", "none", "both", "a2b", "up", "down", "icmp", "\x00", "\ud800", "a/1--b/1",
    "127.0.0.1/7--127.0.0.1/8", "\u202e", "x" * 300, "vr1:4000",
]  # fmt: skip
DEEP = [
    Raw("[" * 30000 + "]" * 30000),
    Raw('{"a":' * 20000 + "1" + "}" * 20000),
    Raw('{"netem": ' + "[" * 30000 + "]" * 30000 + "}"),
]

non_finite = st.sampled_from(["Infinity", "-Infinity", "NaN", "1e400", "-1e400"]).map(Raw)
numbers = st.one_of(
    st.sampled_from(ODD_NUMBERS).map(Raw),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_NUMBERS).map(Raw),
    st.sampled_from([*ODD_NUMBERS, "12", "1.5", "-3", "0"]),  # numbers as text
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    st.text(st.characters(exclude_categories=()), max_size=20),
    st.sampled_from(ODD_TEXT),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=4),
    ),
    max_leaves=12,
)
IMPAIR_KEYS = KEYS[KEYS.index("direction") : KEYS.index("link")]
#: The keys each route reads (a body with any other key stops at the first check).
ROUTE_KEYS = {
    "POST /links": ["spec", "admin", "monitors"],
    "POST /links/NAME/down": ["monitors"],
    "POST /links/NAME/up": ["monitors"],
    "POST /links/NAME/capture": KEYS[KEYS.index("file") : KEYS.index("direction")],
    "GET /links/NAME/capture": ["snaplen", "filter", "drops"],
    "PUT /links/NAME/impair": IMPAIR_KEYS,
    "DELETE /links/NAME/impair": ["direction"],
    "POST /counters/reset": ["link"],
}
#: What a route needs before it reads the rest (without it, most bodies stop there).
NEEDS = {"POST /links/NAME/capture": {"file": "cap.pcapng"}}


def objects(known: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A few of the route's keys with odd values (most often), or any keys."""
    field = st.one_of(non_finite, numbers, numbers, scalars, values, st.sampled_from(DEEP))
    focused = st.dictionaries(st.sampled_from(known), field, min_size=1, max_size=3)
    anything = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), field)
    return st.one_of(focused, focused, focused, anything)


def bodies(route: str) -> st.SearchStrategy[Any]:
    known = ROUTE_KEYS.get(route, KEYS)
    return st.one_of(
        objects(known),
        objects(known),
        objects(known),
        values,
        st.sampled_from(DEEP),
        st.binary(max_size=40).map(lambda b: Raw(b.decode("latin-1"))),
    )


def queries(route: str) -> st.SearchStrategy[dict[str, str]]:
    known = ROUTE_KEYS.get(route, KEYS)
    keys = st.one_of(st.sampled_from(known), st.text(max_size=8))
    text = st.one_of(st.text(max_size=12), st.sampled_from(ODD_TEXT + ODD_NUMBERS))
    return st.dictionaries(keys, text, max_size=3)


def in_tmp(body: Any, where: str) -> Any:
    """``body`` with any capture file moved into ``where`` (the name kept, '/' aside)."""
    if isinstance(body, dict) and isinstance(body.get("file"), str):
        return {**body, "file": os.path.join(where, "f-" + body["file"].replace("/", "_")[:80])}
    return body


def answer(inproc: Any, method: str, path: str, body: Any, query: dict[str, list[str]]) -> None:
    """Send ``body``; the answer must be a 2xx, or a 4xx with one line of error;
    an impairment that was accepted must read back as itself.  The link is
    put back as it was after."""
    try:
        raw = dump(body).encode("utf-8", "surrogatepass")
        status, doc = inproc.call(method, path, raw, query)
        assert 200 <= status < 500, (method, path, body, doc)
        if status >= 400:
            assert isinstance(doc["error"], str) and "\n" not in doc["error"], doc
        link = inproc.app.links.get(inproc.link)
        for direction in ("a2b", "b2a"):
            imp = link.p2p.impairment(direction) if link and link.p2p else None
            assert imp is None or parse_netem(imp.words()) == imp, (body, imp)
    finally:
        inproc.restore()


def test_the_keys_read_are_of_routes_in_the_table():
    assert set(ROUTE_KEYS) | set(NEEDS) <= {str(r) for r in ROUTES}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_any_body_is_answered_2xx_or_4xx(route: Route, inproc, tmp_path, monkeypatch):
    monkeypatch.setattr(Monitor, "set_link", lambda self, up: None)
    method, text = route.method, str(route)
    path = route.path.replace(NAME, inproc.link)  # as the server hands it: decoded

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=bodies(text), query=queries(text), needs=st.integers(0, 3).map(bool))
    def check(body: Any, query: dict[str, str], needs: bool) -> None:
        if needs and isinstance(body, dict):
            body = {**NEEDS.get(text, {}), **body}
        body = in_tmp(body, str(tmp_path))
        answer(inproc, method, path, body, {k: [v] for k, v in query.items()})

    check()
    status, doc = inproc.call("GET", "/health")
    assert status == 200 and doc["links"] == 1


#: Every odd value the sweep below gives each key of each route.
SWEEP = [
    *(Raw(t) for t in ODD_NUMBERS),
    *ODD_TEXT,
    *DEEP,
    None,
    True,
    [],
    {},
    [1, 2],
    {"a": 1},
    -1,
    0,
    1.5,
    2**64,
]


@pytest.mark.parametrize("route", [r for r in ROUTES if str(r) in ROUTE_KEYS], ids=str)
def test_every_key_of_a_route_with_each_odd_value(route: Route, inproc, tmp_path, monkeypatch):
    """The same promise, exhaustively for one odd value at a time (the random
    bodies above mix them)."""
    monkeypatch.setattr(Monitor, "set_link", lambda self, up: None)
    method, text = route.method, str(route)
    path = route.path.replace(NAME, inproc.link)  # as the server hands it: decoded
    for key in ROUTE_KEYS[text]:
        for value in SWEEP:
            body = in_tmp({**NEEDS.get(text, {}), key: value}, str(tmp_path))
            query = {key: [value.text if isinstance(value, Raw) else str(value)]}
            answer(inproc, method, path, body, query)
