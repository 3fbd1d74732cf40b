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
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

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
#: The longest delay accepted (netem's own limit is about 4.2 s in older
#: kernels; a longer line holds more than the queue can anyway).
MAX_DELAY = 60.0

_NUM = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
_TIME_UNITS = {
    "s": 1.0, "sec": 1.0, "secs": 1.0,
    "ms": 1e-3, "msec": 1e-3, "msecs": 1e-3,
    "us": 1e-6, "usec": 1e-6, "usecs": 1e-6, "": 1e-6,
}  # fmt: skip
_RATE_PREFIX = {
    "": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
    "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4,
}  # fmt: skip


class ImpairError(ValueError):
    """A bad impairment (one line, for the user)."""


def parse_time(text: str) -> float:
    """``10ms`` -> 0.01 (seconds); a bare number is microseconds, as in tc."""
    m = re.fullmatch(rf"({_NUM})([a-z]*)", text.strip().lower())
    if not m or m.group(2) not in _TIME_UNITS:
        raise ImpairError(f"bad time {text!r} (use e.g. 10ms, 500us, 1.5s)")
    return float(m.group(1)) * _TIME_UNITS[m.group(2)]


def parse_percent(text: str) -> float:
    """``1.5%`` -> 0.015; a bare number is a percentage, as in tc."""
    m = re.fullmatch(rf"({_NUM})%?", text.strip())
    if not m:
        raise ImpairError(f"bad percentage {text!r} (use e.g. 1%, 0.1%, 25)")
    value = float(m.group(1)) / 100
    if value > 1:
        raise ImpairError(f"bad percentage {text!r}: above 100%")
    return value


def parse_rate(text: str) -> float:
    """``100mbit`` -> 1e8 (bits per second); ``bps`` units are bytes per second."""
    m = re.fullmatch(rf"({_NUM})(|k|m|g|t|ki|mi|gi|ti)(bit|bps|)", text.strip().lower())
    if not m or (m.group(2) and not m.group(3)):
        raise ImpairError(f"bad rate {text!r} (use e.g. 100mbit, 1gbit, 500kbps)")
    value = float(m.group(1)) * _RATE_PREFIX[m.group(2)] * (8 if m.group(3) == "bps" else 1)
    if value <= 0:
        raise ImpairError(f"bad rate {text!r}: must be above 0")
    return value


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
        if self.distribution not in DISTRIBUTIONS:
            raise ImpairError(
                f"unknown distribution {self.distribution!r} (one of {', '.join(DISTRIBUTIONS)})"
            )
        for name in ("delay", "jitter"):
            v = getattr(self, name)
            if not (0 <= v <= MAX_DELAY):
                raise ImpairError(f"{name} {v!r}s out of range (0 to {MAX_DELAY:g}s)")
        for f in ("delay_corr", "loss", "loss_corr", "duplicate", "duplicate_corr",
                  "corrupt", "corrupt_corr", "reorder", "reorder_corr"):  # fmt: skip
            v = getattr(self, f)
            if not (0 <= v <= 1) or math.isnan(v):
                raise ImpairError(f"{f} {v!r} out of range (0 to 100%)")
        if self.gemodel is not None:
            if len(self.gemodel) != 4 or not all(0 <= v <= 1 for v in self.gemodel):
                raise ImpairError("gemodel needs 1 to 4 percentages (p r 1-h 1-k)")
        if self.gap < 0 or self.limit < 1:
            raise ImpairError("gap must be >= 0 and limit >= 1")
        if self.rate < 0 or math.isnan(self.rate):
            raise ImpairError(f"rate {self.rate!r} out of range")
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

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["gemodel"] = list(self.gemodel) if self.gemodel else None
        d["netem"] = self.words()
        return d


def _time(v: float) -> str:
    if v >= 1:
        return f"{v:g}s"
    if v >= 1e-3:
        return f"{v * 1e3:g}ms"
    return f"{v * 1e6:g}us"


def _pct(v: float) -> str:
    return f"{v * 100:g}%"


def _rate(v: float) -> str:
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if v >= scale:
            return f"{v / scale:g}{unit}"
    return f"{v:g}bit"


def _is_number(word: str | None) -> bool:
    return word is not None and re.match(r"[0-9.]", word) is not None


def parse_netem(words: str | Sequence[str]) -> Impairment:
    """An :class:`Impairment` from netem's words (``"delay 10ms 2ms loss 1%"``)."""
    toks = words.split() if isinstance(words, str) else [w for t in words for w in t.split()]
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
            kw["delay"] = parse_time(arg(w))
            j = optional()
            if j is not None:
                kw["jitter"] = parse_time(j)
                c = optional()
                if c is not None:
                    kw["delay_corr"] = parse_percent(c)
        elif w == "distribution":
            seen("distribution", w)
            kw["distribution"] = arg(w).lower()
        elif w == "loss":
            seen("loss", w)
            kind = arg(w).lower()
            if kind == "gemodel":
                vals = [parse_percent(arg("loss gemodel"))]
                while len(vals) < 4 and (v := optional()) is not None:
                    vals.append(parse_percent(v))
                # tc-netem(8)'s defaults: r = 100%, 1-h = 100%, 1-k = 0%.
                vals += [1.0, 1.0, 0.0][len(vals) - 1 :]
                kw["gemodel"] = tuple(vals)
            elif kind == "state":
                raise ImpairError("loss state (4-state Markov) is not supported; use loss gemodel")
            else:
                if kind == "random":
                    kind = arg("loss random")
                kw["loss"] = parse_percent(kind)
                c = optional()
                if c is not None:
                    kw["loss_corr"] = parse_percent(c)
        elif w in ("duplicate", "corrupt", "reorder"):
            seen(w, w)
            kw[w] = parse_percent(arg(w))
            c = optional()
            if c is not None:
                kw[w + "_corr"] = parse_percent(c)
        elif w == "gap":
            seen("gap", w)
            g = arg(w)
            if not g.isdigit():
                raise ImpairError(f"bad gap {g!r} (a number of frames)")
            kw["gap"] = int(g)
        elif w == "rate":
            seen("rate", w)
            kw["rate"] = parse_rate(arg(w))
            if optional() is not None:
                raise ImpairError("rate: packet overhead and cell options are not supported")
        elif w == "limit":
            seen("limit", w)
            n = arg(w)
            if not n.isdigit():
                raise ImpairError(f"bad limit {n!r} (a number of frames)")
            kw["limit"] = int(n)
        elif w in ("slot", "ecn"):
            raise ImpairError(f"{w!r} is not supported")
        else:
            raise ImpairError(
                f"unknown word {toks[i]!r} (delay, distribution, loss, duplicate, corrupt, "
                "reorder, gap, rate, limit)"
            )
        i += 1
    if "distribution" in kw and not kw.get("jitter"):
        raise ImpairError("distribution needs a delay with a jitter")
    if kw.get("reorder") and not kw.get("gap"):
        kw["gap"] = 1  # tc's default
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
    if kw.get("reorder") and not kw.get("gap"):
        kw["gap"] = 1
    return replace(base or Impairment(), **kw)


def _field_value(name: str, value: Any) -> Any:
    if isinstance(value, bool):
        raise ImpairError(f"bad {name}: {value!r}")
    if name in ("delay", "jitter"):
        return parse_time(value) if isinstance(value, str) else float(value) / 1e3
    if name == "rate":
        return parse_rate(value) if isinstance(value, str) else _positive(float(value) * 1e3)
    if name in ("gap", "limit"):
        if isinstance(value, str) and not value.isdigit():
            raise ImpairError(f"bad {name}: {value!r}")
        return int(value)
    if name == "distribution":
        return str(value).lower()
    if name == "gemodel":
        vals = value.split() if isinstance(value, str) else list(value)
        if not 1 <= len(vals) <= 4:
            raise ImpairError("gemodel needs 1 to 4 percentages (p r 1-h 1-k)")
        got = [parse_percent(str(v)) for v in vals]
        return tuple(got + [1.0, 1.0, 0.0][len(got) - 1 :])
    return parse_percent(value) if isinstance(value, str) else _fraction(float(value) / 100)


def _positive(v: float) -> float:
    if not v > 0:
        raise ImpairError(f"rate {v!r} must be above 0")
    return v


def _fraction(v: float) -> float:
    if not 0 <= v <= 1:
        raise ImpairError(f"percentage {v * 100!r} out of range (0 to 100)")
    return v


def parse_any(value: str | Iterable[str] | Mapping[str, Any]) -> Impairment:
    """Netem words (a string or list of words) or a mapping of fields."""
    if isinstance(value, Mapping):
        return from_fields(value)
    return parse_netem(value if isinstance(value, str) else list(value))
