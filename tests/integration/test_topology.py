"""``xcon --topology`` between fake qemu NICs: the links and hubs of a
vrnetlab lltopo.json and of a containerlab file forward, and SIGHUP applies
only the file's difference (a link added forwards, a removed one is gone, an
untouched one loses nothing), as with ``--config``."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from xcon.control.client import link_path
from xcon.links import VRNETLAB_MONITOR_PORT
from xcon.testing.control import call, wait_api, write
from xcon.testing.fakeqemu import FakeQemu, endpoint
from xcon.testing.frames import ether
from xcon.testing.process import XconProcess
from xcon.testing.traffic import Stream

#: topo --run --prefix: the fake routers' names are their loopback addresses
#: less this prefix, which xcon puts back (as topo names the containers).
PREFIX = "127."


def lltopo(links: list[tuple[FakeQemu, FakeQemu]], hub: list[FakeQemu]) -> str:
    """An lltopo.json as topo --build writes it, for these NICs."""

    def side(q: FakeQemu) -> dict[str, object]:
        return {"interface": f"ge-0/0/{q.nic - 1}", "numeric": q.nic, "router": q.host[4:]}

    routers = {q.host[4:]: {"type": "vmx", "version": "16.1R1.7"} for q in hub}
    doc = {
        "hubs": {"mgmt": [side(q) for q in hub]},
        "links": [{"left": side(a), "right": side(b)} for a, b in links],
        "routers": routers,
    }
    return json.dumps(doc, indent=4, sort_keys=True)


def forwards(a: FakeQemu, b: FakeQemu, text: bytes) -> None:
    """A frame from ``a`` reaches ``b``."""
    before = len(b.frames)
    a.send(ether(text))
    b.wait_frames(before + 1)
    assert b.frames[-1] == ether(text)


def names(xc: XconProcess) -> list[str]:
    _s, doc = call(xc, "GET", "/links")
    return sorted(x["name"] for x in doc["links"])


def reload(xc: XconProcess, path: Path, text: str, done: str) -> str:
    write(path, text)
    xc.proc.send_signal(signal.SIGHUP)
    return xc.wait_log(done)


def test_lltopo_links_and_hub_then_sighup_applies_the_difference(peers, xcon, monitors, tmp_path):
    p = [peers() for _ in range(9)]
    l1, l2, l3 = (p[0], p[1]), (p[2], p[3]), (p[7], p[8])
    # vrnetlab's monitors (ROUTER:4000) of l2's and l3's first routers
    m2, m7 = (monitors(host=q.host, port=VRNETLAB_MONITOR_PORT) for q in (p[2], p[7]))
    path = tmp_path / "lltopo.json"
    write(path, lltopo([l1, l2], [p[4], p[5], p[6]]))
    xc = xcon("--topology", str(path), "--topology-prefix", PREFIX, "--monitors", "vrnetlab")
    xc.wait_health("0", contains="All 7 sockets connected")
    m2.wait_link(True)
    wait_api(xc)
    name1 = f"{endpoint(p[0])}--{endpoint(p[1])}"
    assert names(xc) == sorted([name1, f"{endpoint(p[2])}--{endpoint(p[3])}", "mgmt"])
    _s, doc = call(xc, "GET", link_path(name1))
    assert doc["source"] == "topology"
    forwards(p[2], p[3], b"over l2")
    forwards(p[4], p[6], b"into the hub")
    p[5].wait_frames(1)  # the hub sends to both; each fake NIC reads on its own thread
    assert p[5].frames == [ether(b"into the hub")]
    stream = Stream(*l1)
    # l2 goes, l3 comes, the hub loses p6; l1 stays
    reload(xc, path, lltopo([l1, l3], [p[4], p[5]]), "1 added, 1 removed, 1 changed, 1 unchanged")
    p[2].wait_disconnected()
    p[6].wait_disconnected()
    m2.wait_link(False)  # a link removed: its routers' NICs lose carrier
    xc.wait_health("0", contains="All 6 sockets connected")
    m7.wait_link(True)
    forwards(p[7], p[8], b"over l3")
    forwards(p[5], p[4], b"the hub again")
    # a broken file changes nothing, and says why in one line
    log = reload(xc, path, '{"links": [{"left": {}}]}', "reload failed, nothing changed")
    line = next(x for x in log.splitlines() if "reload failed" in x)
    assert line.endswith(f'{path}: links[0]: no "right" side (a link has "left" and "right")')
    assert names(xc) == sorted([name1, f"{endpoint(p[7])}--{endpoint(p[8])}", "mgmt"])
    stream.finish()
    assert p[0].accepted == 1 and p[1].accepted == 1
    assert xc.terminate() == 0, xc.log()
    assert "Traceback" not in xc.log(), xc.log()


def clab(links: list[tuple[FakeQemu, FakeQemu]], client: FakeQemu) -> str:
    """A containerlab file whose vrnetlab nodes are the fake NICs (``prefix:
    ""``: a container is named as its node), and a linux node."""
    nodes = {q.host for pair in links for q in pair}
    lines = ["name: xcon-test", 'prefix: ""', "topology:", "  nodes:"]
    lines += [f'    "{host}":\n      kind: juniper_vmx' for host in sorted(nodes)]
    lines += ["    client:", "      kind: linux", "  links:"]
    lines += [f'    - endpoints: ["{a.host}:eth{a.nic}", "{b.host}:eth{b.nic}"]' for a, b in links]
    lines += [f'    - endpoints: ["client:eth1", "{client.host}:eth2"]']
    return "\n".join(lines) + "\n"


def test_clab_links_then_sighup_applies_the_difference(peers, xcon, tmp_path):
    p = [peers() for _ in range(6)]
    l1, l2, l3 = (p[0], p[1]), (p[2], p[3]), (p[4], p[5])
    path = tmp_path / "lab.clab.yml"
    write(path, clab([l1, l2], p[0]))
    xc = xcon("--topology", str(path))
    xc.wait_health("0", contains="All 4 sockets connected")
    wait_api(xc)
    assert f"{path}: links[2] passed over: client (linux) is not a vrnetlab router" in xc.log()
    forwards(p[2], p[3], b"over l2")
    stream = Stream(*l1)
    reload(xc, path, clab([l1, l3], p[0]), "1 added, 1 removed, 0 changed, 1 unchanged")
    p[2].wait_disconnected()
    xc.wait_health("0", contains="All 4 sockets connected")
    forwards(p[5], p[4], b"over l3")
    log = reload(xc, path, clab([l1, (p[4], p[0])], p[0]), "reload failed, nothing changed")
    assert (
        f"{path}: links[1].endpoints[1]: {p[0].host}/1 is already in links[0].endpoints[0]" in log
    )
    assert names(xc) == sorted(f"{endpoint(a)}--{endpoint(b)}" for a, b in (l1, l3))
    stream.finish()
    assert p[0].accepted == 1 and p[1].accepted == 1
    assert xc.terminate() == 0, xc.log()
    assert "Traceback" not in xc.log(), xc.log()
