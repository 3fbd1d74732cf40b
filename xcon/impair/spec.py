"""tc-netem's words and units, parsed into an :class:`Impairment`.

The grammar is ``tc qdisc ... netem`` 's (``tc-netem(8)``), word for word::

    delay TIME [JITTER [CORRELATION]]   (also: latency)
    distribution uniform|normal|pareto|paretonormal
    loss [random] PERCENT [CORRELATION]
    loss gemodel p [r [1-h [1-k]]]
    duplicate PERCENT [CORRELATION]
    corrupt PERCENT [CORRELATION]
    reorder PERCENT [CORRELATION] [gap DISTANCE]
    rate RATE
    limit PACKETS

Units as tc takes them: times ``s``/``sec``/``ms``/``msec``/``us``/``usec``
(a bare number is microseconds), percentages ``1.5%`` (a bare number is a
percentage too), rates ``bit``/``kbit``/``mbit``/``gbit``/``tbit`` (powers of
1000), ``kibit``/``mibit``/``gibit``/``tibit`` (powers of 1024), the same with
``bps`` for bytes per second (``kbps``, ``mibps``...), a bare number is bits
per second.  ``slot``, ``ecn``, ``loss state`` and the rate's cell options
are refused with a clear message.  Every error is one line
(:class:`ImpairError`).

The ranges are :mod:`xcon.limits`' (``DELAY``, ``PERCENT``, ``RATE``,
``LIMIT``, ``GAP``), whichever front end the value came through.  An
:class:`Impairment` holds its values on a grid (times in whole nanoseconds,
probabilities in billionths, rates in whole bits per second), which
:meth:`Impairment.words` writes exactly: its words parse back to the same
impairment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from xcon.limits import DELAY, GAP, LIMIT, PERCENT, RATE, OutOfRange, Range, quote

__all__ = [
    "DISTRIBUTIONS",
    "ImpairError",
    "Impairment",
    "from_fields",
    "parse_netem",
    "parse_percent",
    "parse_rate",
    "parse_time",
]

#: Delay distributions (netem's tables, computed: see :mod:`xcon.impair.stage`).
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
#: netem's default queue limit (packets).
DEFAULT_LIMIT = 1000
#: The longest delay accepted (:data:`xcon.limits.DELAY`).
MAX_DELAY = float(DELAY.hi)

_NUM = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]{1,6})?"
_MS, _US = Decimal("0.001"), Decimal("0.000001")
_TIME_UNITS = {
    "s": 1, "sec": 1, "secs": 1,
    "ms": _MS, "msec": _MS, "msecs": _MS,
    "us": _US, "usec": _US, "usecs": _US, "": _US,
}  # fmt: skip
_RATE_PREFIX = {
    "": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
    "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4,
}  # fmt: skip
#: The grid an impairment's values are held on (see the module docstring).
_NS = 10**9  # per second
_BILLIONTHS = 10**9  # per 1 (10**7 per percent)
_PROBABILITIES = (
    "delay_corr", "loss", "loss_corr", "duplicate", "duplicate_corr",
    "corrupt", "corrupt_corr", "reorder", "reorder_corr",
)  # fmt: skip


class ImpairError(ValueError):
    """A bad impairment (one line, for the user)."""


def _checked(rng: Range, value: object, **kw: Any) -> Decimal:
    """``rng.exact`` with its error as an :class:`ImpairError`."""
    try:
        return rng.exact(value, **kw)
    except OutOfRange as e:
        raise ImpairError(str(e)) from None


def parse_time(text: str, name: str = "delay") -> float:
    """``10ms`` -> 0.01 (seconds); a bare number is microseconds, as in tc."""
    m = re.fullmatch(rf"({_NUM})([a-z]*)", text.strip().lower())
    if not m or m.group(2) not in _TIME_UNITS:
        raise ImpairError(f"{name}: bad time {text!r} (use e.g. 10ms, 500us, 1.5s)")
    unit = _TIME_UNITS[m.group(2)]
    return float(_checked(DELAY, m.group(1), scale=unit, name=name, shown=text.strip()))


def parse_percent(text: str, name: str = "percentage") -> float:
    """``1.5%`` -> 0.015; a bare number is a percentage, as in tc."""
    m = re.fullmatch(rf"({_NUM})%?", text.strip())
    if not m:
        raise ImpairError(f"{name}: bad percentage {text!r} (use e.g. 1%, 0.1%, 25)")
    return float(_checked(PERCENT, m.group(1), name=name, shown=text.strip()) / 100)


def parse_rate(text: str) -> float:
    """``100mbit`` -> 1e8 (bits per second); ``bps`` units are bytes per second."""
    m = re.fullmatch(rf"({_NUM})(|k|m|g|t|ki|mi|gi|ti)(bit|bps|)", text.strip().lower())
    if not m or (m.group(2) and not m.group(3)):
        raise ImpairError(f"bad rate {text!r} (use e.g. 100mbit, 1gbit, 500kbps)")
    scale = _RATE_PREFIX[m.group(2)] * (8 if m.group(3) == "bps" else 1)
    return float(_checked(RATE, m.group(1), scale=scale, shown=text.strip()))


def parse_frames(text: str, rng: Range) -> int:
    """``limit`` and ``gap``: a whole number of frames (ASCII digits)."""
    return int(_checked(rng, text))


def _grid(value: Decimal, per: int) -> float:
    """``value`` on a grid of ``1/per``: the nearest multiple, as a float."""
    n = int((value * per).to_integral_value(ROUND_HALF_EVEN))
    return n / per


@dataclass(frozen=True)
class Impairment:
    """What to do to one direction's frames; probabilities are fractions (0..1),
    times seconds, ``rate`` bits per second (0: unlimited)."""

    delay: float = 0.0
    jitter: float = 0.0
    delay_corr: float = 0.0
    distribution: str = "uniform"
    loss: float = 0.0
    loss_corr: float = 0.0
    #: Gilbert-Elliott (p, r, 1-h, 1-k): P(good->bad), P(bad->good), loss
    #: probability in the bad state, loss probability in the good state.
    gemodel: tuple[float, float, float, float] | None = None
    duplicate: float = 0.0
    duplicate_corr: float = 0.0
    corrupt: float = 0.0
    corrupt_corr: float = 0.0
    reorder: float = 0.0
    reorder_corr: float = 0.0
    gap: int = 0
    rate: float = 0.0
    limit: int = DEFAULT_LIMIT

    def __post_init__(self) -> None:
        """Check every value against its range and put it on the grid; a value
        that means nothing without another (a correlation without its
        probability, a gap without reorder) is dropped, so equal behaviour is
        one value."""
        put = object.__setattr__
        if not isinstance(self.distribution, str) or self.distribution not in DISTRIBUTIONS:
            raise ImpairError(
                f"unknown distribution {quote(self.distribution)} "
                f"(one of {', '.join(DISTRIBUTIONS)})"
            )
        for name in ("delay", "jitter"):
            put(self, name, _grid(_checked(DELAY, getattr(self, name), name=name), _NS))
        for name in _PROBABILITIES:
            put(self, name, _fraction(getattr(self, name), name))
        if self.gemodel is not None:
            if not isinstance(self.gemodel, tuple | list) or len(self.gemodel) != 4:
                raise ImpairError("gemodel needs 1 to 4 percentages (p r 1-h 1-k)")
            put(self, "gemodel", tuple(_fraction(v, "gemodel") for v in self.gemodel))
            if self.loss:
                raise ImpairError("loss: a percentage or gemodel, not both")
        rate = 0 if self.rate == 0 else _checked(RATE, self.rate)
        put(self, "rate", float(Decimal(rate).to_integral_value(ROUND_HALF_EVEN)))
        put(self, "limit", int(_checked(LIMIT, self.limit)))
        gap = int(_checked(GAP, self.gap))
        put(self, "gap", (gap or 1) if self.reorder else 0)  # 1: tc's default
        if not self.jitter:
            put(self, "delay_corr", 0.0)
            if self.distribution != "uniform":
                raise ImpairError("distribution needs a delay with a jitter")
        for name in ("loss", "duplicate", "corrupt", "reorder"):
            if not getattr(self, name):
                put(self, name + "_corr", 0.0)
        if self.reorder and not self.delay:
            raise ImpairError("reorder needs a delay (frames are reordered by not delaying some)")

    @property
    def null(self) -> bool:
        """True when it does nothing to any frame."""
        return self == Impairment(limit=self.limit)

    @property
    def lossy(self) -> bool:
        return bool(self.loss or (self.gemodel and (self.gemodel[2] or self.gemodel[3])))

    def words(self) -> str:
        """The impairment in netem's words (what ``tc qdisc show`` would print)."""
        out: list[str] = []
        if self.delay or self.jitter:
            out += ["delay", _time(self.delay)]
            if self.jitter:
                out.append(_time(self.jitter))
                if self.delay_corr:
                    out.append(_pct(self.delay_corr))
                if self.distribution != "uniform":
                    out += ["distribution", self.distribution]
        if self.gemodel is not None:
            out += ["loss", "gemodel", *(_pct(v) for v in self.gemodel)]
        elif self.loss:
            out += ["loss", _pct(self.loss)] + ([_pct(self.loss_corr)] if self.loss_corr else [])
        for name in ("duplicate", "corrupt", "reorder"):
            v, c = getattr(self, name), getattr(self, name + "_corr")
            if v:
                out += [name, _pct(v)] + ([_pct(c)] if c else [])
        if self.reorder and self.gap > 1:
            out += ["gap", str(self.gap)]
        if self.rate:
            out += ["rate", _rate(self.rate)]
        if self.limit != DEFAULT_LIMIT:
            out += ["limit", str(self.limit)]
        return " ".join(out) or "none"


def _exact(n: int, places: int) -> str:
    """``n / 10**places`` in decimal, exactly and without trailing zeros."""
    whole, part = divmod(n, 10**places)
    return f"{whole}.{part:0{places}d}".rstrip("0") if part else str(whole)


def _time(v: float) -> str:
    n = round(v * _NS)
    if n >= 10**9:
        return _exact(n, 9) + "s"
    if n >= 10**6:
        return _exact(n, 6) + "ms"
    return _exact(n, 3) + "us"


def _pct(v: float) -> str:
    return _exact(round(v * _BILLIONTHS), 7) + "%"


def _rate(v: float) -> str:
    n = round(v)
    for unit, places in (("gbit", 9), ("mbit", 6), ("kbit", 3)):
        if n >= 10**places:
            return _exact(n, places) + unit
    return f"{n}bit"


def _fraction(value: object, name: str) -> float:
    """A probability (0..1) checked as the percentage it is, on the grid."""
    shown = f"{quote(value * 100)}%" if isinstance(value, float) else None
    return _grid(_checked(PERCENT, value, scale=100, name=name, shown=shown) / 100, _BILLIONTHS)


def _is_number(word: str | None) -> bool:
    return word is not None and re.match(r"[0-9.]", word) is not None


def parse_netem(words: str | Sequence[str]) -> Impairment:
    """An :class:`Impairment` from netem's words (``"delay 10ms 2ms loss 1%"``)."""
    toks = words.split() if isinstance(words, str) else [w for t in words for w in t.split()]
    if [t.lower() for t in toks] == ["none"]:
        return Impairment()  # what words() says of the null impairment
    kw: dict[str, Any] = {}
    i = 0

    def arg(what: str) -> str:
        nonlocal i
        i += 1
        if i >= len(toks):
            raise ImpairError(f"{what}: a value is missing at the end")
        return toks[i]

    def optional() -> str | None:
        nonlocal i
        if i + 1 < len(toks) and _is_number(toks[i + 1]):
            i += 1
            return toks[i]
        return None

    def seen(key: str, word: str) -> None:
        if key in kw:
            raise ImpairError(f"{word!r} given twice")

    while i < len(toks):
        w = toks[i].lower()
        if w in ("delay", "latency"):
            seen("delay", w)
            kw["delay"] = parse_time(arg(w), "delay")
            j = optional()
            if j is not None:
                kw["jitter"] = parse_time(j, "jitter")
                c = optional()
                if c is not None:
                    kw["delay_corr"] = parse_percent(c, "delay correlation")
        elif w == "distribution":
            seen("distribution", w)
            kw["distribution"] = arg(w).lower()
        elif w == "loss":
            seen("loss", w)
            kind = arg(w).lower()
            if kind == "gemodel":
                vals = [parse_percent(arg("loss gemodel"), "gemodel")]
                while len(vals) < 4 and (v := optional()) is not None:
                    vals.append(parse_percent(v, "gemodel"))
                # tc-netem(8)'s defaults: r = 100%, 1-h = 100%, 1-k = 0%.
                vals += [1.0, 1.0, 0.0][len(vals) - 1 :]
                kw["gemodel"] = tuple(vals)
            elif kind == "state":
                raise ImpairError("loss state (4-state Markov) is not supported; use loss gemodel")
            else:
                if kind == "random":
                    kind = arg("loss random")
                kw["loss"] = parse_percent(kind, "loss")
                c = optional()
                if c is not None:
                    kw["loss_corr"] = parse_percent(c, "loss correlation")
        elif w in ("duplicate", "corrupt", "reorder"):
            seen(w, w)
            kw[w] = parse_percent(arg(w), w)
            c = optional()
            if c is not None:
                kw[w + "_corr"] = parse_percent(c, f"{w} correlation")
        elif w == "gap":
            seen("gap", w)
            kw["gap"] = parse_frames(arg(w), GAP)
        elif w == "rate":
            seen("rate", w)
            kw["rate"] = parse_rate(arg(w))
            if optional() is not None:
                raise ImpairError("rate: packet overhead and cell options are not supported")
        elif w == "limit":
            seen("limit", w)
            kw["limit"] = parse_frames(arg(w), LIMIT)
        elif w in ("slot", "ecn"):
            raise ImpairError(f"{w!r} is not supported")
        else:
            raise ImpairError(
                f"unknown word {toks[i]!r} (delay, distribution, loss, duplicate, corrupt, "
                "reorder, gap, rate, limit)"
            )
        i += 1
    return Impairment(**kw)


#: Field names a JSON body (or the config file) may give instead of netem words,
#: and containerlab's flag names (``--delay --jitter --loss --rate --corruption``).
_CLAB = {"corruption": "corrupt"}


def from_fields(body: Mapping[str, Any], base: Impairment | None = None) -> Impairment:
    """An impairment from named fields (``{"delay": "10ms", "loss": 1}``), as the
    API, the config file and containerlab's flags spell them; values may be
    strings with tc units or numbers (delays in ms and percentages as numbers,
    as containerlab takes them; rate as a number is kbit/s, as containerlab's)."""
    kw: dict[str, Any] = {}
    names = {f.name for f in fields(Impairment)}
    for key, value in body.items():
        name = _CLAB.get(key, key).replace("-", "_")
        if name not in names:
            raise ImpairError(f"unknown field {key!r}")
        if value is None:
            continue
        try:
            kw[name] = _field_value(name, value)
        except (TypeError, ValueError) as e:
            if isinstance(e, ImpairError):
                raise
            raise ImpairError(f"bad {key}: {value!r}") from None
    return replace(base or Impairment(), **kw)


def _field_value(name: str, value: Any) -> Any:
    number = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value)
    )
    if name in ("delay", "jitter"):
        if isinstance(value, str):
            return parse_time(value, name)
        shown = f"{quote(value)}ms" if number else None
        return float(_checked(DELAY, value, scale=_MS, name=name, shown=shown))
    if name == "rate":
        if isinstance(value, str):
            return parse_rate(value)
        shown = f"{quote(value)}kbit" if number else None
        return float(_checked(RATE, value, scale=1000, shown=shown))
    if name in ("gap", "limit"):
        return int(_checked(GAP if name == "gap" else LIMIT, value))
    if name == "distribution":
        if not isinstance(value, str):
            raise ImpairError(f"distribution is one of {', '.join(DISTRIBUTIONS)}")
        return value.lower()
    if name == "gemodel":
        vals = value.split() if isinstance(value, str) else value
        if not isinstance(vals, list | tuple) or not 1 <= len(vals) <= 4:
            raise ImpairError("gemodel needs 1 to 4 percentages (p r 1-h 1-k)")
        got = [_percent(v, "gemodel") for v in vals]
        return tuple(got + [1.0, 1.0, 0.0][len(got) - 1 :])
    return _percent(value, name)


def _percent(value: object, name: str) -> float:
    """A percentage as text (tc's: ``1.5%``, ``1.5``) or a number."""
    if isinstance(value, str):
        return parse_percent(value, name)
    return float(_checked(PERCENT, value, name=name) / 100)
