"""The table of ranges (``xcon.limits``): each bounded quantity checked once,
exactly, whatever the front end; the command line, the config file and the
API give the same value the same verdict and the same range in the message."""

from __future__ import annotations

import argparse
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xcon import cli, limits
from xcon.capture.options import CaptureOptions
from xcon.control.api import capture_options
from xcon.control.config import ConfigError, parse_config
from xcon.errors import BadRequest
from xcon.limits import OutOfRange, Range

TABLE = [
    limits.SNAPLEN,
    limits.CAPTURE_SIZE_MB,
    limits.CAPTURE_SECONDS,
    limits.CAPTURE_FILES,
    limits.SEED,
    limits.DELAY,
    limits.PERCENT,
    limits.RATE,
    limits.LIMIT,
    limits.GAP,
    limits.CTL_TIMEOUT,
]
NOT_NUMBERS = [
    None, True, False, [], {}, [1], "", " 1", "1 ", "x", "inf", "-inf", "nan", "Infinity", "²",
    "٣", "1²", "0x10", "1_000", "١٢", float("inf"), float("-inf"), float("nan"),
]  # fmt: skip


def refused(rng: Range, value: object, **kw) -> str:
    with pytest.raises(OutOfRange) as e:
        rng.check(value, **kw)
    message = str(e.value)
    assert "\n" not in message and len(message) < 200
    assert str(rng) in message
    return message


@pytest.mark.parametrize("rng", TABLE, ids=lambda r: r.name)
def test_the_bounds_are_in_and_a_step_beyond_is_out(rng):
    for bound in (rng.lo, rng.hi):
        assert rng.check(bound) == bound
        assert rng.check(repr(bound)) == bound  # the same as text
    step = 1 if rng.whole else Decimal("1e-9")
    lo, hi = Decimal(repr(rng.lo)), Decimal(repr(rng.hi))
    refused(rng, lo - step)
    refused(rng, hi + step)
    assert refused(rng, f"{hi + step:f}").startswith(f"{rng.name}: ")
    assert isinstance(rng.check(rng.hi), int if rng.whole else float)


@pytest.mark.parametrize("rng", TABLE, ids=lambda r: r.name)
def test_what_is_not_a_finite_number_is_refused_in_one_line(rng):
    for value in NOT_NUMBERS:
        assert "is not a" in refused(rng, value)
    for huge in (10**5000, -(10**5000), "9" * 5000, "-" + "9" * 5000, 1e308, -1e308):
        assert "is outside" in refused(rng, huge)
    for huge in ("1e400", "-1e400"):  # text: digits only for a whole number
        assert ("is not a whole number" if rng.whole else "is outside") in refused(rng, huge)
    assert "5000+ digits" in refused(rng, 10**5000)  # never printed in full
    assert len(refused(rng, "9" * 5000)) < 120


def test_whole_quantities_take_digits_and_integral_numbers_only():
    assert limits.SNAPLEN.check(128.0) == 128
    assert limits.SNAPLEN.check("00128") == 128
    for value in ("1e2", "128.0", "12.5", 12.5, "+-1"):
        assert "not a whole number" in refused(limits.SNAPLEN, value)


def test_decimal_quantities_are_read_exactly():
    # a float would read both as 31622400.0, the bound
    assert limits.CAPTURE_SECONDS.check("31622399.99999999999999999") == 31622400.0
    refused(limits.CAPTURE_SECONDS, "31622400.00000000000000001")
    assert limits.DELAY.check("60000", scale=Decimal("0.001")) == 60.0
    refused(limits.DELAY, "60000.000000001", scale=Decimal("0.001"))
    assert limits.CAPTURE_SIZE_MB.check("1e-6") == 1e-6
    assert math.copysign(1, limits.DELAY.check("-0")) == 1  # no negative zero


def test_a_message_names_the_field_given_or_none():
    assert refused(limits.SEED, "-1", name="") == "-1 is outside 0..18446744073709551615"
    assert refused(limits.PERCENT, 150, name="loss") == "loss: 150 is outside 0..100%"
    assert refused(limits.RATE, "0").startswith("rate: 0 is outside 1bit..1tbit")


@given(st.one_of(st.integers(), st.floats(), st.text(max_size=30), st.decimals()))
def test_anything_is_a_value_in_range_or_one_line(value):
    for rng in TABLE:
        try:
            got = rng.check(value)
        except OutOfRange as e:
            assert "\n" not in str(e) and str(rng) in str(e)
        else:
            assert rng.lo <= got <= rng.hi and (not rng.whole or isinstance(got, int))


# -- one verdict, three front ends ----------------------------------------------------------

#: (API/config key, command-line flag, value as text)
CAPTURE_CASES = [
    (key, flag, text)
    for key, flag in (
        ("snaplen", "--snaplen"),
        ("size_mb", "--capture-size"),
        ("seconds", "--capture-seconds"),
        ("files", "--capture-files"),
    )
    for text in (
        "0", "1", "1.5", "-1", "262144", "262145", "1000000", "1000001", "31622400", "31622401",
        "1e10", "1e300", "1e400", "inf", "nan", "²", "9" * 400, "0.0000001",
    )
]  # fmt: skip


def cli_verdict(flag: str, text: str) -> str | None:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if flag in a.option_strings)
    try:
        action.type(text)  # type: ignore[misc]
    except argparse.ArgumentTypeError as e:
        return str(e)
    return None


def api_verdict(key: str, text: str) -> str | None:
    try:
        capture_options({"file": "f", "size_mb": 1, key: text}, file=True)
        capture_options({"file": "f", "size_mb": 1, key: _number(text)}, file=True)
    except BadRequest as e:
        return str(e)
    return None


def config_verdict(key: str, text: str) -> str | None:
    import tomllib

    try:
        value = tomllib.loads(f"v = {text}")["v"]  # as TOML reads it, when it is TOML
    except (tomllib.TOMLDecodeError, ValueError):
        value = text
    table = {"file": "f", "size_mb": 1, key: value}
    try:
        parse_config({"link": [{"spec": "a/1--b/1", "capture": table}]}, "lab.toml")
    except ConfigError as e:
        return str(e)
    return None


def _number(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


@pytest.mark.parametrize("key, flag, text", CAPTURE_CASES)
def test_capture_numbers_get_the_same_verdict_everywhere(key, flag, text):
    verdicts = [cli_verdict(flag, text), api_verdict(key, text), config_verdict(key, text)]
    assert len({v is None for v in verdicts}) == 1, verdicts
    rng = {r.name: r for r in TABLE}[key]
    for message in filter(None, verdicts):
        assert str(rng) in message and "\n" not in message


@pytest.mark.parametrize("text", ["0", "18446744073709551615", "18446744073709551616", "-1", "1.5"])
def test_the_seed_gets_the_same_verdict_on_the_command_line_and_in_the_file(text):
    import tomllib

    on_cli = cli_verdict("--seed", text)
    try:
        parse_config({"seed": tomllib.loads(f"v = {text}")["v"]}, "lab.toml")
        in_file = None
    except ConfigError as e:
        in_file = str(e)
    assert (on_cli is None) == (in_file is None), (on_cli, in_file)


def test_capture_options_in_bytes_exactly():
    assert capture_options({"file": "f", "size_mb": "4.35"}, file=True) == CaptureOptions(
        size=4_350_000
    )
    assert capture_options({"file": "f", "size_mb": 0.000001}, file=True).size == 1
