"""Numbers that define the wire and the command line, in one place.

Everything that validates input or sizes a buffer takes its bounds from here,
so the parser, the ports, the fast path and the error messages agree.
"""

from __future__ import annotations

import argparse
import decimal
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

#: qemu's socket/stream netdev: every frame is a 4-byte big-endian length,
#: then that many bytes of Ethernet frame (no FCS).
FRAME_HEADER = 4
#: The longest frame qemu accepts (NET_BUFSIZE = 4096 + 65536); one byte more
#: and qemu closes the connection.  Lengths above it are a protocol error.
MAX_FRAME = 69632

#: ``host/N`` is qemu NIC N, listening on TCP ``QEMU_BASE_PORT + N``.
QEMU_BASE_PORT = 10000
MIN_NIC = 1
MAX_NIC = 65535 - QEMU_BASE_PORT

#: VXLAN (RFC 7348): a 24-bit network identifier, and the UDP port IANA
#: assigned (4789; containerlab uses 14789, Linux's own default is 8472).
MAX_VNI = (1 << 24) - 1
VXLAN_PORT = 4789
#: VXLAN's header before the inner Ethernet frame.
VXLAN_HEADER = 8

#: ``sun_path`` of a unix socket address holds 108 bytes with the final NUL.
UNIX_PATH_MAX = 107

#: TCP and UDP port numbers.
MIN_PORT = 1
MAX_PORT = 65535

#: 802.1Q VLAN ids usable on an access port (0 and 4095 are reserved).
MIN_VID = 1
MAX_VID = 4094

#: A tap's MTU (``--mtu``): Linux's limits for an Ethernet device, the
#: largest being the kernel's limit for tun/tap.
MTU_MIN = 68
MTU_MAX = 65521

#: Linux interface names: IFNAMSIZ is 16 including the terminating NUL, so a
#: name has at most ``IFNAMSIZ - 1`` bytes.
IFNAMSIZ = 16

#: ``--trace SECONDS``: the default, and the bounds (a tenth of a second, a day).
TRACE_DEFAULT = 1.0
TRACE_MIN = 0.1
TRACE_MAX = 86400.0

#: DNS names (RFC 1035/1123): a name has at most 253 characters (without a
#: trailing dot), a label 1 to 63.
MAX_HOSTNAME = 253
MAX_LABEL = 63


def qemu_tcp_port(nic: int) -> int:
    """The TCP port of qemu NIC ``nic`` (``-netdev socket,listen=:100NN``)."""
    return QEMU_BASE_PORT + nic


# -- bounded quantities ---------------------------------------------------------------------
#
# Every number a user gives (command line, config file, control API) is checked
# by the one Range that states its bounds, so the three front ends give the
# same value the same verdict and the same one-line message.  Values are read
# exactly (decimal.Decimal: no float rounding at the bounds, no overflow on
# 1e400 or a 5000-digit integer) and must be finite.


class OutOfRange(ValueError):
    """A value outside its range, or not a number: one line naming the field
    (when it has a name) and its range."""


#: A number as text: ASCII digits, an optional point and exponent (not
#: ``str.isdigit``, which takes '²' and other digits ``int`` refuses).
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]{1,6})?", re.ASCII)
_WHOLE = re.compile(r"[-+]?[0-9]+", re.ASCII)
#: For scaling a value read: exact enough for every bound here, and no
#: overflow for any exponent _DECIMAL takes.
_EXACT = decimal.Context(prec=60, Emax=10**8, Emin=-(10**8))


def _decimal(n: float | Decimal) -> Decimal:
    """A bound as written: the float 0.001 is 0.001, not a hair above."""
    return Decimal(repr(n) if isinstance(n, float) else n)


def _plain(n: float | Decimal) -> str:
    """A bound as people write it: 262144, 0.1, 60."""
    return f"{_decimal(n).normalize():f}"


def quote(value: object) -> str:
    """``value`` as a message quotes it: short, one line, never thousands of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"{'-' if value < 0 else ''}a number of {int(value.bit_length() * 0.30103)}+ digits"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:32] + "..."
        return text if _DECIMAL.fullmatch(value) else repr(text)
    text = repr(value)
    return text if len(text) <= 40 else text[:32] + "..."


@dataclass(frozen=True)
class Range:
    """A bounded quantity: ``lo..hi`` in ``unit`` (integers only when ``whole``).

    :meth:`check` takes what any front end has: an int, a float, a Decimal or
    text (argv, a query string, a JSON or TOML string), times ``scale`` (the
    front end's unit into the range's: milliseconds into seconds, say)."""

    name: str
    lo: int | float
    hi: int | float
    whole: bool = False
    unit: str = ""
    #: How the range reads in messages (default: ``lo..hi`` and the unit).
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{_plain(self.lo)}..{_plain(self.hi)}{self.unit}"

    def _error(self, name: str | None, shown: str, what: str) -> OutOfRange:
        label = self.name if name is None else name
        prefix = f"{label}: " if label else ""
        return OutOfRange(f"{prefix}{shown} is {what} {self}")

    def exact(
        self,
        value: object,
        *,
        scale: int | Decimal = 1,
        name: str | None = None,
        shown: str | None = None,
    ) -> Decimal:
        """``value`` × ``scale``, exactly, checked; raises :class:`OutOfRange`.
        ``name`` replaces the range's name in the message ('' for none);
        ``shown`` is how the value is quoted (default: the value itself)."""
        seen = quote(value) if shown is None else shown
        kind = "a whole number" if self.whole else "a number"
        if isinstance(value, str):
            if not (_WHOLE if self.whole else _DECIMAL).fullmatch(value):
                raise self._error(name, seen, f"not {kind} in")
            d = Decimal(value)
        elif isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise self._error(name, seen, f"not {kind} in")
        elif isinstance(value, int) and value.bit_length() > 256:
            raise self._error(name, seen, "outside")  # beyond any bound: not converted
        elif not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
            raise self._error(name, seen, f"not {kind} in")
        else:  # a float as written (its shortest repr): 0.1 is 0.1, not 0.1000000000000000055
            d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if scale != 1:
            d = _EXACT.multiply(d, Decimal(scale))
        if self.whole and d != d.to_integral_value():
            raise self._error(name, seen, f"not {kind} in")
        if not _decimal(self.lo) <= d <= _decimal(self.hi):
            raise self._error(name, seen, "outside")
        return d

    def check(
        self,
        value: object,
        *,
        scale: int | Decimal = 1,
        name: str | None = None,
        shown: str | None = None,
    ) -> Any:
        """The checked value: an int when ``whole``, else a float."""
        d = self.exact(value, scale=scale, name=name, shown=shown)
        return int(d) if self.whole else float(d) + 0.0  # + 0.0: no -0.0

    def arg_type(self, text_out: bool = False) -> Callable[[str], Any]:
        """An argparse ``type``: the checked value, or with ``text_out`` the
        text itself (for an exact conversion later); a bad one is argparse's
        one-line error, naming the flag."""

        def parse(text: str) -> Any:
            try:
                value = self.check(text, name="")
            except OutOfRange as e:
                raise argparse.ArgumentTypeError(str(e)) from None
            return text if text_out else value

        return parse


# -- the table: each quantity a user can give, and its range --------------------------------

#: A capture's snap length: bytes kept of each frame (0: whole frames), up to
#: libpcap's largest.
MAX_SNAPLEN = 262144
SNAPLEN = Range("snaplen", 0, MAX_SNAPLEN, whole=True, unit=" bytes")
#: Ring files: a new file before one exceeds this many million bytes (0: no
#: size limit), or after this many seconds (0: no time limit; at most 366
#: days); keep the newest ``files`` (0: all).
CAPTURE_SIZE_MB = Range("size_mb", 0, 1_000_000, unit=" MB")
CAPTURE_SECONDS = Range("seconds", 0, 366 * 86400, unit=" s")
CAPTURE_FILES = Range("files", 0, 1_000_000, whole=True)
#: The impairments' random draws (``--seed``, ``seed =``).
SEED = Range("seed", 0, 2**64 - 1, whole=True)
#: What ``--on-exit`` may say: the routers' NICs set off when xcon stops, or left as they are.
ON_EXIT = ("down", "keep")
#: A flap schedule's down and up times (seconds), and how many times it runs.
FLAP_SECONDS = Range("seconds", 0.01, 86400, unit=" s")
FLAP_COUNT = Range("count", 1, 10**9, whole=True)

_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ms|s|m|h|)")
_DURATION_UNITS: dict[str, int | Decimal] = {
    "ms": Decimal("0.001"),
    "s": 1,
    "": 1,
    "m": 60,
    "h": 3600,
}


def duration(value: object, rng: Range, name: str) -> float:
    """A time a user gives: ``2s``, ``500ms``, ``1.5m``, ``1h``, or a number
    of seconds (text or a number), checked against ``rng`` (seconds); raises
    :class:`OutOfRange`."""
    if isinstance(value, str):
        m = _DURATION.fullmatch(value.strip().lower())
        if not m:
            raise OutOfRange(f"{name}: {quote(value)} is not a time (e.g. 2s, 500ms, 1m)")
        return float(
            rng.check(m.group(1), scale=_DURATION_UNITS[m.group(2)], name=name, shown=value)
        )
    return float(rng.check(value, name=name))


#: An impairment's delay and jitter, in seconds (netem's own limit is about
#: 4.2 s in older kernels; a longer line holds more than the queue can anyway).
DELAY = Range("delay", 0, 60, unit="s")
#: An impairment's probabilities and correlations, in percent.
PERCENT = Range("percentage", 0, 100, unit="%")
#: An impairment's rate, in bits per second.
RATE = Range("rate", 1, 10**12, text="1bit..1tbit")
#: Frames waiting in a delay line; reorder's gap (netem's are 32 bits).
LIMIT = Range("limit", 1, 2**32 - 1, whole=True, unit=" frames")
GAP = Range("gap", 0, 2**32 - 1, whole=True, unit=" frames")
#: ``xcon ctl --timeout``: seconds to wait for xcon's answer.
CTL_TIMEOUT = Range("timeout", 0.001, 86400, unit=" s")
#: Seconds between two refreshes of ``xcon ctl top``.
TOP_INTERVAL = Range("interval", 0.1, 3600, unit=" s")


#: ``--workers``: at most this many worker processes.
MAX_WORKERS = 64


def usable_cpus() -> int:
    """The cores this process may run on (its CPU affinity)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_workers(units: int, cpus: int) -> int:
    """``--workers auto``: one worker per usable core, at most one per link (or
    hub); one process (1) on one core or for a lab of one link."""
    if cpus < 2 or units < 2:
        return 1
    return min(cpus, units, MAX_WORKERS)
