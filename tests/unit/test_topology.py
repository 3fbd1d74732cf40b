"""``--topology``: vrnetlab's lltopo.json and containerlab files read into
links and hubs, every refusal one line naming the place, and the command
line around them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xcon import cli
from xcon.cli.checks import UsageError
from xcon.control.config import ConfigError
from xcon.control.topology import detect_format, load_topology, parse_clab, parse_lltopo
from xcon.linkspec import Endpoint
from xcon.testing.errors import one_line_error

ROOT = Path(__file__).resolve().parents[2]


def side(router: str, numeric: int, interface: str) -> dict[str, object]:
    return {"interface": interface, "numeric": numeric, "router": router}


#: Shaped as ``topo --build`` writes it: routers with their interfaces by
#: number, links, links_by_nodes and hubs (keys sorted, as json.dumps does).
LLTOPO = {
    "hubs": {
        "ams-mgmt": [
            side("ams-core-1", 3, "GigabitEthernet0/0/0/2"),
            side("ams-edge-1", 2, "GigabitEthernet0/0/0/1"),
            side("fra-core-1", 2, "ge-0/0/1"),
        ]
    },
    "links": [
        {
            "left": side("ams-edge-1", 1, "GigabitEthernet0/0/0/0"),
            "right": side("ams-core-1", 1, "GigabitEthernet0/0/0/0"),
        },
        {
            "left": side("ams-core-1", 2, "GigabitEthernet0/0/0/1"),
            "right": side("fra-core-1", 1, "ge-0/0/0"),
        },
    ],
    "links_by_nodes": {
        "ams-edge-1": {
            "ams-core-1": [
                {
                    "our_interface": "GigabitEthernet0/0/0/0",
                    "our_numeric": 1,
                    "their_interface": "GigabitEthernet0/0/0/0",
                    "their_numeric": 1,
                }
            ]
        }
    },
    "routers": {
        "ams-core-1": {"id": 1, "type": "xrv", "version": "5.1.1.54U", "interfaces": {"1": "x"}},
        "ams-edge-1": {"id": 100, "type": "xrv", "version": "5.1.1.54U"},
        "fra-core-1": {"id": 3, "type": "vmx", "version": "16.1R1.7"},
    },
}


def test_lltopo_links_and_hubs_as_topo_run_gives_them():
    cfg = parse_lltopo(json.loads(json.dumps(LLTOPO)), "lltopo.json")
    assert [cl.name for cl in cfg.links] == [
        "ams-edge-1/1--ams-core-1/1",
        "ams-core-1/2--fra-core-1/1",
    ]
    [hub] = cfg.hubs
    assert hub.name == "ams-mgmt"
    assert [str(e) for e in hub.ends] == ["ams-core-1/3", "ams-edge-1/2", "fra-core-1/2"]
    assert cfg.notes == []


def test_lltopo_prefix_names_the_containers_as_topo_run_prefix_does():
    cfg = parse_lltopo(LLTOPO, "lltopo.json", prefix="lab1-")
    assert cfg.links[0].name == "lab1-ams-edge-1/1--lab1-ams-core-1/1"
    assert cfg.hubs[0].ends[0] == Endpoint("lab1-ams-core-1", 3)


def test_lltopo_without_hubs_or_links():
    assert parse_lltopo({"routers": {}}, "t.json").links == []
    assert parse_lltopo({"links": []}, "t.json").hubs == []


def with_link(i: int, key: str, value: object) -> dict[str, object]:
    doc = json.loads(json.dumps(LLTOPO))
    if value is None:
        del doc["links"][i][key]
    else:
        doc["links"][i][key] = value
    return doc


def with_hub(members: list[object]) -> dict[str, object]:
    doc = json.loads(json.dumps(LLTOPO))
    doc["hubs"] = {"ams-mgmt": members}
    return doc


@pytest.mark.parametrize(
    "doc, message",
    [
        ([], 'lltopo.json: not a topology (a JSON object with "links" and "hubs")'),
        ({"links": {}}, "lltopo.json: links: a list of links"),
        ({"links": [3]}, 'lltopo.json: links[0]: a link is an object with "left" and "right"'),
        (
            with_link(1, "right", None),
            'lltopo.json: links[1]: no "right" side (a link has "left" and "right")',
        ),
        (
            with_link(0, "left", {"router": "r1"}),
            'lltopo.json: links[0].left: no "numeric" (the NIC number)',
        ),
        (
            with_link(0, "left", {"router": "", "numeric": 1}),
            'lltopo.json: links[0].left: "router" is the router\'s name',
        ),
        (
            with_link(1, "right", side("r9", 65535, "x")),
            "lltopo.json: links[1].right: NIC 65535 is outside 1..55535 "
            "(NIC N is TCP port 10000+N)",
        ),
        (
            with_link(1, "right", side("r9", 0, "x")),
            "lltopo.json: links[1].right: NIC 0 is outside 1..55535 (NIC N is TCP port 10000+N)",
        ),
        (
            with_link(1, "right", side("r9", "2", "x")),
            'lltopo.json: links[1].right: "numeric" is the NIC number, 1..55535',
        ),
        (
            with_link(1, "right", side("r 9", 2, "x")),
            "lltopo.json: links[1].right: 'r 9': 'r 9' is not a valid host name "
            "(letters, digits, '-', '_' and '.' only)",
        ),
        (
            {"links": [LLTOPO["links"][0], LLTOPO["links"][0]]},  # type: ignore[index]
            "lltopo.json: links[1].left: ams-edge-1/1 is already in links[0].left "
            "(a NIC is in one link or hub only)",
        ),
        (
            with_hub([side("ams-core-1", 1, "x"), side("r2", 1, "x")]),
            "lltopo.json: hubs.ams-mgmt[0]: ams-core-1/1 is already in links[0].right "
            "(a NIC is in one link or hub only)",
        ),
        (
            with_hub([side("r1", 5, "x")]),
            "lltopo.json: hubs.ams-mgmt: a hub joins at least two NICs",
        ),
        (
            {"hubs": {"a/1--b/1": [side("r1", 1, "x"), side("r2", 1, "x")]}},
            "lltopo.json: hubs.a/1--b/1: a hub's name is a word, not a link (e.g. ams-mgmt)",
        ),
    ],
)
def test_lltopo_refusals_are_one_line_naming_the_place(doc, message):
    assert one_line_error(ConfigError, parse_lltopo, doc, "lltopo.json") == message


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_lltopo_file_that_is_not_json(tmp_path):
    path = write(tmp_path, "lltopo.json", '{"links": [\n')
    said = one_line_error(ConfigError, load_topology, path)
    assert said.startswith(f"{path}: not valid JSON (") and "line 2" in said


#: A containerlab topology as its docs write one: nodes with their kinds
#: (their own, a group's or the default), links in the brief and the
#: extended form, and links that are not between vrnetlab routers.
CLAB = """\
name: vr01
topology:
  defaults:
    kind: nokia_sros
  groups:
    junipers:
      kind: juniper_vmx
  kinds:
    nokia_sros:
      image: vrnetlab/nokia_sros:24.3.R1
  nodes:
    sr1:
    sr2:
      type: sr-1e
    vmx1:
      group: junipers
      image: vrnetlab/juniper_vmx:23.2R1.14
    xrv:
      kind: cisco_xrv9k
      image: vrnetlab/cisco_xrv9k:7.11.1
    srl:
      kind: nokia_srlinux
      image: ghcr.io/nokia/srlinux
    client:
      kind: linux
      image: alpine:3
  links:
    - endpoints: ["sr1:eth1", "sr2:eth1"]
    - endpoints: ["sr1:eth2", "vmx1:eth1"]
    - type: veth
      endpoints:
        - node: vmx1
          interface: eth2
        - node: xrv
          interface: eth5
      mtu: 9000
    - endpoints: ["srl:e1-1", "sr2:eth2"]
    - endpoints: ["client:eth1", "srl:e1-2"]
    - endpoints: ["xrv:eth6", "host:xrv-eth6"]
    - type: mgmt-net
      endpoint:
        node: sr1
        interface: eth9
      host-interface: sr1-mgmt
"""


def test_clab_links_between_vrnetlab_routers_named_as_containerlab_names_them(tmp_path):
    path = write(tmp_path, "lab.clab.yml", CLAB)
    cfg = load_topology(path)
    assert [cl.name for cl in cfg.links] == [
        "clab-vr01-sr1/1--clab-vr01-sr2/1",
        "clab-vr01-sr1/2--clab-vr01-vmx1/1",
        "clab-vr01-vmx1/2--clab-vr01-xrv/5",
    ]
    assert cfg.hubs == []
    assert cfg.notes == [
        f"{path}: links[3] passed over: srl (nokia_srlinux) is not a vrnetlab router",
        f"{path}: links[4] passed over: client (linux) and srl (nokia_srlinux) "
        "are not vrnetlab routers",
        f"{path}: links[5] passed over: host:xrv-eth6 is on the host, not between two nodes",
        f"{path}: links[6] passed over: a link of type mgmt-net, not between two nodes",
    ]


@pytest.mark.parametrize(
    "prefix, host",
    [(None, "clab-lab-r1"), ("mylabs", "mylabs-lab-r1"), ("__lab-name", "lab-r1"), ("", "r1")],
)
def test_clab_container_names_follow_the_files_prefix(prefix, host):
    doc: dict[str, object] = {
        "name": "lab",
        "topology": {
            "nodes": {"r1": {"kind": "vr-sros"}, "r2": {"kind": "vr-sros"}},
            "links": [{"endpoints": ["r1:eth3", "r2:eth1"]}],
        },
    }
    if prefix is not None:
        doc["prefix"] = prefix
    [link] = parse_clab(doc, "lab.clab.yml").links
    assert link.spec.left == Endpoint(host, 3)


def clab(*links: object, nodes: object = None) -> dict[str, object]:
    return {
        "name": "lab",
        "topology": {
            "nodes": nodes if nodes is not None else {"r1": {"kind": "nokia_sros"}, "r2": None},
            "defaults": {"kind": "juniper_vmx"},
            "links": list(links),
        },
    }


@pytest.mark.parametrize(
    "doc, message",
    [
        ("name: lab", "lab.yml: not a containerlab topology (no name and topology)"),
        (
            {"topology": {}},
            'lab.yml: "name" is the lab\'s name (its containers are clab-NAME-NODE)',
        ),
        ({"name": "lab", "prefix": 3, "topology": {}}, 'lab.yml: "prefix" is a string'),
        ({"name": "lab"}, "lab.yml: topology: the lab's nodes and links"),
        (
            clab({"endpoints": ["r1:eth0", "r2:eth1"]}),
            "lab.yml: links[0].endpoints[0]: r1:eth0 is the management interface, not a NIC "
            "xcon links (data NICs are eth1, eth2, ...)",
        ),
        (
            clab({"endpoints": ["r1:eth1", "r2:ge-0/0/1"]}),
            "lab.yml: links[0].endpoints[1]: r2:ge-0/0/1: name a vrnetlab router's NIC N as "
            "ethN (eth1, eth2, ...)",
        ),
        (
            clab({"endpoints": ["r1:eth1", "r2:eth99999"]}),
            "lab.yml: links[0].endpoints[1]: r2:eth99999: NIC 99999 is outside 1..55535",
        ),
        (
            clab({"endpoints": ["r1:eth1", "r3:eth1"]}),
            "lab.yml: links[0]: node 'r3' is not in topology.nodes",
        ),
        (
            clab({"endpoints": ["r1:eth1"]}),
            'lab.yml: links[0]: "endpoints" is a list of two ends, e.g. ["r1:eth1", "r2:eth1"]',
        ),
        (
            clab({"endpoints": ["r1", "r2:eth1"]}),
            'lab.yml: links[0].endpoints[0]: an end is "NODE:INTERFACE", e.g. "r1:eth1"',
        ),
        (
            clab({"endpoints": ["r1:eth1", "r2:eth1"]}, {"endpoints": ["r2:eth1", "r1:eth2"]}),
            "lab.yml: links[1].endpoints[0]: clab-lab-r2/1 is already in links[0].endpoints[1] "
            "(a NIC is in one link or hub only)",
        ),
        (
            clab({"endpoints": ["r1:eth1", "r1:eth1"]}),
            "lab.yml: links[0].endpoints[1]: clab-lab-r1/1 is already in links[0].endpoints[0] "
            "(a NIC is in one link or hub only)",
        ),
        (clab(nodes=["r1"]), "lab.yml: topology.nodes: an object of nodes by name"),
    ],
)
def test_clab_refusals_are_one_line_naming_the_place(doc, message):
    said = one_line_error(ConfigError, parse_clab, doc, "lab.yml")
    assert said.startswith(message), said


def test_clab_file_that_is_not_yaml(tmp_path):
    path = write(tmp_path, "lab.clab.yml", "name: lab\ntopology: [\n")
    said = one_line_error(ConfigError, load_topology, path)
    assert said.startswith(f"{path}: not valid YAML (") and "line 3" in said


def test_format_by_extension_then_by_content():
    assert detect_format("lltopo.json", "") == "lltopo"
    assert detect_format("lab.clab.yml", "{}") == "clab"
    assert detect_format("lab.YAML", "") == "clab"
    assert detect_format("lab", '  {"links": []}') == "lltopo"
    assert detect_format("lab", "name: lab\n") == "clab"


def test_yaml_is_imported_only_to_read_a_containerlab_file(tmp_path):
    """A plain start, an lltopo file included, does not import the YAML parser."""
    lltopo = write(tmp_path, "lltopo.json", json.dumps(LLTOPO))
    lab = write(tmp_path, "lab.clab.yml", CLAB)
    code = (
        "import sys\n"
        "from xcon import cli\n"
        f"cli.check(cli.build_parser().parse_args(['--topology', {lltopo!r}]))\n"
        "assert 'yaml' not in sys.modules, 'yaml imported'\n"
        f"cli.check(cli.build_parser().parse_args(['--topology', {lab!r}]))\n"
        "assert 'yaml' in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


# -- the command line --------------------------------------------------------------------------


def check(*argv: str) -> cli.Setup:
    return cli.check(cli.build_parser().parse_args(list(argv)))


def test_topology_setup(tmp_path):
    path = write(tmp_path, "lltopo.json", json.dumps(LLTOPO))
    setup = check("--topology", path, "--topology-prefix", "t1-", "--monitors", "vrnetlab")
    assert setup.mode == "p2p" and setup.config == path
    assert setup.topology_format == "lltopo" and setup.topology_prefix == "t1-"
    assert [h.name for h in setup.config_hubs] == ["ams-mgmt"]
    assert setup.sockets == 2 * 2 + 3
    assert setup.describe() == f"0 p2p link(s) and 2 and 1 hub(s) from {path}"
    assert setup.vrnetlab_monitors
    forced = check("--topology", write(tmp_path, "lab", CLAB), "--topology-format", "clab")
    assert forced.topology_format == "clab" and len(forced.config_links) == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--p2p", "a/1--b/1", "--topology-prefix", "x"],
            "--topology-prefix applies to --topology only",
        ),
        (
            ["--p2p", "a/1--b/1", "--topology-format", "clab"],
            "--topology-format applies to --topology only",
        ),
        (
            ["--topology", "{lltopo}", "--config", "{lltopo}"],
            "--config and --topology: one file of links at a time",
        ),
        (
            ["--topology", "{lab}", "--topology-prefix", "x"],
            "--topology-prefix applies to lltopo files (a containerlab file names its "
            "containers: its name and prefix)",
        ),
        (
            ["--topology", "{lltopo}", "--p2p", "ams-core-1/3--x/1"],
            "{lltopo} and the command line: ams-core-1/3 is in hub ams-mgmt and in link "
            "'ams-core-1/3--x/1'",
        ),
        (
            ["--topology", "{lltopo}", "--p2p", "ams-core-1/2--x/1"],
            "{lltopo} and the command line: ams-core-1/2 is in two links",
        ),
        (["--topology", "{missing}"], "{missing}: No such file or directory"),
    ],
)
def test_topology_usage_errors_are_one_line_exit_2(argv, message, tmp_path, capsys):
    names = {
        "lltopo": write(tmp_path, "lltopo.json", json.dumps(LLTOPO)),
        "lab": write(tmp_path, "lab.clab.yml", CLAB),
        "missing": str(tmp_path / "nothing.json"),
    }
    argv = [a.format(**names) for a in argv]
    said = one_line_error((UsageError, ConfigError), check, *argv)
    assert said.startswith(message.format(**names)), said
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xcon: error: ") and err.count("\n") == 1, err
