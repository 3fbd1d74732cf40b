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
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from xcon.limits import MAX_HOSTNAME, MAX_LABEL, MAX_NIC, MAX_VID, MIN_NIC, MIN_VID

_ENDPOINT = re.compile(r"(?P<host>\[[^\[\]]*\]|[^/\[\]]+)/(?P<nic>[0-9]+)(?::(?P<vid>[0-9]+))?")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class SpecError(ValueError):
    """A malformed endpoint or link; the message is meant for the user."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    nic: int
    vid: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        """What identifies the NIC: the parsed address and the NIC number."""
        return host_key(self.host), self.nic

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}/{self.nic}" + (f":{self.vid}" if self.vid is not None else "")


@dataclass(frozen=True)
class LinkSpec:
    left: Endpoint
    right: Endpoint

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


def parse_link(text: str) -> LinkSpec:
    parts = text.split("--")
    if len(parts) == 1:
        raise SpecError(f"{text!r}: a p2p link is HOST/N--HOST/N (missing '--')")
    if len(parts) > 2:
        raise SpecError(f"{text!r}: '--' separates the two ends, so it cannot appear in a name")
    left = parse_endpoint(parts[0])
    right = parse_endpoint(parts[1])
    if left.vid is not None and right.vid is not None:
        raise SpecError(
            f"{text!r}: a VLAN id on both sides (changing the VLAN id) is not supported"
        )
    return LinkSpec(left, right)


def check_distinct(links: Sequence[LinkSpec]) -> None:
    """Each qemu NIC serves one connection at a time, so a NIC can be in one link only.

    A second link to the same NIC would wait in qemu's listen backlog forever (and
    look connected); catch that typo at start."""
    seen: dict[tuple[str, int], LinkSpec] = {}
    for link in links:
        a, b = link.left.key, link.right.key
        if a == b:
            raise SpecError(f"'{link}': both ends are the same NIC")
        for key, end in ((a, link.left), (b, link.right)):
            other = seen.get(key)
            if other is not None:
                raise SpecError(
                    f"{Endpoint(end.host, end.nic)} is in two links ('{other}' and '{link}'): a qemu NIC serves "
                    "one connection at a time; join three or more NICs with --hub"
                )
            seen[key] = link


def check_hub(ports: Sequence[Endpoint]) -> None:
    """A hub joins at least two NICs, each once."""
    if len(ports) < 2:
        raise SpecError("--hub needs at least two ports")
    seen: dict[tuple[str, int], Endpoint] = {}
    for end in ports:
        other = seen.get(end.key)
        if other is not None:
            if str(end) == str(other):
                raise SpecError(f"--hub lists '{end}' twice")
            raise SpecError(f"--hub lists the same NIC twice ('{other}' and '{end}')")
        seen[end.key] = end
