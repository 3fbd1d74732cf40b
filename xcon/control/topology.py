"""``--topology FILE``: the links and hubs of a lab's topology file, as the
``--config`` file's links (:mod:`xcon.control.config`): checked whole at
start, reloaded on SIGHUP (or ``xcon ctl reload``) by applying only the
difference.

Two kinds of file (docs/topology.md):

* **lltopo**: the JSON that vrnetlab's topology machine writes (``topo
  --build hltopo.json > lltopo.json``).  Each of its ``links`` joins NIC
  ``numeric`` of the ``left`` router to NIC ``numeric`` of the ``right``
  one (``ROUTER/N--ROUTER/N``, as ``topo --run`` gives vr-xcon); each of its
  ``hubs`` (a name and its routers' NICs) is a hub.  A router is reached by
  its container's name: ``topo --run --prefix P`` names it ``P`` + router, so
  ``--topology-prefix P`` does the same (default: none, as topo's).
* **clab**: a containerlab topology file (YAML).  Each of its ``links``
  between two nodes of a vrnetlab kind joins their NICs: ``ethN`` is NIC N
  (``eth0`` is the management interface).  A node is reached by its
  container's name, which containerlab makes of the file's ``prefix``,
  ``name`` and the node's name (``clab-LAB-NODE`` by default).  A link with
  an end that is not a vrnetlab router (``linux``, ``bridge``, ``host``...)
  is not xcon's to make: it is passed over, one log line each.

Keys xcon does not need are ignored (``routers``, ``links_by_nodes``, a
node's ``image``...).  Anything else that is wrong refuses the whole file,
one line naming the place (``lltopo.json: links[3].left: no "numeric"``).
YAML is read by PyYAML, imported only when a containerlab file is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from xcon.control.config import Config, ConfigError, ConfigHub, ConfigLink, read_config
from xcon.limits import MAX_NIC, MIN_NIC
from xcon.linkspec import Endpoint, LinkSpec, Resource, SpecError, check_host, parse_link

FORMATS = ("lltopo", "clab")

#: containerlab's kinds whose nodes are vrnetlab routers (a qemu VM in a
#: container, built with vrnetlab), by every name containerlab accepts.
VRNETLAB_KINDS = frozenset(
    """
    aruba_aoscx vr-aoscx vr-aruba_aoscx
    arista_veos vr-veos vr-arista_veos
    checkpoint_cloudguard
    ciena_saos vr-ciena_saos
    cisco_asav cisco_c8000v cisco_cat9kv cisco_ftdv cisco_sdwan cisco_vios
    cisco_csr1000v vr-csr vr-cisco_csr1000v
    cisco_n9kv vr-n9kv vr-cisco_n9kv
    cisco_xrd_vrouter
    cisco_xrv vr-xrv vr-cisco_xrv
    cisco_xrv9k vr-xrv9k vr-cisco_xrv9k
    dell_ftosv vr-ftosv vr-dell_ftosv
    dell_sonic sonic-vm
    f5_bigip-ve fortinet_fortigate freebsd openbsd generic_vm
    huawei_vrp ipinfusion_ocnos nvidia_cumulusvx
    juniper_vjunosevolved juniper_vjunosrouter juniper_vjunosswitch
    juniper_vmx vr-vmx vr-juniper_vmx
    juniper_vqfx vr-vqfx vr-juniper_vqfx
    juniper_vsrx vr-vsrx vr-juniper_vsrx
    mikrotik_ros vr-ros vr-mikrotik_ros
    nokia_sros vr-sros vr-nokia_sros
    paloalto_panos vr-pan vr-paloalto_panos
    """.split()
)

#: A vrnetlab node's data interface in containerlab: ``ethN`` is NIC N.
_ETH = re.compile(r"eth(0|[1-9][0-9]*)")


def detect_format(path: str, text: str) -> str:
    """``lltopo`` or ``clab``: by the file's extension, else by its content
    (a JSON object starts with ``{``)."""
    lower = path.lower()
    if lower.endswith(".json"):
        return "lltopo"
    if lower.endswith((".yml", ".yaml")):
        return "clab"
    return "lltopo" if text.lstrip().startswith("{") else "clab"


def load_topology(path: str, fmt: str | None = None, prefix: str = "") -> Config:
    """Read and check the topology file ``path`` (``fmt``: None, found out);
    raises :class:`ConfigError`, whatever is in it.  Blocking: the running
    xcon calls it on a worker thread."""
    text = read_config(path)
    fmt = fmt or detect_format(path, text)
    try:
        if fmt == "lltopo":
            return parse_lltopo(_json(text, path), path, prefix)
        return parse_clab(_yaml(text, path), path)
    except ConfigError:
        raise
    except (ValueError, TypeError, RecursionError) as e:  # a value no check expected
        raise ConfigError(f"{path}: cannot be used ({type(e).__name__}: {e})") from None


def loader(path: str, fmt: str, prefix: str) -> Callable[[], Config]:
    """What reads the file again on a reload."""
    return lambda: load_topology(path, fmt, prefix)


def _json(text: str, path: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON (nested too deeply)") from None


def _yaml(text: str, path: str) -> object:
    import yaml  # only a containerlab file needs it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or type(e).__name__
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML ({problem}{where})") from None


class _Nics:
    """The file's NICs so far: each in one place only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seen: dict[Resource, str] = {}

    def take(self, end: Endpoint, where: str) -> None:
        for key in end.resources:
            other = self.seen.get(key)
            if other is not None:
                raise ConfigError(
                    f"{self.path}: {where}: {end} is already in {other} "
                    "(a NIC is in one link or hub only)"
                )
        for key in end.resources:
            self.seen[key] = where


def _end(host: str, nic: object, where: str) -> Endpoint:
    """NIC ``nic`` of ``host``, checked; ``where`` names the place."""
    if isinstance(nic, bool) or not isinstance(nic, int):
        raise ConfigError(f'{where}: "numeric" is the NIC number, {MIN_NIC}..{MAX_NIC}')
    if not MIN_NIC <= nic <= MAX_NIC:
        raise ConfigError(
            f"{where}: NIC {nic} is outside {MIN_NIC}..{MAX_NIC} (NIC N is TCP port 10000+N)"
        )
    try:
        check_host(host, host)
    except SpecError as e:
        raise ConfigError(f"{where}: {e}") from None
    return Endpoint(host, nic)


def _mapping(value: object, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {what}")
    return value


def _list(value: object, where: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {what}")
    return value


# -- lltopo.json -------------------------------------------------------------------------------


def parse_lltopo(doc: object, path: str, prefix: str = "") -> Config:
    """topo's low-level topology: ``links`` and ``hubs``, routers named
    ``prefix`` + router."""
    top = _mapping(doc, path, 'not a topology (a JSON object with "links" and "hubs")')
    nics = _Nics(path)

    def side(value: object, where: str) -> Endpoint:
        ep = _mapping(value, where, 'an end is an object with "router" and "numeric"')
        router = ep.get("router")
        if not isinstance(router, str) or not router:
            raise ConfigError(f'{where}: "router" is the router\'s name')
        if "numeric" not in ep:
            raise ConfigError(f'{where}: no "numeric" (the NIC number)')
        end = _end(prefix + router, ep["numeric"], where)
        nics.take(end, where.removeprefix(f"{path}: "))
        return end

    links = []
    items = _list(top.get("links", []), f"{path}: links", "a list of links")
    for i, item in enumerate(items):
        where = f"{path}: links[{i}]"
        link = _mapping(item, where, 'a link is an object with "left" and "right"')
        for key in ("left", "right"):
            if key not in link:
                raise ConfigError(f'{where}: no "{key}" side (a link has "left" and "right")')
        left = side(link["left"], f"{where}.left")
        right = side(link["right"], f"{where}.right")
        links.append(ConfigLink(LinkSpec(left, right)))
    hubs = []
    table = _mapping(top.get("hubs", {}), f"{path}: hubs", "an object of hubs by name")
    names = {cl.name for cl in links}
    for name, members in table.items():
        where = f"{path}: hubs.{name}"
        _hub_name(name, names, where)
        members = _list(members, where, "a list of the hub's routers' NICs")
        if len(members) < 2:
            raise ConfigError(f"{where}: a hub joins at least two NICs")
        ends = tuple(side(m, f"{where}[{i}]") for i, m in enumerate(members))
        hubs.append(ConfigHub(name, ends))
    return Config(links, hubs=hubs)


def _hub_name(name: str, links: set[str], where: str) -> None:
    """A hub's name is a name, not a link's."""
    try:
        parse_link(name)
    except SpecError:
        looks_like_link = False
    else:
        looks_like_link = True
    if not name or not name.isprintable() or looks_like_link or name in links:
        raise ConfigError(f"{where}: a hub's name is a word, not a link (e.g. ams-mgmt)")


# -- containerlab ------------------------------------------------------------------------------


def container_prefix(top: Mapping[str, Any], path: str) -> str:
    """What containerlab puts before a node's name to make its container's:
    ``clab-LAB-`` by default, ``PREFIX-LAB-`` for ``prefix: PREFIX``,
    ``LAB-`` for ``prefix: __lab-name``, nothing for ``prefix: ""``."""
    lab = top.get("name")
    if not isinstance(lab, str) or not lab:
        raise ConfigError(f'{path}: "name" is the lab\'s name (its containers are clab-NAME-NODE)')
    prefix = top.get("prefix", "clab")
    if not isinstance(prefix, str):
        raise ConfigError(f'{path}: "prefix" is a string (containers are PREFIX-{lab}-NODE)')
    if prefix == "":
        return ""
    if prefix == "__lab-name":
        return f"{lab}-"
    return f"{prefix}-{lab}-"


def _kinds(topology: Mapping[str, Any], path: str) -> dict[str, str | None]:
    """Each node's kind: its own, its group's, or the topology's default."""
    where = f"{path}: topology"
    nodes = _mapping(topology.get("nodes", {}), f"{where}.nodes", "an object of nodes by name")
    groups = _mapping(topology.get("groups", {}), f"{where}.groups", "an object of groups")
    defaults = _mapping(topology.get("defaults", {}) or {}, f"{where}.defaults", "an object")
    out: dict[str, str | None] = {}
    for name, node in nodes.items():
        node = _mapping(node or {}, f"{where}.nodes.{name}", "a node is an object")
        group_name = node.get("group")
        group = groups.get(group_name) if isinstance(group_name, str) else None
        kind = node.get("kind") or (group or {}).get("kind") or defaults.get("kind")
        out[str(name)] = kind if isinstance(kind, str) else None
    return out


def parse_clab(doc: object, path: str) -> Config:
    """A containerlab topology: the links between vrnetlab nodes, nodes
    named as containerlab names their containers."""
    top = _mapping(doc, path, "not a containerlab topology (no name and topology)")
    host_prefix = container_prefix(top, path)
    topology = _mapping(top.get("topology"), f"{path}: topology", "the lab's nodes and links")
    kinds = _kinds(topology, path)
    nics = _Nics(path)
    links, notes = [], []
    items = _list(topology.get("links") or [], f"{path}: topology.links", "a list of links")
    for i, item in enumerate(items):
        where = f"{path}: links[{i}]"
        link = _mapping(item, where, 'a link is an object with "endpoints"')
        ends = _clab_endpoints(link, where)
        if isinstance(ends, str):
            notes.append(f"{where} passed over: {ends}, not between two nodes")
            continue
        others = []
        for node, _iface, _at in ends:
            if node not in kinds:
                raise ConfigError(f"{where}: node {node!r} is not in topology.nodes")
            kind = kinds[node]
            if kind not in VRNETLAB_KINDS:
                others.append(f"{node} ({kind or 'no kind'})")
        if others:
            verb = "is not a vrnetlab router" if len(others) == 1 else "are not vrnetlab routers"
            notes.append(f"{where} passed over: {' and '.join(others)} {verb}")
            continue
        made = []
        for node, iface, at in ends:
            end = _end(host_prefix + node, _eth(node, iface, f"{where}.{at}"), f"{where}.{at}")
            nics.take(end, f"links[{i}].{at}")
            made.append(end)
        links.append(ConfigLink(LinkSpec(made[0], made[1])))
    return Config(links, notes=notes)


def _clab_endpoints(link: Mapping[str, Any], where: str) -> list[tuple[str, str, str]] | str:
    """A link's two (node, interface, place): brief (``"r1:eth1"``) or
    extended (``{node: r1, interface: eth1}``) form.  A string (why): a link
    with one node only (``mgmt-net``, ``macvlan``, ``host``...)."""
    kind = link.get("type")
    if kind is not None and kind not in ("veth", "veth-stitch"):
        return f"a link of type {kind}"
    eps = link.get("endpoints")
    if not isinstance(eps, list) or len(eps) != 2:
        raise ConfigError(
            f'{where}: "endpoints" is a list of two ends, e.g. ["r1:eth1", "r2:eth1"]'
        )
    out = []
    for j, ep in enumerate(eps):
        at = f"endpoints[{j}]"
        node, sep, iface = "", "", ""
        if isinstance(ep, str):
            node, sep, iface = ep.partition(":")
        elif isinstance(ep, dict):
            n, i = ep.get("node"), ep.get("interface")
            if isinstance(n, str) and isinstance(i, str):
                node, sep, iface = n, ":", i
        if not sep or not node or not iface:
            raise ConfigError(f'{where}.{at}: an end is "NODE:INTERFACE", e.g. "r1:eth1"')
        if node in ("host", "mgmt-net", "macvlan"):  # not a node: the host's side
            return f"{node}:{iface} is on the host"
        out.append((node, iface, at))
    return out


def _eth(node: str, iface: str, where: str) -> int:
    """NIC N of a vrnetlab node's interface ``ethN``."""
    m = _ETH.fullmatch(iface)
    if m is None:
        raise ConfigError(
            f"{where}: {node}:{iface}: name a vrnetlab router's NIC N as ethN (eth1, eth2, ...)"
        )
    if m[1] == "0":
        raise ConfigError(
            f"{where}: {node}:eth0 is the management interface, not a NIC xcon links "
            "(data NICs are eth1, eth2, ...)"
        )
    n = int(m[1]) if len(m[1]) <= 6 else MAX_NIC + 1
    if n > MAX_NIC:
        raise ConfigError(f"{where}: {node}:{iface}: NIC {m[1]} is outside {MIN_NIC}..{MAX_NIC}")
    return n
