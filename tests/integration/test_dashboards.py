"""The Grafana dashboard (docs/grafana/xcon.json) and the Prometheus alerting
rules (docs/prometheus/xcon-rules.yml): promtool checks the rules and runs
them on made-up series; every metric their expressions name is one a live
xcon exports; the dashboard is one Grafana imports (its datasource an input,
unique panel ids)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from xcon.control.client import link_path
from xcon.testing.control import call, wait_api
from xcon.testing.fakemonitor import FakeMonitor
from xcon.testing.fakeqemu import endpoint
from xcon.testing.frames import numbered
from xcon.testing.promtool import PROMTOOL, requires_promtool
from xcon.testing.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "xcon.json"
RULES = ROOT / "docs" / "prometheus" / "xcon-rules.yml"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
#: Series Prometheus makes itself for every target, not in any /metrics.
PROMETHEUS_OWN = {"up"}

# -- metric names in PromQL -----------------------------------------------------------------

#: Words of PromQL that are not metric names when they stand alone.
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2", "start", "end",
}  # fmt: skip
_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
_GRAFANA_VAR = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"\s*label_values\(\s*(?:(.*?)\s*,\s*)?\w+\s*\)\s*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers used bare or
    before ``{`` or ``[``; not functions (before ``(``), keywords, label names
    (inside ``{}``, after ``by``/``on``/...), strings or Grafana's ``$variables``."""
    m = _LABEL_VALUES.fullmatch(expr)  # a Grafana variable's query
    if m is not None:
        return metric_names(m[1]) if m[1] else set()
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VAR.sub("1", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    return {
        name
        for name, call_paren in _IDENT.findall(text)
        if not call_paren and name.lower() not in KEYWORDS
    }


@pytest.mark.parametrize(
    "expr, names",
    [
        ('up{job="xcon"} == 0', {"up"}),
        ('absent(up{job="xcon"})', {"up"}),
        (
            'sum by (link, reason) (rate(a_total{reason!="x", l=~"$link"}[$__rate_interval])) > 0',
            {"a_total"},
        ),
        ("a == 0 and on (job, link) b_info == 1", {"a", "b_info"}),
        (
            'histogram_quantile(0.99, sum by (le) (rate(h_bucket{x="}{ by (z) [1m]"}[5m])))',
            {"h_bucket"},
        ),
        (
            "8 * rate(b_total[1m] offset 1h) / ignoring(reason) group_left c:rate5m",
            {"b_total", "c:rate5m"},
        ),
        ("max_over_time(x[10m:1m]) > bool 1e3 or vector(0)", {"x"}),
        ("label_values(xcon_build_info, job)", {"xcon_build_info"}),
        ('label_values(m{job=~"$job"}, instance)', {"m"}),
        ("label_values(job)", set()),
    ],
)
def test_metric_names_of_promql(expr, names):
    assert metric_names(expr) == names


# -- the files --------------------------------------------------------------------------------


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_exprs() -> list[str]:
    d = dashboard()
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        q = v.get("query")
        exprs.append(q["query"] if isinstance(q, dict) else q)
    return exprs


_EXPR = re.compile(r"^\s*(?:- )?expr:\s*(.*)$")


def rule_exprs(text: str) -> list[str]:
    """The ``expr:`` of every rule of a rules file: a plain or quoted scalar, or
    a block (``|``, ``>``) of the lines indented under it."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _EXPR.match(line)
        if m is None:
            continue
        value = m[1].strip()
        if value[:1] in ("|", ">"):
            block = []
            for nxt in lines[i + 1 :]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= line.index("expr:"):
                    break
                block.append(nxt.strip())
            value = " ".join(block)
        elif value[:1] in ("'", '"') and value[-1:] == value[:1]:
            value = value[1:-1]
        out.append(value)
    return out


def test_rule_exprs_are_read_from_any_scalar_form():
    text = "a:\n  - expr: x > 0\n    for: 1m\n  - expr: |\n      sum(y)\n        > 1\n    for: 5m\n"
    text += "  - alert: Z\n    expr: 'absent(z{a=\"b\"})'\n"
    assert rule_exprs(text) == ["x > 0", "sum(y) > 1", 'absent(z{a="b"})']


def promtool(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], input=input, capture_output=True, text=True, timeout=60
    )


@requires_promtool
def test_rules_pass_promtool_check():
    r = promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"SUCCESS: (\d+) rules found", r.stdout)
    assert m, r.stdout
    # every rule's expression is read here, so the metric check below sees them all
    assert len(rule_exprs(RULES.read_text(encoding="utf-8"))) == int(m[1])


LAB = {"job": "xcon", "instance": "lab:9810"}


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    shown = ",".join(f'{k}="{v}"' for k, v in {**LAB, **labels}.items())
    return {"series": f"{name}{{{shown}}}", "values": values}


#: Each alert's severity, summary and description as it fires in the tests above.
_FIRED = {
    "XconLinkEndDown": (
        "warning",
        "vr2/1 of link vr1/1--vr2/1 is down",
        "The end vr2/1 of link vr1/1--vr2/1 on lab:9810 has not been connected for 30 s while "
        "the link is administratively up: its router is down or restarting (xcon ctl link "
        "vr1/1--vr2/1).",
    ),
    "XconDown": (
        "critical",
        "xcon lab:9810 cannot be scraped",
        "Prometheus has not reached xcon's /metrics at lab:9810 for 1 minute: xcon stopped, "
        "or its --control-listen address is not reachable.",
    ),
    "XconAbsent": (
        "critical",
        "No xcon is scraped",
        "No target of job xcon has been scraped for 5 minutes: check the scrape configuration.",
    ),
    "XconMonitorFailing": (
        "warning",
        "The qemu monitor of vr2/1 fails",
        "Commands to the qemu monitor of the router at vr2/1 (link vr1/1--vr2/1, xcon on "
        "lab:9810) have failed in the last 5 minutes: its NIC's carrier may not follow the "
        "link (docs/carrier.md).",
    ),
    "XconLinkTransmitDrops": (
        "warning",
        "Link vr1/1--vr2/1 drops frames for vr2/1 (port_down)",
        "xcon on lab:9810 has dropped {value} frames/s meant for vr2/1 of link vr1/1--vr2/1 "
        "for 5 minutes, reason port_down (an impairment's own losses are left out).",
    ),
}


def alerts(name: str, at: str, *firing: dict[str, object]) -> dict[str, object]:
    """An ``alert_rule_test``: at ``at``, alert ``name`` fires as ``firing`` (nothing: it does not)."""
    return {"eval_time": at, "alertname": name, "exp_alerts": list(firing)}


def fired(name: str, labels: dict[str, str] | None = None, value: str = "") -> dict[str, object]:
    """Alert ``name`` as it fires: its labels (the series' and the rule's) and
    its annotations, templated (``_FIRED``)."""
    severity, summary, description = _FIRED[name]
    # absent() has only the labels of its selector's equalities
    base = {"job": "xcon"} if name == "XconAbsent" else LAB
    return {
        "exp_labels": {**base, **(labels or {}), "severity": severity},
        "exp_annotations": {"summary": summary, "description": description.format(value=value)},
    }


@requires_promtool
def test_the_alerts_fire_as_their_rules_say(tmp_path):
    """``promtool test rules``: Prometheus' own evaluation of the rules on
    series made up here, with the alerts that must (and must not) fire."""
    link = "vr1/1--vr2/1"
    end = {"link": link, "end": "vr2/1"}
    pulled = {"link": "vr1/2--vr3/1", "end": "vr3/1"}
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "10s",
        "tests": [
            {
                "interval": "10s",
                "input_series": [
                    series("xcon_link_end_up", "1 1 0x20", **end),
                    series("xcon_link_admin_up", "1x22", link=link),
                    # a pulled cable is not an alert
                    series("xcon_link_end_up", "0x22", **pulled),
                    series("xcon_link_admin_up", "0x22", link=pulled["link"]),
                ],
                "alert_rule_test": [
                    alerts("XconLinkEndDown", "40s"),  # down 20 s: not yet
                    alerts("XconLinkEndDown", "60s", fired("XconLinkEndDown", end)),
                ],
            },
            {
                "interval": "1m",
                "input_series": [series("up", "1 0 0 0")],
                "alert_rule_test": [
                    alerts("XconDown", "1m"),
                    alerts("XconDown", "3m", fired("XconDown")),
                    alerts("XconAbsent", "3m"),
                ],
            },
            {
                "interval": "1m",
                "input_series": [],
                "alert_rule_test": [alerts("XconAbsent", "6m", fired("XconAbsent"))],
            },
            {
                "interval": "1m",
                "input_series": [
                    series("xcon_link_monitor_errors_total", "0 0 0 1 2 2 2", **end),
                    series("xcon_link_transmit_drop_total", "0+60x12", reason="port_down", **end),
                    series("xcon_link_transmit_drop_total", "0+60x12", reason="impair_loss", **end),
                ],
                "alert_rule_test": [
                    alerts("XconMonitorFailing", "2m"),
                    alerts("XconMonitorFailing", "5m", fired("XconMonitorFailing", end)),
                    # the impairment's own losses are not an alert
                    alerts(
                        "XconLinkTransmitDrops",
                        "11m",
                        fired("XconLinkTransmitDrops", {**end, "reason": "port_down"}, value="1"),
                    ),
                ],
            },
        ],
    }
    path = tmp_path / "xcon-rules.test.yml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    r = promtool("test", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


# -- the dashboard ------------------------------------------------------------------------------


def test_dashboard_is_importable():
    d = dashboard()
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    assert d["__inputs"][0]["pluginId"] == "prometheus" and d["__inputs"][0]["type"] == "datasource"
    assert d["id"] is None and d["uid"] and d["title"] == "xcon"
    ids = [p["id"] for p in d["panels"]]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), ids
    for p in d["panels"]:
        assert p["datasource"] == DATASOURCE, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), p["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert {"job", "instance"} <= set(variables)
    assert all(v["datasource"] == DATASOURCE for v in variables.values())
    # no two panels share a cell of the grid (Grafana would push one down)
    cells: dict[tuple[int, int], str] = {}
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, (p["title"], cells.get((x, y)))
                cells[(x, y)] = p["title"]
    # the panels the dashboard is for
    used = set().union(*map(metric_names, dashboard_exprs()))
    assert {
        "xcon_link_receive_frames_total",
        "xcon_link_transmit_bytes_total",
        "xcon_link_receive_drop_total",
        "xcon_link_transmit_drop_total",
        "xcon_link_end_up",
        "xcon_link_end_carrier",
        "xcon_link_admin_up",
        "xcon_link_impairment_info",
        "xcon_capture_drops_total",
        "xcon_link_delay_lateness_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    } <= used


#: Grafana's variables as a query sees them once filled in.
_FILLED = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$job": "xcon",
    "$instance": ".*",
    "$link": ".*",
}


@requires_promtool
def test_dashboard_queries_are_promql_prometheus_parses(tmp_path):
    """Each query, its variables filled in as Grafana does, is a recording rule
    that ``promtool check rules`` parses (a variable's ``label_values(M, L)``: M)."""
    rules = []
    for i, expr in enumerate(dashboard_exprs()):
        m = _LABEL_VALUES.fullmatch(expr)
        if m is not None:
            expr = m[1] or "vector(1)"
        for var, value in _FILLED.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"xcon:dashboard_query_{i}", "expr": expr})
    path = tmp_path / "queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = promtool("check", "rules", str(path))
    assert r.returncode == 0 and f"SUCCESS: {len(rules)} rules found" in r.stdout, (
        r.stdout + r.stderr
    )


# -- against a live xcon ----------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["epoll"])  # the names, not the engines, are under test
def test_every_metric_named_is_one_xcon_exports(peers, xcon, tmp_path):
    """xcon with a link that forwards and drops, a capture, an impairment (delay,
    loss, duplicates) and a monitor, so that the series present only then are."""
    a, b = peers(), peers()
    mon = FakeMonitor()
    try:
        link = f"{endpoint(a)}--{endpoint(b)}"
        xc = xcon(
            "--p2p",
            link,
            "--capture",
            f"{link}={tmp_path / 'link.pcapng'}",
            "--impair",
            f"{link}:a2b=delay 1ms loss 20% duplicate 20%",
            "--seed",
            "1",
            "--monitor",
            f"{endpoint(a)}={mon.address},p01",
        )
        xc.wait_health("0", contains="All 2 sockets connected")
        wait_api(xc)
        a.send_frames([numbered(i, 100) for i in range(100)])
        b.wait_frames(50)
        assert call(xc, "POST", link_path(link, "down"))[0] == 200
        a.send_frames([numbered(i, 100) for i in range(100, 105)])  # dropped: admin_down

        def exported() -> set[str]:
            _status, text = call(xc, "GET", "/metrics")
            return {s.name for f in text_string_to_metric_families(text) for s in f.samples}

        have: set[str] = set()
        lazy = {"xcon_link_receive_drop_total", "xcon_link_transmit_impaired_total"}

        def all_there() -> bool:
            have.update(exported())
            return lazy <= have

        wait_until(all_there, 5, lambda: f"{lazy - have} in /metrics")
    finally:
        mon.close()
    used = {
        name: where
        for where, exprs in (
            ("dashboard", dashboard_exprs()),
            ("rules", rule_exprs(RULES.read_text())),
        )
        for expr in exprs
        for name in metric_names(expr)
    }
    missing = {n: w for n, w in used.items() if n not in have and n not in PROMETHEUS_OWN}
    assert missing == {}, sorted(have)
