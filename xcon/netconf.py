"""Addressing of the tap interface (``--tap-listen``): validation, then netlink.

Everything the user asked for is checked by :func:`make_plan` (and the
interface names by :func:`check_ifname`) before anything on the host is
touched (bad input: :class:`~xcon.errors.ModeError` with exit code 2).
:func:`apply` then does, in this order:

1. ``--mtu``: set the tap's MTU (ioctl, no netlink needed);
2. bring the tap up (ioctl);
3. ``--vlan VID``: create the 802.1Q sub-interface ``IF.VID`` on the tap and
   bring it up; the addresses go there.  Without the kernel's 8021q support
   this fails with a message that says so (exit 1);
4. IPv6 arguments: enable IPv6 on the interface (``disable_ipv6=0``, as
   docker containers often start with it disabled);
5. addresses (an address that is already there is fine: a restarted xcon);
6. default routes: ours is installed with *replace* and then every other
   default route of that family in the main table is removed, so the
   interface's next hop is the only default.

Steps 3-6 use pyroute2 (imported only when needed).  A missing privilege is
reported as one line (exit 1), never as a traceback.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xcon.errors import ModeError
from xcon.limits import IFNAMSIZ, MAX_VID, MIN_VID, MTU_MAX, MTU_MIN

log = logging.getLogger("xcon.netconf")

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
IFF_UP = 0x1

NEEDS_PRIVILEGE = "needs root or CAP_NET_ADMIN"

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class NetPlan:
    """What to configure on the tap (validated)."""

    mtu: int | None = None
    vlan: int | None = None
    addresses: list[Interface] = field(default_factory=list)
    routes: list[Address] = field(default_factory=list)

    @property
    def wants_ipv6(self) -> bool:
        return any(a.version == 6 for a in [*self.addresses, *self.routes])

    @property
    def needs_netlink(self) -> bool:
        return bool(self.vlan is not None or self.addresses or self.routes)


def _usage(msg: str) -> ModeError:
    return ModeError(msg, exit_code=2)


def check_ifname(name: str, flag: str) -> None:
    """A name the kernel takes as it is (``dev_valid_name``): 1 to IFNAMSIZ-1 bytes
    of UTF-8, not ``.`` or ``..``, no ``/``, ``:`` or whitespace, and no ``%``
    (``tap%d`` would make the kernel pick a name) or control character."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise _usage(f"{flag} {name!r} is not a valid interface name (not UTF-8)") from None
    why = None
    if not 1 <= size < IFNAMSIZ:
        why = f"1 to {IFNAMSIZ - 1} bytes"
    elif name in (".", ".."):
        why = "not '.' or '..'"
    elif any(c in "/:%" or c.isspace() or not c.isprintable() for c in name):
        why = "no '/', ':', '%', whitespace or control characters"
    if why is not None:
        raise _usage(f"{flag} {name!r} is not a valid interface name ({why})")


def _of_version(text: str, version: int, flag: str, parse: Callable[[str], Any], form: str) -> Any:
    """``parse(text)`` (no scope ``%``), which must be of IP ``version``."""
    try:
        if "%" in text:
            raise ValueError(text)
        value = parse(text)
    except ValueError:
        raise _usage(f"{flag} {text!r} is not an IPv{version} {form}") from None
    if value.version != version:
        raise _usage(f"{flag} {text!r} is not an IPv{version} address")
    return value


def parse_address(text: str, version: int, flag: str) -> Interface:
    """``ADDR/LEN`` (``/LEN`` optional: a host prefix) of the given IP version."""
    iface: Interface = _of_version(text, version, flag, ipaddress.ip_interface, "ADDRESS/LEN")
    ip = iface.ip
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback:
        raise _usage(f"{flag} {text!r}: {ip} cannot be an interface address")
    net = iface.network
    if version == 4 and net.prefixlen <= 30 and ip in (net.network_address, net.broadcast_address):
        what = "network" if ip == net.network_address else "broadcast"
        raise _usage(f"{flag} {text!r}: {ip} is the {what} address of {net}")
    return iface


def parse_nexthop(text: str, version: int, flag: str, iface: Interface | None) -> Address:
    """A next hop; when the interface address is known it must be inside its network."""
    nh: Address = _of_version(text, version, flag, ipaddress.ip_address, "address")
    if nh.is_unspecified or nh.is_multicast or nh.is_loopback:
        raise _usage(f"{flag} {text!r} cannot be a next hop")
    if iface is not None:
        net = iface.network
        if nh not in net:
            raise _usage(f"{flag} {nh} is outside the network {net} of the interface address")
        if nh == iface.ip:
            raise _usage(f"{flag} {nh} is the interface's own address")
        if (
            version == 4
            and net.prefixlen <= 30
            and nh in (net.network_address, net.broadcast_address)
        ):
            raise _usage(f"{flag} {nh} is not a host address of {net}")
    return nh


def make_plan(
    ifname: str,
    *,
    mtu: int | None = None,
    vlan: int | None = None,
    ipv4_address: str | None = None,
    ipv4_route: str | None = None,
    ipv6_address: str | None = None,
    ipv6_route: str | None = None,
) -> NetPlan:
    """Validate what ``--tap-listen`` is to configure on the tap ``ifname`` (its
    name included); raises ModeError (exit 2) on bad input, touches nothing."""
    check_ifname(ifname, "--tap-if")
    plan = NetPlan()
    if mtu is not None:
        if not MTU_MIN <= mtu <= MTU_MAX:
            raise _usage(f"--mtu {mtu} is outside {MTU_MIN}..{MTU_MAX}")
        plan.mtu = mtu
    if vlan is not None:
        if not MIN_VID <= vlan <= MAX_VID:
            raise _usage(f"--vlan {vlan}: VLAN id is outside {MIN_VID}..{MAX_VID}")
        plan.vlan = vlan
        check_ifname(vlan_ifname(ifname, vlan), "--tap-if/--vlan sub-interface")
    given = {4: (ipv4_address, ipv4_route), 6: (ipv6_address, ipv6_route)}
    for version, (addr_text, route_text) in given.items():
        iface = None
        if addr_text is not None:
            iface = parse_address(addr_text, version, f"--ipv{version}-address")
            plan.addresses.append(iface)
        if route_text is not None:
            nh = parse_nexthop(route_text, version, f"--ipv{version}-route", iface)
            if iface is None:
                raise _usage(
                    f"--ipv{version}-route needs --ipv{version}-address (the next hop must be "
                    "inside the network of the tap's address)"
                )
            plan.routes.append(nh)
    return plan


def vlan_ifname(parent: str, vid: int) -> str:
    return f"{parent}.{vid}"


# -- ioctl helpers (no netlink needed) -------------------------------------------------
def _ifreq_sock() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def get_mtu(ifname: str) -> int:
    with _ifreq_sock() as s:
        res = fcntl.ioctl(s, SIOCGIFMTU, struct.pack("16si", ifname.encode(), 0))
    return int(struct.unpack_from("16si", res)[1])


def set_mtu(ifname: str, mtu: int) -> None:
    with _ifreq_sock() as s:
        fcntl.ioctl(s, SIOCSIFMTU, struct.pack("16si", ifname.encode(), mtu))


def set_up(ifname: str) -> None:
    with _ifreq_sock() as s:
        res = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", ifname.encode(), 0))
        flags = struct.unpack_from("16sH", res)[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", ifname.encode(), flags | IFF_UP))


def enable_ipv6(ifname: str) -> None:
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    if not os.path.exists(path):
        raise ModeError(f"cannot enable IPv6 on {ifname}: IPv6 is not available on this host")
    try:
        with open(path, "w") as f:
            f.write("0")
    except OSError as e:
        raise ModeError(f"cannot enable IPv6 on {ifname} ({path}): {e.strerror}") from None


# -- applying -----------------------------------------------------------------------------
def _privilege_or(e: OSError, what: str) -> ModeError:
    if e.errno in (errno.EPERM, errno.EACCES):
        return ModeError(f"{what} {NEEDS_PRIVILEGE} ({e.strerror or 'not permitted'})")
    return ModeError(f"{what} failed: {e.strerror or e}")


def apply(plan: NetPlan, ifname: str) -> str:
    """Configure ``ifname`` as planned; returns the interface that got the addresses.

    Raises :class:`ModeError` (exit 1) with one line on any failure.
    """
    if plan.mtu is not None:
        try:
            set_mtu(ifname, plan.mtu)
        except OSError as e:
            raise _privilege_or(e, f"setting the MTU of {ifname} to {plan.mtu}") from None
    try:
        set_up(ifname)
    except OSError as e:
        raise _privilege_or(e, f"bringing {ifname} up") from None
    if not plan.needs_netlink:
        return ifname
    try:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError:
        raise ModeError(
            "--vlan/--ipv4-*/--ipv6-* need the pyroute2 package (pip install 'xcon[netlink]')"
        ) from None

    def nlerr(e: Any, what: str) -> ModeError:
        code = getattr(e, "code", 0)
        if code in (errno.EPERM, errno.EACCES):
            return ModeError(f"{what} {NEEDS_PRIVILEGE}")
        return ModeError(f"{what} failed: {os.strerror(code) if code else e}")

    target = ifname
    try:
        ipr = IPRoute()
    except OSError as e:
        raise _privilege_or(e, "opening a netlink socket") from None
    with ipr:
        try:
            idx = _index(ipr, ifname)
            if plan.vlan is not None:
                target = vlan_ifname(ifname, plan.vlan)
                idx = _add_vlan(ipr, NetlinkError, ifname, idx, plan.vlan, target)
            if plan.wants_ipv6:
                enable_ipv6(target)
            for iface in plan.addresses:
                what = f"adding address {iface} to {target}"
                try:
                    ipr.addr(
                        "add",
                        index=idx,
                        address=str(iface.ip),
                        prefixlen=iface.network.prefixlen,
                    )
                except NetlinkError as e:
                    if e.code != errno.EEXIST:
                        raise nlerr(e, what) from None
                log.info("%s: address %s", target, iface)
            for nh in plan.routes:
                _replace_default(ipr, NetlinkError, idx, target, nh, nlerr)
        except NetlinkError as e:
            raise nlerr(e, f"configuring {target}") from None
    return target


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise ModeError(f"no interface named {ifname}")
    return int(found[0])


def _add_vlan(ipr: Any, nl_error: Any, parent: str, pidx: int, vid: int, name: str) -> int:
    try:
        ipr.link("add", ifname=name, kind="vlan", link=pidx, vlan_id=vid)
    except nl_error as e:
        if e.code == errno.EEXIST:
            pass
        elif e.code in (errno.EPERM, errno.EACCES):
            raise ModeError(f"--vlan {vid}: creating {name} {NEEDS_PRIVILEGE}") from None
        elif e.code in (errno.EOPNOTSUPP, errno.ENOENT, errno.EINVAL):
            raise ModeError(
                f"--vlan {vid}: cannot create the 802.1Q sub-interface {name}: this kernel has "
                "no 802.1Q VLAN support (module 8021q not loaded or not available; "
                "on the host: modprobe 8021q)"
            ) from None
        else:
            raise ModeError(f"--vlan {vid}: cannot create {name}: {os.strerror(e.code)}") from None
    idx = _index(ipr, name)
    ipr.link("set", index=idx, state="up")
    log.info("%s: 802.1Q sub-interface of %s, VLAN %d", name, parent, vid)
    return idx


def _replace_default(
    ipr: Any, nl_error: Any, idx: int, target: str, nh: Address, nlerr: Any
) -> None:
    family = socket.AF_INET if nh.version == 4 else socket.AF_INET6
    dst = "0.0.0.0/0" if nh.version == 4 else "::/0"
    what = f"default route via {nh} dev {target}"
    try:
        ipr.route("replace", dst=dst, family=family, gateway=str(nh), oif=idx)
    except nl_error as e:
        raise nlerr(e, f"installing the {what}") from None
    # Keep ours as the only default of this family in the main table.
    for r in ipr.get_routes(family=family, table=254):
        if r["dst_len"] != 0 or r.get_attr("RTA_DST") not in (None, "0.0.0.0", "::"):
            continue
        if r.get_attr("RTA_GATEWAY") == str(nh) and r.get_attr("RTA_OIF") == idx:
            continue
        kw: dict[str, Any] = {"dst": dst, "family": family}
        for attr, key in (
            ("RTA_GATEWAY", "gateway"),
            ("RTA_OIF", "oif"),
            ("RTA_PRIORITY", "priority"),
        ):
            v = r.get_attr(attr)
            if v is not None:
                kw[key] = v
        try:
            ipr.route("del", **kw)
        except nl_error as e:
            log.warning("could not remove the old default route %s: %s", kw, e)
    log.info("%s", what)
