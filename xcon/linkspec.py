"""Parsing of vr-xcon's endpoint and link syntax.

``host/N`` is qemu NIC N of ``host`` (TCP port 10000+N); ``host`` is a name,
an IPv4 address or a bracketed IPv6 address (``[::1]/1``).  A p2p link is
``host/N--host/N`` with an optional ``:VID`` on one side, which makes that
side an access port of VLAN VID.

Everything is checked here, before anything is opened:

- a name is RFC 1123 labels (letters, digits, ``-`` inside a label) of 1..63
  characters, at most 253 in all, one trailing dot allowed; ``_`` is allowed
  too, because docker container and ``--link`` names may have it.  A name
  with non-ASCII letters is an internationalised name: it must convert to
  ASCII with IDNA (Python's ``idna`` codec, IDNA 2003, the conversion
  ``getaddrinfo`` then uses).  A name whose last label is all digits must be
  a dotted-quad IPv4 address (``1.2.3.999`` and ``10`` are refused rather
  than guessed at);
- an IPv4 address is four decimal numbers without leading zeros;
- an IPv6 address in brackets is checked by :mod:`ipaddress` (a zone,
  ``[fe80::1%eth0]``, is an interface name);
- NIC and VLAN numbers are bounded (:mod:`xcon.limits`).

Two endpoints are the same NIC when their addresses are the same once parsed:
IP literals compare by value (``[::1]`` is ``[0:0::1]``), names without case
and without a trailing dot.

**Other kinds of link end** are written ``KIND:...`` (a host name never has a
``:``, and an IPv6 address is bracketed, so the two forms cannot be confused).

**The kinds of end** are the rows of one table, :data:`KIND_TABLE`: each row
(:class:`EndKind`) has the kind's dataclass, its prefix and syntax, its
parser, its help line and the function that makes its port.  Everything else
is derived from it: :func:`parse_end`, :data:`KINDS`, the command line's help
(:func:`ends_help`), :func:`make_port` and :func:`open_ports`, and the port
suite's kits (``tests/integration/test_port_suite.py``, one kit per kind, of
the kind's name).

Each kind says which resources it holds (:attr:`End.resources`: a qemu NIC's
TCP port, a unix path, a local UDP port, an interface), and no resource may
be in two places (:func:`check_distinct`, :func:`check_hub`).
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, cast

from xcon.limits import (
    MAX_HOSTNAME,
    MAX_LABEL,
    MAX_NIC,
    MAX_PORT,
    MAX_VID,
    MAX_VNI,
    MIN_NIC,
    MIN_PORT,
    MIN_VID,
    UNIX_PATH_MAX,
    VXLAN_PORT,
    qemu_tcp_port,
)

if TYPE_CHECKING:
    from xcon.ports import Port
    from xcon.ports.services import PortServices

_ENDPOINT = re.compile(r"(?P<host>\[[^\[\]]*\]|[^/\[\]]+)/(?P<nic>[0-9]+)(?::(?P<vid>[0-9]+))?")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class SpecError(ValueError):
    """A malformed endpoint or link; the message is meant for the user."""


#: A resource an end holds: (what, identity...), compared for clashes.
Resource = tuple[object, ...]


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class End(Protocol):
    """A parsed link end: the dataclass of one kind (:data:`KIND_TABLE`).

    ``str(end)`` parses back to the same end."""

    #: The kind's name (:attr:`EndKind.name`).
    kind: ClassVar[str]

    @property
    def vid(self) -> int | None:
        """The access VLAN of this side of a p2p link (``HOST/N:VID`` only)."""

    @property
    def resources(self) -> list[Resource]:
        """What this end holds, which no other end may hold."""

    def why_once(self) -> str:
        """Why an end like this one can be in one link only (for the user)."""


_QEMU_ONCE = "a qemu NIC serves one connection at a time; join three or more NICs with --hub"
_LISTEN_ONCE = "a listening end can be bound once"
_INTERFACE_ONCE = "an interface can be one end only"


@dataclass(frozen=True)
class Endpoint:
    """``HOST/N``: qemu NIC N of HOST (TCP 10000+N), the vr-xcon form."""

    host: str
    nic: int
    vid: int | None = None

    kind: ClassVar[str] = "qemu"

    @property
    def key(self) -> tuple[str, int]:
        """What identifies the NIC: the parsed address and the NIC number."""
        return host_key(self.host), self.nic

    @property
    def resources(self) -> list[Resource]:
        return [("tcp", host_key(self.host), qemu_tcp_port(self.nic))]

    def __str__(self) -> str:
        return f"{_shown(self.host)}/{self.nic}" + (f":{self.vid}" if self.vid is not None else "")

    def why_once(self) -> str:
        return _QEMU_ONCE


@dataclass(frozen=True)
class TcpEnd:
    """``tcp:HOST:PORT``: a qemu stream NIC listening on any TCP port."""

    host: str
    port: int

    kind: ClassVar[str] = "tcp"
    vid: ClassVar[int | None] = None

    @property
    def resources(self) -> list[Resource]:
        return [("tcp", host_key(self.host), self.port)]

    def __str__(self) -> str:
        return f"tcp:{_shown(self.host)}:{self.port}"

    def why_once(self) -> str:
        return _QEMU_ONCE


@dataclass(frozen=True)
class UnixEnd:
    """``unix:PATH``: a qemu ``-netdev stream`` unix socket (xcon connects)."""

    path: str

    kind: ClassVar[str] = "unix"
    vid: ClassVar[int | None] = None

    @property
    def resources(self) -> list[Resource]:
        return [("unix", os.path.abspath(self.path))]

    def __str__(self) -> str:
        return f"unix:{self.path}"

    def why_once(self) -> str:
        return _QEMU_ONCE


@dataclass(frozen=True)
class UdpEnd:
    """``udp:RHOST:RPORT@[LHOST:]LPORT``: one frame per datagram, no header."""

    remote: str
    port: int
    local_port: int
    local_host: str = ""

    kind: ClassVar[str] = "udp"
    vid: ClassVar[int | None] = None

    @property
    def resources(self) -> list[Resource]:
        return [("udp", self.local_port)]

    def __str__(self) -> str:
        local = f"{_shown(self.local_host)}:" if self.local_host else ""
        return f"udp:{_shown(self.remote)}:{self.port}@{local}{self.local_port}"

    def why_once(self) -> str:
        return f"local UDP port {self.local_port} can be bound once"


@dataclass(frozen=True)
class VxlanEnd:
    """``vxlan:REMOTE[:PORT]/VNI[@[LHOST:]LPORT]``: RFC 7348 VXLAN (UDP, 8-byte header)."""

    remote: str
    vni: int
    port: int = VXLAN_PORT
    local_port: int = VXLAN_PORT
    local_host: str = ""

    kind: ClassVar[str] = "vxlan"
    vid: ClassVar[int | None] = None

    @property
    def resources(self) -> list[Resource]:
        # VXLAN ends share a local port (one VNI each), as kernel VXLAN devices do
        return [("vxlan", self.local_port, self.vni)]

    def __str__(self) -> str:
        text = f"vxlan:{_shown(self.remote)}"
        if self.port != VXLAN_PORT:
            text += f":{self.port}"
        text += f"/{self.vni}"
        if self.local_host:
            text += f"@{_shown(self.local_host)}:{self.local_port}"
        elif self.local_port != self.port:
            text += f"@{self.local_port}"
        return text

    def why_once(self) -> str:
        return f"VNI {self.vni} can be used once on local UDP port {self.local_port}"


@dataclass(frozen=True)
class TapEnd:
    """``tap:NAME``: a tap device xcon creates (and removes on exit)."""

    name: str

    kind: ClassVar[str] = "tap"
    vid: ClassVar[int | None] = None

    @property
    def resources(self) -> list[Resource]:
        return [("interface", self.name)]

    def __str__(self) -> str:
        return f"tap:{self.name}"

    def why_once(self) -> str:
        return _INTERFACE_ONCE


@dataclass(frozen=True)
class RawEnd:
    """``raw:IFNAME``: an existing interface through a packet socket."""

    name: str

    kind: ClassVar[str] = "raw"
    vid: ClassVar[int | None] = None

    @property
    def resources(self) -> list[Resource]:
        return [("interface", self.name)]

    def __str__(self) -> str:
        return f"raw:{self.name}"

    def why_once(self) -> str:
        return _INTERFACE_ONCE


@dataclass(frozen=True)
class ListenEnd:
    """``listen:[HOST:]PORT``: xcon listens and plays the qemu NIC (one client at a time)."""

    port: int
    host: str = ""

    kind: ClassVar[str] = "listen"
    vid: ClassVar[int | None] = None

    @property
    def resources(self) -> list[Resource]:
        return [("listen", self.port)]

    def __str__(self) -> str:
        return f"listen:{_shown(self.host)}:{self.port}" if self.host else f"listen:{self.port}"

    def why_once(self) -> str:
        return _LISTEN_ONCE


@dataclass(frozen=True)
class ListenUnixEnd:
    """``listen:unix:PATH``: xcon listens on a unix socket (qemu ``stream`` client)."""

    path: str

    kind: ClassVar[str] = "listen-unix"
    vid: ClassVar[int | None] = None

    @property
    def resources(self) -> list[Resource]:
        return [("unix", os.path.abspath(self.path))]

    def __str__(self) -> str:
        return f"listen:unix:{self.path}"

    def why_once(self) -> str:
        return _LISTEN_ONCE


@dataclass(frozen=True)
class LinkSpec:
    left: End
    right: End

    @property
    def vid(self) -> int | None:
        return self.left.vid if self.left.vid is not None else self.right.vid

    def __str__(self) -> str:
        return f"{self.left}--{self.right}"


def bounded_int(digits: str, lo: int, hi: int) -> int | None:
    """``digits`` (ASCII digits only) as an int if within ``lo..hi``, else None
    (without converting thousands of digits)."""
    if not digits.isascii() or not digits.isdigit() or len(digits.lstrip("0")) > 18:
        return None
    n = int(digits)
    return n if lo <= n <= hi else None


def host_key(host: str) -> str:
    """``host`` as it identifies a machine: an IP literal's value, a name in
    lower case (ASCII form) without the trailing dot."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip)
    name = host.rstrip(".")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return name.lower()


def check_host(host: str, text: str) -> None:
    """Raise :class:`SpecError` unless ``host`` is a host name or an IPv4 address."""
    where = f"{text!r}:"
    if not host:
        raise SpecError(f"{where} empty host name")
    name = host[:-1] if host.endswith(".") else host
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise SpecError(
                f"{where} {host!r} is not a valid host name (an internationalised name must "
                "convert to ASCII with IDNA)"
            ) from None
    if len(name) > MAX_HOSTNAME:
        raise SpecError(f"{where} a host name has at most {MAX_HOSTNAME} characters")
    labels = name.split(".")
    if labels[-1].isdigit() and labels[-1].isascii():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise SpecError(f"{where} {host!r} is not a valid IPv4 address") from None
        return
    for label in labels:
        if not label:
            raise SpecError(f"{where} {host!r} is not a valid host name (empty label)")
        if len(label) > MAX_LABEL:
            raise SpecError(
                f"{where} {host!r} is not a valid host name "
                f"(a label has at most {MAX_LABEL} characters)"
            )
        if not _LABEL.fullmatch(label):
            if label[0] == "-" or label[-1] == "-":
                why = "a label cannot start or end with '-'"
            else:
                why = "letters, digits, '-', '_' and '.' only"
            raise SpecError(f"{where} {host!r} is not a valid host name ({why})")


def check_ipv6(literal: str, text: str) -> None:
    """Raise :class:`SpecError` unless ``literal`` is an IPv6 address (with an
    optional ``%zone``, an interface name or number)."""
    addr, _, zone = literal.partition("%")
    if "%" in literal and not _ZONE.fullmatch(zone):
        raise SpecError(f"{text!r}: {zone!r} is not an interface name or number (IPv6 zone)")
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        raise SpecError(f"{text!r}: [{literal}] is not a valid IPv6 address") from None


def parse_endpoint(text: str, allow_vid: bool = True) -> Endpoint:
    m = _ENDPOINT.fullmatch(text)
    if not m:
        if "/" not in text:
            raise SpecError(f"{text!r}: expected HOST/N (qemu NIC N of HOST), e.g. vr1/1")
        raise SpecError(f"{text!r}: expected HOST/N or [IPv6]/N, e.g. vr1/1 or [::1]/1")
    host = m["host"]
    if host.startswith("["):
        host = host[1:-1]
        if ":" not in host:
            raise SpecError(f"{text!r}: brackets are for IPv6 addresses only")
        check_ipv6(host, text)
    elif ":" in host:
        raise SpecError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]/1")
    else:
        check_host(host, text)
    nic = bounded_int(m["nic"], MIN_NIC, MAX_NIC)
    if nic is None:
        raise SpecError(
            f"{text!r}: interface {m['nic']} is outside {MIN_NIC}..{MAX_NIC} (TCP port 10000+N)"
        )
    vid = None
    if m["vid"] is not None:
        if not allow_vid:
            raise SpecError(f"{text!r}: a VLAN id is only allowed on --p2p links")
        vid = bounded_int(m["vid"], MIN_VID, MAX_VID)
        if vid is None:
            raise SpecError(f"{text!r}: VLAN id {m['vid']} is outside {MIN_VID}..{MAX_VID}")
    return Endpoint(host, nic, vid)


def _port(digits: str, text: str) -> int:
    port = bounded_int(digits, MIN_PORT, MAX_PORT)
    if port is None:
        raise SpecError(f"{text!r}: port {digits!r} is not a number in {MIN_PORT}..{MAX_PORT}")
    return port


def _host(host: str, text: str) -> str:
    """A host name, an IPv4 address or a bracketed IPv6 address (brackets removed)."""
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        if ":" not in inner:
            raise SpecError(f"{text!r}: brackets are for IPv6 addresses only")
        check_ipv6(inner, text)
        return inner
    if ":" in host or "[" in host or "]" in host:
        raise SpecError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]")
    check_host(host, text)
    return host


def _host_port(hp: str, text: str, form: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``."""
    host, sep, port = hp.rpartition(":")
    if not sep or not host or (":" in host and not host.startswith("[")):
        raise SpecError(f"{text!r}: expected {form}")
    return _host(host, text), _port(port, text)


def _local_port(lp: str, text: str) -> tuple[str, int]:
    """``PORT``, ``ADDR:PORT`` or ``[V6]:PORT``; the address must be an IP literal."""
    host, sep, port = lp.rpartition(":")
    if not sep:
        return "", _port(lp, text)
    if not host:
        raise SpecError(f"{text!r}: empty local address before ':{port}'")
    host = _host(host, text)
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        raise SpecError(f"{text!r}: a local address is an IP address, not a name") from None
    return host, _port(port, text)


def _vxlan(rest: str, text: str) -> VxlanEnd:
    remote, sep, tail = rest.rpartition("/")
    if not sep or not remote:
        raise SpecError(f"{text!r}: expected vxlan:REMOTE[:PORT]/VNI[@[LOCALHOST:]LOCALPORT]")
    vni_text, at, local = tail.partition("@")
    vni = bounded_int(vni_text, 0, MAX_VNI)
    if vni is None:
        raise SpecError(f"{text!r}: VNI {vni_text!r} is not a number in 0..{MAX_VNI}")
    if remote.startswith("[") and remote.endswith("]") or ":" not in remote:
        host, port = _host(remote, text), VXLAN_PORT
    else:
        host, port = _host_port(remote, text, "vxlan:REMOTE[:PORT]/VNI[@[LOCALHOST:]LOCALPORT]")
    local_host, local_port = _local_port(local, text) if at else ("", port)
    return VxlanEnd(host, vni, port, local_port, local_host)


def _unix_path(path: str, text: str) -> str:
    if not path:
        raise SpecError(f"{text!r}: empty unix socket path")
    if "\0" in path or not path.isprintable():
        raise SpecError(f"{text!r}: a unix socket path has no control characters")
    try:
        size = len(path.encode())
    except UnicodeEncodeError:
        raise SpecError(f"{text!r}: the unix socket path is not valid UTF-8") from None
    if size > UNIX_PATH_MAX:
        raise SpecError(
            f"{text!r}: a unix socket path has at most {UNIX_PATH_MAX} bytes (this one {size})"
        )
    return path


def _ifname(name: str, text: str) -> str:
    from xcon.errors import ModeError
    from xcon.netconf import check_ifname

    try:
        check_ifname(name, f"{text!r}:")
    except ModeError as e:
        raise SpecError(str(e)) from None
    return name


# -- the kinds of end -----------------------------------------------------------------


def _qemu(rest: str, text: str) -> Endpoint:
    return parse_endpoint(rest)


def _tcp(rest: str, text: str) -> TcpEnd:
    host, port = _host_port(rest, text, "tcp:HOST:PORT")
    return TcpEnd(host, port)


def _unix(rest: str, text: str) -> UnixEnd:
    return UnixEnd(_unix_path(rest, text))


def _udp(rest: str, text: str) -> UdpEnd:
    remote, sep, local = rest.partition("@")
    if not sep:
        raise SpecError(
            f"{text!r}: expected udp:REMOTEHOST:PORT@[LOCALHOST:]LOCALPORT "
            "(the local port to receive on is required)"
        )
    rhost, rport = _host_port(remote, text, "udp:REMOTEHOST:PORT@[LOCALHOST:]LOCALPORT")
    lhost, lport = _local_port(local, text)
    return UdpEnd(rhost, rport, lport, lhost)


def _tap(rest: str, text: str) -> TapEnd:
    return TapEnd(_ifname(rest, text))


def _raw(rest: str, text: str) -> RawEnd:
    return RawEnd(_ifname(rest, text))


def _listen(rest: str, text: str) -> ListenEnd:
    host, port = _local_port(rest, text)
    return ListenEnd(port, host)


def _listen_unix(rest: str, text: str) -> ListenUnixEnd:
    return ListenUnixEnd(_unix_path(rest, text))


@dataclass(frozen=True)
class EndKind:
    """One kind of link end: everything xcon knows of it, in one row of
    :data:`KIND_TABLE`."""

    #: Its dataclass (whose ``kind`` is this row's name).
    end: type[End]
    #: What its text starts with, before a ``:`` (``listen:unix``); "" for
    #: ``HOST/N``, the form without a ``KIND:``.
    prefix: str
    #: Its syntax as the help and the README's table of ends write it.
    syntax: str
    #: What it is, in a few words (the help).
    help: str
    #: ``parse(rest, text)``: the end from the text after ``prefix:`` (the whole
    #: text when there is no prefix; ``text`` for messages); raises :class:`SpecError`.
    parse: Callable[[str, str], End]
    #: ``"module:function"``: ``function(services, end)`` makes the end's port,
    #: nothing opened yet (imported when a port is made, so that parsing and
    #: the help import no port).  The port's ``prepare`` opens what must work
    #: before the loop runs (:func:`open_ports`).
    port: str

    @property
    def name(self) -> str:
        """The kind's name: ``End.kind``, and the name of its port suite kit."""
        return self.end.kind

    def factory(self) -> Callable[[PortServices, End], Port]:
        """The function that makes this kind's ports."""
        module, _, function = self.port.partition(":")
        return cast(
            "Callable[[PortServices, End], Port]",
            getattr(importlib.import_module(module), function),
        )


#: Every kind of end, in the order the help lists them.
KIND_TABLE: tuple[EndKind, ...] = (
    EndKind(
        end=Endpoint,
        prefix="",
        syntax="HOST/N",
        help="qemu NIC N, TCP port 10000+N, reconnecting; HOST/N:VID makes that side "
        "an access port of VLAN VID",
        parse=_qemu,
        port="xcon.ports.qemu:qemu_port",
    ),
    EndKind(
        end=TcpEnd,
        prefix="tcp",
        syntax="tcp:HOST:PORT",
        help="a qemu stream NIC on any TCP port, reconnecting",
        parse=_tcp,
        port="xcon.ports.qemu:tcp_port",
    ),
    EndKind(
        end=UnixEnd,
        prefix="unix",
        syntax="unix:PATH",
        help="a qemu stream NIC on a unix socket, reconnecting",
        parse=_unix,
        port="xcon.ports.qemu:unix_port",
    ),
    EndKind(
        end=UdpEnd,
        prefix="udp",
        syntax="udp:RHOST:RPORT@[LHOST:]LPORT",
        help="one frame per UDP datagram: qemu dgram, ubridge",
        parse=_udp,
        port="xcon.ports.dgram:udp_port",
    ),
    EndKind(
        end=VxlanEnd,
        prefix="vxlan",
        syntax="vxlan:REMOTE[:PORT]/VNI[@[LHOST:]LPORT]",
        help="RFC 7348 VXLAN to another host, port 4789",
        parse=_vxlan,
        port="xcon.ports.dgram:vxlan_port",
    ),
    EndKind(
        end=TapEnd,
        prefix="tap",
        syntax="tap:NAME",
        help="a tap device xcon creates",
        parse=_tap,
        port="xcon.ports.tap:tap_port",
    ),
    EndKind(
        end=RawEnd,
        prefix="raw",
        syntax="raw:IFNAME",
        help="an existing interface, through a packet socket",
        parse=_raw,
        port="xcon.ports.raw:raw_port",
    ),
    EndKind(
        end=ListenEnd,
        prefix="listen",
        syntax="listen:[HOST:]PORT",
        help="xcon plays the qemu NIC: one TCP client at a time",
        parse=_listen,
        port="xcon.ports.listen:listen_port",
    ),
    EndKind(
        end=ListenUnixEnd,
        prefix="listen:unix",
        syntax="listen:unix:PATH",
        help="the same on a unix socket",
        parse=_listen_unix,
        port="xcon.ports.listen:listen_unix_port",
    ),
)

#: The words before ``:`` that name a kind, in the order the help lists them.
KINDS = tuple(dict.fromkeys(k.prefix.partition(":")[0] for k in KIND_TABLE if k.prefix))

_BY_TYPE = {k.end: k for k in KIND_TABLE}
#: For each word of KINDS, its rows, the longest prefix first (``listen:unix``, ``listen``).
_BY_WORD = {
    word: sorted(
        (k for k in KIND_TABLE if k.prefix.partition(":")[0] == word),
        key=lambda k: -len(k.prefix),
    )
    for word in KINDS
}
_KIND = re.compile(r"([a-z]+):")
_HEXISH = re.compile(r"[0-9a-fA-F]*")


def kind_of(end: End) -> EndKind:
    """The row of ``end``'s kind."""
    return _BY_TYPE[type(end)]


def parse_end(text: str, allow_vid: bool = True) -> End:
    """Any kind of link end: ``HOST/N[:VID]`` or ``KIND:...`` (:data:`KIND_TABLE`)."""
    m = _KIND.match(text)
    if m is None:
        return parse_endpoint(text, allow_vid)
    rows = _BY_WORD.get(m[1])
    if rows is None:
        if _HEXISH.fullmatch(m[1]):  # fe80::1/1: an unbracketed IPv6 address
            return parse_endpoint(text, allow_vid)
        raise SpecError(f"{text!r}: unknown kind {m[1]!r} (known: {', '.join(KINDS)}, or HOST/N)")
    kind = next(k for k in rows if text.startswith(k.prefix + ":"))
    return kind.parse(text[len(kind.prefix) + 1 :], text)


def ends_help() -> str:
    """Every kind's syntax and help line, for the command line's help."""
    forms = [f"{k.syntax} ({k.help})" for k in KIND_TABLE]
    return ", ".join(forms[:-1]) + " or " + forms[-1]


def make_port(services: PortServices, end: End) -> Port:
    """The port of ``end``, made by its kind's function with the engine's shared
    services (nothing opened yet: see :func:`open_ports`)."""
    return kind_of(end).factory()(services, end)


def open_ports(ports: Sequence[Port]) -> None:
    """What must work before the loop runs (:meth:`~xcon.ports.Port.prepare`):
    devices and sockets that a typo or a missing privilege makes fail (taps,
    interfaces, local UDP ports, listening sockets).  On failure (a
    :class:`~xcon.errors.ModeError`) everything opened so far is closed again."""
    try:
        for port in ports:
            port.prepare()
    except BaseException:
        for port in ports:
            port.close()
        raise


# -- links --------------------------------------------------------------------------------


def parse_link(text: str) -> LinkSpec:
    parts = text.split("--")
    if len(parts) == 1:
        raise SpecError(f"{text!r}: a p2p link is END--END, e.g. vr1/1--vr2/1 (missing '--')")
    if len(parts) > 2:
        raise SpecError(
            f"{text!r}: '--' separates the two ends, so it cannot appear in a name or path"
        )
    left = parse_end(parts[0])
    right = parse_end(parts[1])
    if left.vid is not None and right.vid is not None:
        raise SpecError(
            f"{text!r}: a VLAN id on both sides (changing the VLAN id) is not supported"
        )
    return LinkSpec(left, right)


def _what(end: End) -> str:
    return "NIC" if isinstance(end, Endpoint) else "end"


def _bare(end: End) -> str:
    return str(Endpoint(end.host, end.nic)) if isinstance(end, Endpoint) else str(end)


def why_once(end: End) -> str:
    """Why ``end`` can be in one link only (for the user)."""
    return end.why_once()


def check_distinct(links: Sequence[LinkSpec]) -> None:
    """Each qemu NIC serves one connection at a time, so a NIC can be in one link only;
    the same holds for every resource an end holds (a local UDP port, an interface).

    A second link to the same NIC would wait in qemu's listen backlog forever (and
    look connected); catch that typo at start."""
    seen: dict[Resource, tuple[LinkSpec, End]] = {}
    for link in links:
        if set(link.left.resources) & set(link.right.resources):
            raise SpecError(f"'{link}': both ends are the same {_what(link.left)}")
        for end in (link.left, link.right):
            for key in end.resources:
                other = seen.get(key)
                if other is not None:
                    raise SpecError(
                        f"{_bare(end)} is in two links ('{other[0]}' and '{link}'): "
                        + why_once(end)
                    )
            for key in end.resources:
                seen[key] = (link, end)


def check_hub(ports: Sequence[End]) -> None:
    """A hub joins at least two ends, each once."""
    if len(ports) < 2:
        raise SpecError("--hub needs at least two ports")
    seen: dict[Resource, End] = {}
    for end in ports:
        for key in end.resources:
            other = seen.get(key)
            if other is not None:
                if str(end) == str(other):
                    raise SpecError(f"--hub lists '{end}' twice")
                raise SpecError(f"--hub lists the same {_what(end)} twice ('{other}' and '{end}')")
        for key in end.resources:
            seen[key] = end
