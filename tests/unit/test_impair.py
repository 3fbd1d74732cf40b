"""Impairment: netem's words, and the statistics of what the stage does, on a
fake clock (FakeEngine turns the loop; timers run at their own time).

Tolerances come from the sample size: a count of n Bernoulli(p) events has
standard deviation sqrt(n p (1 - p)), and every rate below is checked within
3 of those (a fixed seed makes each run the same, so a pass is not luck
that a rerun would undo; the 3 sigma says the seed is not a chosen one: any
seed passes with 99.7 % probability).  Each test states its own.
"""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xcon.bridges.p2p import P2PLink, VlanFlow
from xcon.control.client import late_line
from xcon.framing import FrameBuffer, iter_frames
from xcon.impair.sender import ImpairSender
from xcon.impair.spec import DISTRIBUTIONS, ImpairError, Impairment, from_fields, parse_netem
from xcon.impair.stage import ImpairStage, derive_seed
from xcon.stats import FlowStats
from xcon.testing.errors import one_line_error
from xcon.testing.fakeport import FakeEngine, FakePort
from xcon.testing.frames import check_numbered, encode_frames, numbered, split_frames, tagged
from xcon.testing.strategies import examples

SEED = 1234


# -- the words ---------------------------------------------------------------------------


def test_netem_words_and_units():
    imp = parse_netem(
        "delay 10ms 2ms 25% distribution normal loss random 1.5% 25% duplicate 1% "
        "corrupt 0.1% reorder 25% 50% gap 5 rate 100mbit limit 500"
    )
    assert (imp.delay, imp.jitter, imp.delay_corr) == (0.01, 0.002, 0.25)
    assert imp.distribution == "normal"
    assert (imp.loss, imp.loss_corr) == (0.015, 0.25)
    assert (imp.duplicate, imp.corrupt) == (0.01, 0.001)
    assert (imp.reorder, imp.reorder_corr, imp.gap) == (0.25, 0.5, 5)
    assert (imp.rate, imp.limit) == (100e6, 500)
    # words() reads back as the same impairment
    assert parse_netem(imp.words()) == imp


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("delay 1s", "delay", 1.0),
        ("delay 1.5sec", "delay", 1.5),
        ("delay 500us", "delay", 500e-6),
        ("delay 250", "delay", 250e-6),  # a bare time is microseconds, as in tc
        ("latency 3msec", "delay", 0.003),
        ("loss 5", "loss", 0.05),  # a bare percentage, as in tc
        ("loss 100%", "loss", 1.0),
        ("rate 10kbit", "rate", 10e3),
        ("rate 1gbit", "rate", 1e9),
        ("rate 2mibit", "rate", 2 * 1024**2),
        ("rate 1mbps", "rate", 8e6),  # bytes per second
        ("rate 12000", "rate", 12000),  # a bare rate is bits per second
    ],
)
def test_units(text, field, value):
    assert getattr(parse_netem(text), field) == pytest.approx(value)


def test_gemodel_order_and_defaults():
    assert parse_netem("loss gemodel 1% 10% 70% 0.1%").gemodel == (0.01, 0.1, 0.7, 0.001)
    # tc-netem(8): r defaults to 100%, 1-h to 100%, 1-k to 0%
    assert parse_netem("loss gemodel 2%").gemodel == (0.02, 1.0, 1.0, 0.0)
    assert parse_netem("loss gemodel 2% 20%").gemodel == (0.02, 0.2, 1.0, 0.0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("delay", "missing"),
        ("delay 10xs", "bad time"),
        ("loss 101%", "loss: 101% is outside 0..100%"),
        ("loss one", "bad percentage"),
        ("rate 10mbits", "bad rate"),
        ("rate 0bit", "rate: 0bit is outside 1bit..1tbit"),
        ("jitter 1ms", "unknown word"),
        ("delay 1ms 1ms distribution zipf", "unknown distribution"),
        ("distribution normal", "needs a delay with a jitter"),
        ("reorder 5%", "needs a delay"),
        ("slot 1ms", "not supported"),
        ("loss state 1%", "not supported"),
        ("limit -1", "limit: -1 is outside 1..4294967295 frames"),
        ("delay 1ms delay 2ms", "twice"),
    ],
)
def test_bad_words_one_clear_line(text, says):
    assert says in one_line_error(ImpairError, parse_netem, text)


def test_fields_and_containerlab_flags():
    imp = from_fields({"delay": 10, "jitter": 2, "loss": 1, "rate": 1000, "corruption": 0.5})
    assert (imp.delay, imp.jitter, imp.loss, imp.rate, imp.corrupt) == (
        0.01,
        0.002,
        0.01,
        1e6,  # containerlab's rate is kbit/s
        0.005,
    )
    assert from_fields({"delay": "10ms", "loss": "1%"}) == parse_netem("delay 10ms loss 1%")
    with pytest.raises(ImpairError, match="unknown field"):
        from_fields({"bogus": 1})
    with pytest.raises(ImpairError, match="loss: 150 is outside 0..100%"):
        from_fields({"loss": 150})


# -- every impairment reads back as itself ---------------------------------------------------

fraction = st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1))
seconds = st.one_of(st.just(0.0), st.floats(0, 60), st.floats(0, 1e-6), st.integers(0, 60))


@st.composite
def impairments(draw: st.DrawFn) -> Impairment:
    """Any impairment: values anywhere in their ranges (floats off the grid),
    the words that depend on others given with them."""
    kw = {name: draw(fraction) for name in ("loss", "duplicate", "corrupt", "reorder")}
    kw |= {f"{name}_corr": draw(fraction) for name in ("delay", *kw)}
    kw |= {"delay": draw(seconds), "jitter": draw(seconds)}
    if kw["reorder"] and kw["delay"] < 1e-9:  # less is 0 on the grid
        kw["delay"] = draw(st.floats(1e-9, 60))
    if kw["jitter"] >= 1e-9:
        kw["distribution"] = draw(st.sampled_from(DISTRIBUTIONS))
    if draw(st.booleans()):
        kw["gemodel"] = tuple(draw(fraction) for _ in range(4))
        kw["loss"] = 0.0
    kw["gap"] = draw(st.integers(0, 2**32 - 1))
    kw["limit"] = draw(st.integers(1, 2**32 - 1))
    kw["rate"] = draw(st.one_of(st.just(0.0), st.floats(1, 1e12), st.integers(1, 10**12)))
    return Impairment(**kw)


@given(impairments())
def test_every_impairment_reads_back_from_its_words(imp):
    """Whatever values an impairment holds, its words() parse to it again."""
    assert parse_netem(imp.words()) == imp
    assert Impairment(**{f: getattr(imp, f) for f in imp.__dataclass_fields__}) == imp


numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e400", "1.5", "²", "10ms", "1e400ms", "2%", "1kbit", "0", "-0"]),
)


@given(st.dictionaries(st.sampled_from(sorted(Impairment.__dataclass_fields__)), numbers))
def test_fields_accepted_read_back_and_the_rest_is_one_line(body):
    try:
        imp = from_fields(body)
    except ImpairError as e:
        assert "\n" not in str(e)
        return
    assert parse_netem(imp.words()) == imp


@pytest.mark.parametrize(
    "text, words",
    [
        ("delay 1.2345678919ms 0.1us 33.3333333333%", "delay 1.234568ms 0.1us 33.3333333%"),
        ("rate 123456789", "rate 123.456789mbit"),
        ("loss 1e-7%", "loss 0.0000001%"),
        ("loss 4e-8%", "none"),
        ("rate 1.5bit", "rate 2bit"),
        ("delay 60s limit 4294967295", "delay 60s limit 4294967295"),
    ],
)
def test_values_on_the_grid(text, words):
    """Times in nanoseconds, probabilities in billionths, rates in bit/s."""
    imp = parse_netem(text)
    assert imp.words() == words
    assert parse_netem(words) == imp


def test_words_without_their_meaning_are_dropped():
    # a correlation without its probability, a gap without reorder: what tc ignores
    assert parse_netem("gap 5") == Impairment()
    assert parse_netem("delay 1ms 0 25%") == parse_netem("delay 1ms")
    assert from_fields({"loss_corr": 50}) == Impairment()
    assert parse_netem("none") == Impairment() and Impairment().words() == "none"
    with pytest.raises(ImpairError, match="not both"):
        from_fields({"loss": 1, "gemodel": "1% 10%"})


def test_null():
    assert Impairment().null
    assert parse_netem("limit 10").null
    assert not parse_netem("loss 0.001%").null


# -- the stage alone -------------------------------------------------------------------------


def stage_of(words: str, seed: int = SEED) -> tuple[ImpairStage, FlowStats]:
    st = FlowStats("t")
    return ImpairStage(parse_netem(words), seed, st), st


def run_batches(stage: ImpairStage, n: int, size: int = 64, batch: int = 256, now: float = 0.0):
    """Feed ``n`` numbered frames in batches at ``now``; returns the frames out
    (drained at once: the stage is given all the time it needs)."""
    out: list[bytes] = []
    for first in range(0, n, batch):
        data = encode_frames(numbered(i, size) for i in range(first, min(n, first + batch)))
        mv = memoryview(bytearray(data))
        stage.admit(mv, 0, len(data), now)
        while (span := stage.due(float("inf"))) is not None:
            line, s, e = span
            out += split_frames(bytes(line.mv[s:e]))
            line.consume(e - s)
    return out


def within_binomial(k: int, n: int, p: float) -> bool:
    """k of n within 3 standard deviations of n p."""
    return abs(k - n * p) <= 3 * math.sqrt(n * p * (1 - p)) + 1e-9


@pytest.mark.parametrize("p", [0.01, 0.10, 0.50])
def test_loss_rate_is_binomial(p):
    n = 20000
    stage, st = stage_of(f"loss {p * 100}%")
    out = run_batches(stage, n)
    lost = st.drops["impair_loss"]
    assert lost + len(out) == n
    assert within_binomial(lost, n, p), (lost, n * p)
    assert st.frames == len(out)
    # in order, nothing else done to them
    seqs = [check_numbered(f) for f in out]
    assert seqs == sorted(seqs)


def test_loss_edges_none_and_all():
    stage, st = stage_of("loss 0%")
    assert len(run_batches(stage, 5000)) == 5000
    stage, st = stage_of("loss 100%")
    assert run_batches(stage, 5000) == []
    assert st.drops["impair_loss"] == 5000


def test_correlated_draws_are_netems_crandom():
    # netem's get_crandom: u' = (1 - rho) U + rho u, an AR(1) sequence whose
    # lag-1 autocorrelation is rho; over 20000 draws the sample's deviation is
    # about (1 - rho^2) / sqrt(n) = 0.003, so +-0.03 is 10 sigma.
    stage, _ = stage_of("loss 20% 75%")
    u = [stage._u("loss", 0.75) for _ in range(20000)]
    m = statistics.mean(u)
    num = sum((x - m) * (y - m) for x, y in zip(u, u[1:], strict=False))
    den = sum((x - m) ** 2 for x in u)
    assert num / den == pytest.approx(0.75, abs=0.03)
    # and uncorrelated draws are not
    u = [stage._u("x", 0.0) for _ in range(20000)]
    m = statistics.mean(u)
    num = sum((x - m) * (y - m) for x, y in zip(u, u[1:], strict=False))
    assert abs(num / sum((x - m) ** 2 for x in u)) < 0.03


def test_gilbert_elliott_mean_burst_length():
    # p = 1 %, r = 10 %, 1-h = 100 %, 1-k = 0: a burst is the stay in the bad
    # state, geometric with mean 1/r = 10 and deviation sqrt(1-r)/r = 9.49.
    # Bursts ~ N * r/(p+r) * p = 1818 for N = 200000: the mean of 1818 such
    # lengths has deviation 9.49/sqrt(1818) = 0.22, so 10 % (1.0) is > 4 sigma.
    n = 200000
    stage, st = stage_of("loss gemodel 1% 10%")
    seqs = {check_numbered(f) for f in run_batches(stage, n, batch=1024)}
    bursts, cur = [], 0
    for i in range(n):
        if i not in seqs:
            cur += 1
        elif cur:
            bursts.append(cur)
            cur = 0
    assert len(bursts) > 1500
    assert statistics.mean(bursts) == pytest.approx(10, rel=0.10)
    # and the loss rate is the stationary bad share p/(p+r) = 1/11: the count
    # is bursts x mean length, whose relative deviation is about
    # sqrt(1/1818 + (9.49/10)^2/1818) = 3.2 %, so 10 % is 3 sigma
    assert st.drops["impair_loss"] / n == pytest.approx(1 / 11, rel=0.10)


def test_duplicate_rate():
    n = 20000
    stage, st = stage_of("duplicate 10%")
    out = run_batches(stage, n)
    dups = len(out) - n
    assert st.events["duplicated"] == dups
    assert within_binomial(dups, n, 0.10)
    # a duplicate follows its original
    seqs = [check_numbered(f) for f in out]
    assert seqs == sorted(seqs)


def test_corrupt_rate_and_exactly_one_bit():
    n = 20000
    stage, st = stage_of("corrupt 5%")
    out = run_batches(stage, n, size=100)
    assert len(out) == n
    changed = 0
    for i, f in enumerate(out):
        orig = numbered(i, 100)
        diff = sum(bin(x ^ y).count("1") for x, y in zip(f, orig, strict=True))
        assert diff in (0, 1)
        changed += diff
    assert changed == st.events["corrupted"]
    assert within_binomial(changed, n, 0.05)


def test_same_seed_same_draws_other_direction_other_draws():
    a = run_batches(stage_of("loss 30% duplicate 5% corrupt 5%", seed=7)[0], 3000)
    b = run_batches(stage_of("loss 30% duplicate 5% corrupt 5%", seed=7)[0], 3000)
    c = run_batches(stage_of("loss 30% duplicate 5% corrupt 5%", seed=8)[0], 3000)
    assert a == b
    assert a != c
    assert derive_seed(1, "x--y", "a2b") != derive_seed(1, "x--y", "b2a")
    assert derive_seed(1, "x--y", "a2b") == derive_seed(1, "x--y", "a2b")


# -- a link on a fake clock -------------------------------------------------------------------


def make_link(engine: FakeEngine, **kw) -> tuple[P2PLink, FakePort, FakePort]:
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b, **kw)
    link.start()
    return link, a, b


def impaired_link(netem: str) -> tuple[FakeEngine, P2PLink, FakePort, FakePort]:
    """A started link on a fake engine whose a2b direction is impaired by ``netem``."""
    engine = FakeEngine()
    link, a, b = make_link(engine)
    link.set_impair("a2b", parse_netem(netem), SEED)
    return engine, link, a, b


def departures(port: FakePort) -> list[tuple[int, float]]:
    """(sequence number, send time) of every frame sent to ``port``."""
    out, prev = [], 0
    for t, end in port.send_times:
        for f in split_frames(bytes(port.sent[prev:end])):
            out.append((check_numbered(f), t))
        prev = end
    return out


def test_delay_with_normal_jitter_mean_and_deviation():
    # 10000 frames, one every 20 ms (so order never has to hold one back: a
    # draw would need to be 10 deviations off).  The sample mean's deviation
    # is 2 ms / sqrt(10000) = 0.02 ms, so 5 % (0.5 ms) is 25 sigma; the sample
    # deviation's own deviation is about 2 ms / sqrt(2 * 10000) = 1.4 %, so
    # 10 % is 7 sigma: these bounds fail only if the delay is wrong.
    engine, link, a, b = impaired_link("delay 10ms 2ms distribution normal")
    sent_at = {}
    for i in range(10000):
        engine.run_until(i * 0.020)
        sent_at[i] = engine.now
        a.feed_frames([numbered(i, 64)])
    engine.run_until(10000 * 0.020 + 1)
    got = departures(b)
    assert [s for s, _ in got] == list(range(10000))  # in order, all there
    delays = [t - sent_at[s] for s, t in got]
    assert statistics.mean(delays) == pytest.approx(0.010, rel=0.05)
    assert statistics.stdev(delays) == pytest.approx(0.002, rel=0.10)


@pytest.mark.parametrize("dist", ["uniform", "pareto", "paretonormal"])
def test_other_distributions_have_their_mean(dist):
    engine, link, a, b = impaired_link(f"delay 10ms 1ms distribution {dist}")
    for i in range(3000):
        engine.run_until(i * 0.020)
        a.feed_frames([numbered(i, 64)])
    engine.run_until(100)
    got = departures(b)
    delays = [t - s * 0.020 for s, t in got]
    assert len(got) == 3000
    assert statistics.mean(delays) == pytest.approx(0.010, rel=0.05)
    if dist == "uniform":
        assert 0.009 <= min(delays) and max(delays) < 0.011


def test_constant_delay_is_exact_and_order_kept_under_load():
    engine, link, a, b = impaired_link("delay 10ms limit 100000")
    for i in range(0, 2000, 50):
        engine.run_until(i * 1e-5)
        a.feed_frames([numbered(j, 1500) for j in range(i, i + 50)])
    engine.run_until(1)
    got = departures(b)
    assert [s for s, _ in got] == list(range(2000))
    for s, t in got:
        assert t - (s // 50 * 50) * 1e-5 == pytest.approx(0.010, abs=1e-9)


def test_how_late_frames_leave_the_delay_line_is_counted_and_shown():
    engine, link, a, b = impaired_link("delay 10ms")
    a.feed_frames([numbered(i, 64) for i in range(10)])
    engine.run_until(0.010)  # the timer runs on time
    engine.run_until(1.0)
    a.feed_frames([numbered(10 + i, 64) for i in range(5)])
    engine.advance(0.0103)  # the loop was busy: the timer runs 300 µs late
    assert [s for s, _ in departures(b)] == list(range(15))
    stats = link.flows[a].stats
    late = stats.late
    assert late is not None and late.frames == 15
    assert late.within(10e-6) == pytest.approx(10 / 15)
    assert late.within(200e-6) == pytest.approx(10 / 15)
    assert late.within(500e-6) == 1.0
    assert late.sum == pytest.approx(5 * 300e-6)
    doc = late.as_json()
    assert doc["at_most_us"]["10"] == 10 and doc["at_most_us"]["500"] == 15
    assert doc["at_most_us"]["inf"] == 15 and doc["mean_us"] == pytest.approx(100.0)
    assert late_line(doc) == "delay line: 15 frames released, mean 100 us late, 66.7% within 200 us"
    # the counts outlive the impairment (as the link's other counters) and reset with them
    link.set_impair("a2b", None, SEED)
    engine.run_until(2.0)
    assert link.flows[a].stats.late is late and late.frames == 15
    stats.reset()
    assert late.frames == 0 and late.as_json()["mean_us"] is None


def test_zero_delay_adds_nothing():
    engine, link, a, b = impaired_link("loss 0% duplicate 0%  delay 0ms corrupt 0%")
    assert link.flows[a].stage is None  # a null impairment is none
    link.set_impair("a2b", parse_netem("loss 0.0001%"), SEED)
    assert isinstance(link.flows[a].stage, ImpairSender)
    engine.run_until(5.0)
    a.feed_frames([numbered(i, 64) for i in range(10)])
    # sent within the same call, at the same instant
    assert [t for _, t in departures(b)] == [5.0] * 10


@pytest.mark.parametrize("rate, window", [(10e6, 5.0), (1e9, 0.1)])
def test_rate_over_a_window(rate, window):
    # Offered 1.5x the rate in 1500-byte frames, limit large enough to hold
    # the excess of the window: what leaves in [0, window] is the rate within
    # 2 % (at 1 Gbit/s a tenth of a second is 8 333 frames, twice the 10 Mbit/s
    # case: the window is shorter only to keep the simulation quick).
    engine = FakeEngine()
    link, a, b = make_link(engine)
    link.set_impair("a2b", Impairment(rate=rate, limit=10**7), SEED)
    size, batch = 1500, 50
    period = batch * size * 8 / (1.5 * rate)
    i = 0
    while i * period < window:
        engine.run_until(i * period)
        a.feed_frames([numbered(0, size)] * batch)
        i += 1
    engine.run_until(window)
    sent = b.send_times[-1][1] // (size + 4) * size * 8
    assert sent / window == pytest.approx(rate, rel=0.02)


def test_rate_queue_limit_tail_drops_and_counts():
    engine, link, a, b = impaired_link("rate 1mbit limit 20")
    flow = link.flows[a]
    a.feed_frames([numbered(i, 1000) for i in range(100)])
    assert flow.stage.stage.line.frames <= 20
    st = flow.stats
    # each frame waits its own transmission time (netem's too): 20 wait, the rest drop
    assert st.drops["impair_queue"] == 80
    engine.run_until(10)
    got = departures(b)
    assert [s for s, _ in got] == list(range(20))  # the head of the burst, in order
    assert st.frames == 20
    assert got[-1][1] == pytest.approx(20 * 1000 * 8 / 1e6)


def test_reorder_sends_a_share_at_once():
    # reorder 25%: with gap 1 (tc's default) each frame is sent at once with
    # probability 0.25; 3 sigma of 4000 frames.
    engine, link, a, b = impaired_link("delay 10ms reorder 25%")
    n = 4000
    for i in range(n):
        engine.run_until(i * 1e-4)
        a.feed_frames([numbered(i, 64)])
    engine.run_until(10)
    got = departures(b)
    quick = sum(1 for s, t in got if t - s * 1e-4 < 1e-9)
    assert quick == link.flows[a].stats.events["reordered"]
    assert within_binomial(quick, n, 0.25)
    assert [s for s, _ in got] != sorted(s for s, _ in got)


def test_reorder_gap():
    engine, link, a, b = impaired_link("delay 10ms reorder 100% gap 5")
    for i in range(20):
        a.feed_frames([numbered(i, 64)])
    engine.run_until(1)
    quick = [s for s, t in departures(b) if t == 0]
    assert quick == [4, 9, 14, 19]  # every 5th goes at once


def test_destination_blocked_line_holds_then_tail_drops():
    engine, link, a, b = impaired_link("delay 1ms limit 50")
    flow = link.flows[a]
    b.capacity = 0  # the destination takes nothing
    a.feed_frames([numbered(i, 100) for i in range(30)])
    engine.run_until(0.01)
    assert a.reading  # the source is never paused by the line
    assert b.writing
    a.feed_frames([numbered(i, 100) for i in range(30, 80)])
    assert flow.stats.drops["impair_queue"] == 30
    b.drain()  # writable again, no limit
    engine.run_until(1)
    got = [s for s, _ in departures(b)]
    assert got == list(range(50))
    assert not b.writing


def test_loss_only_keeps_backpressure_and_loses_nothing_else():
    # No delay, no rate: nothing is held back, so a blocked destination pauses
    # the source (as p2p does) and a big batch is never tail-dropped.
    engine, link, a, b = impaired_link("loss 0.0001%")
    b.capacity = 1000
    a.feed_frames([numbered(i, 60) for i in range(3000)])  # more than limit 1000
    assert not a.reading and b.writing
    b.drain()
    assert a.reading and not b.writing
    st = link.flows[a].stats
    assert st.drops["impair_queue"] == 0
    assert [check_numbered(f) for f in b.sent_frames()] == list(range(3000))
    # a delay holds frames: then the source is read on and the limit applies
    link.set_impair("a2b", parse_netem("delay 1ms"), SEED)
    b.capacity = 0
    a.feed_frames([numbered(i, 60) for i in range(3000, 4500)])
    assert a.reading
    assert st.drops["impair_queue"] == 500


def test_live_change_and_clear_keep_stats_tap_and_connection():
    engine = FakeEngine()
    link, a, b = make_link(engine)
    seen = []

    class Tap:
        def sent(self, mv, start, end):
            seen.extend(check_numbered(f) for f in split_frames(bytes(mv[start:end])))

        def dropped(self, reason, mv, start, end):
            seen.append(reason)

    base = link.flows[a]
    base.set_tap(Tap())
    a.feed_frames([numbered(0, 64)])
    link.set_impair("a2b", parse_netem("loss 100%"), SEED)
    a.feed_frames([numbered(1, 64)])
    link.set_impair("a2b", parse_netem("delay 5ms"), SEED)
    assert link.impairment("a2b") == parse_netem("delay 5ms")
    a.feed_frames([numbered(2, 64)])
    link.set_impair("a2b", None, SEED)  # frame 2, still waiting, is dropped
    assert link.impairment("a2b") is None
    assert link.flows[a].stage is None  # nothing outstanding: no stage at once
    a.feed_frames([numbered(3, 64)])
    engine.run_until(1)
    a.feed_frames([numbered(4, 64)])
    assert [check_numbered(f) for f in b.sent_frames()] == [0, 3, 4]
    st = base.stats
    assert (st.frames, st.drops["impair_loss"], st.drops["impair_cleared"]) == (3, 1, 1)
    assert st.bytes == 3 * 64
    # what the impaired flow did, as the tap saw it (the plain flows' own tap
    # calls are theirs: only the order of these is asserted)
    assert [x for x in seen if x not in (0, 3, 4)] == ["impair_loss"]
    assert a.stats.connects == b.stats.connects == 1


def test_swap_waits_for_a_blocked_batch():
    engine = FakeEngine()
    link, a, b = make_link(engine)
    b.capacity = 100
    a.feed_frames([numbered(i, 100) for i in range(5)])  # blocked mid-batch
    link.set_impair("a2b", parse_netem("loss 100%"), SEED)
    assert link.flows[a].stage is None
    b.drain()
    engine.run_until(0.01)
    assert isinstance(link.flows[a].stage, ImpairSender)
    a.feed_frames([numbered(9, 100)])
    assert [check_numbered(f) for f in b.sent_frames()] == list(range(5))


def test_vlan_link_impairs_after_rewrite():
    engine = FakeEngine()
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b, vlan=100, access=b)
    link.start()
    assert isinstance(link.flows[a], VlanFlow)
    link.set_impair("a2b", parse_netem("delay 1ms"), SEED)
    frames = [tagged(numbered(i, 80), 100) for i in range(5)] + [tagged(numbered(9, 80), 7)]
    a.feed_frames(frames)
    engine.run_until(0.01)
    assert b.sent_frames() == [numbered(i, 80) for i in range(5)]
    st = link.flows[a].stats
    assert st.drops["other_vlan"] == 1
    assert b.send_times[0][0] == pytest.approx(0.001)


def test_destination_down_drops_the_line():
    engine, link, a, b = impaired_link("delay 10ms")
    a.feed_frames([numbered(i, 100) for i in range(7)])
    b.capacity = 0
    engine.run_until(0.02)  # due, but the destination takes nothing
    assert b.writing
    b.set_down()
    assert not b.writing  # no writability wanted for a line that is gone
    st = link.flows[a].stats
    assert (st.frames, st.drops["port_down"]) == (0, 7)
    engine.run_until(1)
    assert b.sent == b""


def test_stage_takes_a_framebuffer_span():
    # The flow gives the stage its source FrameBuffer's span (an mmap view).
    buf = FrameBuffer()
    buf.feed(encode_frames([numbered(0, 64)]))
    stage, st = stage_of("delay 0ms loss 0.5%")
    stage.admit(buf.mv, buf.start, buf.ready, 0.0)
    assert st.frames + st.dropped == 1


@pytest.mark.parametrize("k", [0, 1, 3, 10, 100])
def test_skip_is_the_same_on_both_backends(k):
    from xcon.native import load_backend

    data = bytearray(encode_frames(numbered(i, 60 + i) for i in range(10)))
    data += b"\x00\x00\x01"  # a partial header after the frames
    py = load_backend("python").skip(data, 0, len(data), k)
    assert py[1] == min(k, 10)
    try:
        c = load_backend("native").skip(data, 0, len(data), k)
    except ImportError:
        pytest.skip("the native module is not built")
    assert c == py
    zero = bytearray(encode_frames([numbered(0, 64)])) + b"\x00\x00\x00\x00"
    assert load_backend("python").skip(zero, 0, len(zero), 5)[1:] == (1, 1)  # ZERO
    with pytest.raises(ValueError):
        load_backend("python").skip(data, 0, len(data), -1)


def test_loss_alone_sends_from_the_receive_buffer_and_copies_only_the_tail():
    engine, link, a, b = impaired_link("loss 0.0001%")
    flow = link.flows[a]
    a.feed_frames([numbered(i, 100) for i in range(10)])
    assert flow.stage.stage.line.tail == 0  # nothing was copied
    b.capacity = 250  # takes two frames and a half
    a.feed_frames([numbered(i, 100) for i in range(10, 20)])
    line = flow.stage.stage.line
    assert line.tail - line.head == 10 * 104 - 250  # only the untaken bytes
    b.drain()
    assert [check_numbered(f) for f in b.sent_frames()] == list(range(20))
    assert flow.stats.frames == 20


def test_a_pulled_cable_loses_what_waits_in_the_delay_line():
    engine, link, a, b = impaired_link("delay 50ms")
    a.feed_frames([numbered(i, 100) for i in range(10)])
    engine.run_until(0.010)
    assert departures(b) == []  # all ten wait in the line
    link.set_admin(False)
    engine.run_until(0.200)
    st = link.a_to_b.stats
    assert departures(b) == [] and st.drops["admin_down"] == 10 and st.frames == 0
    link.set_admin(True)  # plugged back: frames flow, delayed again
    a.feed_frames([numbered(i, 100) for i in range(10, 15)])
    engine.run_until(0.300)
    assert [s for s, _ in departures(b)] == list(range(10, 15))
    assert st.frames == 5


def test_a_pull_finishes_the_frame_being_sent():
    engine, link, a, b = impaired_link("delay 10ms")
    b.capacity = 150  # the destination takes 150 bytes, then blocks
    a.feed_frames([numbered(i, 100) for i in range(5)])
    engine.run_until(0.020)
    assert len(b.sent) == 150  # a frame and a half are out
    link.set_admin(False)
    b.drain()  # writable again, no limit
    engine.run_until(0.100)
    frames = split_frames(bytes(b.sent))  # whole frames only: none cut
    assert len(frames) >= 2 and all(len(f) == 100 for f in frames)
    st = link.a_to_b.stats
    assert st.frames + st.drops["admin_down"] == 5


# -- changing and clearing: what the old settings queued ---------------------------------


def test_stage_discard_drops_every_waiting_frame_and_departures_start_afresh():
    stage, _st = stage_of("rate 8bit")  # 64 s per 64-byte frame
    data = encode_frames(numbered(i, 64) for i in range(5))
    stage.admit(memoryview(bytearray(data)), 0, len(data), 0.0)
    assert stage.line.entries[-1][0] == pytest.approx(5 * 64.0)
    assert stage.discard() == (5, 5 * 64)
    assert stage.empty and stage.next_departure() is None and stage.line.frames == 0
    stage.set(parse_netem("rate 1gbit"))
    one = encode_frames([numbered(9, 64)])
    stage.admit(memoryview(bytearray(one)), 0, len(one), 10.0)
    # the new frame waits its own 512 ns, not behind 320 s of old departures
    assert 10.0 < stage.next_departure() < 10.001
    line, s, e = stage.due(10.001)
    assert split_frames(bytes(line.mv[s:e])) == [numbered(9, 64)]


def test_stage_discard_keeps_the_span_being_sent():
    stage, _st = stage_of("delay 1ms")
    for t in range(3):  # three runs (entries), two frames each
        data = encode_frames(numbered(2 * t + i, 100) for i in range(2))
        stage.admit(memoryview(bytearray(data)), 0, len(data), t * 0.001)
    line, s, e = stage.due(0.0015)  # the first run is due
    assert e - s == 2 * 104
    line.consume(150)  # the destination took a frame and a half
    more = encode_frames([numbered(6, 100)])  # same departure as the last run: merged
    stage.admit(memoryview(bytearray(more)), 0, len(more), 0.002)
    assert stage.discard((line, e)) == (5, 5 * 100)
    line2, s2, e2 = stage.due(1.0)
    assert (line2, s2, e2) == (line, 150, 2 * 104)  # the rest of the cut frame, no more
    line.consume(e2 - s2)
    assert stage.empty and line.frames == 0


def test_stage_discard_cuts_inside_a_merged_run():
    stage, _st = stage_of("delay 1ms")
    data = encode_frames(numbered(i, 100) for i in range(4))
    stage.admit(memoryview(bytearray(data)), 0, len(data), 0.0)  # one run of four
    line = stage.line
    line.consume(104 + 50)
    assert stage.discard((line, 2 * 104)) == (2, 200)
    assert list(line.entries) == [(0.001, 2 * 104, 2)] and line.tail == 2 * 104


def test_clearing_rate_8bit_lets_new_frames_through_at_once():
    engine, link, a, b = impaired_link("rate 8bit")
    a.feed_frames([numbered(i, 100) for i in range(20)])  # 100 s each
    engine.run_until(150)
    assert [s for s, _ in departures(b)] == [0]
    link.set_impair("a2b", None, SEED)
    st = link.flows[a].stats
    assert link.flows[a].stage is None
    assert (st.frames, st.drops["impair_cleared"]) == (1, 19)
    a.feed_frames([numbered(100, 100)])
    assert [s for s, _ in departures(b)] == [0, 100]
    assert b.send_times[-1][0] == 150
    engine.run_until(5000)  # and the old frames never come
    assert [s for s, _ in departures(b)] == [0, 100]


def test_replacing_the_timing_drops_the_old_queue_a_loss_change_keeps_it():
    engine, link, a, b = impaired_link("delay 10ms loss 0.0001%")
    a.feed_frames([numbered(i, 100) for i in range(5)])
    link.set_impair("a2b", parse_netem("delay 10ms loss 0.0002%"), SEED)  # same timing
    engine.run_until(0.005)
    a.feed_frames([numbered(i, 100) for i in range(5, 8)])
    engine.run_until(0.1)
    assert departures(b) == [(i, pytest.approx(0.010)) for i in range(5)] + [
        (i, pytest.approx(0.015)) for i in range(5, 8)
    ]
    link.set_impair("a2b", parse_netem("rate 8bit"), SEED)
    a.feed_frames([numbered(i, 100) for i in range(8, 12)])
    engine.run_until(0.2)
    link.set_impair("a2b", parse_netem("delay 1ms"), SEED)  # another timing
    a.feed_frames([numbered(12, 100)])
    engine.run_until(0.3)
    assert departures(b)[8:] == [(12, pytest.approx(0.201))]
    st = link.flows[a].stats
    assert st.drops["impair_cleared"] == 4 and st.frames == 9


def test_clearing_finishes_the_frame_being_sent_then_drops_the_rest():
    engine, link, a, b = impaired_link("delay 10ms")
    a.feed_frames([numbered(i, 100) for i in range(5)])
    b.capacity = 150  # a frame and a half, then blocked
    engine.run_until(0.005)
    a.feed_frames([numbered(i, 100) for i in range(5, 8)])  # due later
    engine.run_until(0.011)
    assert len(b.sent) == 150
    link.set_impair("a2b", None, SEED)
    assert isinstance(link.flows[a].stage, ImpairSender)  # a send is outstanding
    b.drain()
    engine.run_until(0.012)
    assert link.flows[a].stage is None
    a.feed_frames([numbered(9, 100)])
    got = [check_numbered(f) for f in split_frames(bytes(b.sent))]
    assert got == [0, 1, 2, 3, 4, 9]  # whole frames: the due span went, 5..7 did not
    st = link.flows[a].stats
    assert (st.frames, st.drops["impair_cleared"]) == (6, 3)


def test_reordered_frames_never_cut_into_a_frame_being_sent():
    # A delayed span the destination took in part is finished before any
    # frame sent "at once" by reordering: a frame is never cut (qemu would
    # read garbage lengths from then on).
    engine, link, a, b = impaired_link("delay 10ms reorder 50%")
    a.feed_frames([numbered(i, 500) for i in range(20)])
    b.capacity = 700  # the delayed frames' span is cut inside its second frame
    engine.run_until(0.02)
    assert len(b.sent) % 504 != 0, "the span must be cut mid-frame for this test"
    a.feed_frames([numbered(i, 500) for i in range(20, 60)])  # some go at once
    engine.run_until(0.021)
    b.drain(None)
    engine.run_until(0.1)
    frames = split_frames(bytes(b.sent))  # raises on a cut frame
    seqs = [check_numbered(f) for f in frames]  # raises on a corrupt one
    assert sorted(seqs) == list(range(60))


@settings(max_examples=examples(60), deadline=None)
@given(
    words=st.sampled_from(
        [
            "delay 10ms reorder 50%",
            "delay 5ms 4ms",
            "rate 10mbit",
            "delay 1ms reorder 25% gap 3 duplicate 20%",
            "loss 30% duplicate 30%",
            "delay 2ms rate 100mbit reorder 10%",
        ]
    ),
    steps=st.lists(
        st.tuples(
            st.integers(0, 12),  # frames fed
            st.integers(60, 1600),  # their size
            st.one_of(st.none(), st.integers(0, 3000)),  # what the destination takes next
            st.floats(0, 0.02),  # time that passes
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_impaired_stream_is_always_whole_frames(words, steps):
    # Whatever the impairment, the pace of the destination and of the source,
    # what leaves is whole, intact frames (a partial send is always finished
    # before anything else goes out).
    engine, link, a, b = impaired_link(words)
    seq, now = 0, 0.0
    for nframes, size, capacity, dt in steps:
        if nframes and a.reading:
            a.feed_frames([numbered(seq + i, size) for i in range(nframes)])
            seq += nframes
        b.drain(capacity)
        now += dt
        engine.run_until(now)
    b.drain(None)
    engine.run_until(now + 30)
    got = [check_numbered(f) for f in split_frames(bytes(b.sent))]
    assert set(got) <= set(range(seq))


# -- hubs: each end's two directions -----------------------------------------------------


def make_hub(engine: FakeEngine, n: int = 3):
    from xcon.bridges.hub import Hub

    ports = [FakePort(engine, f"h{i}") for i in range(n)]
    hub = Hub(ports)
    hub.start()
    return hub, ports


def test_hub_a2b_impairs_what_an_end_sends_into_the_hub_for_every_other_end():
    engine = FakeEngine()
    hub, (h0, h1, h2) = make_hub(engine)
    hub.set_impair(h0, "a2b", parse_netem("delay 10ms"), SEED)
    assert hub.impairment(h0, "a2b") == parse_netem("delay 10ms")
    assert hub.impairment(h0, "b2a") is None
    h0.feed_frames([numbered(i, 100) for i in range(3)])
    h1.feed_frames([numbered(7, 100)])  # h1's frames are not delayed
    assert departures(h0) == [(7, 0.0)] and departures(h2) == [(7, 0.0)]
    engine.run_until(0.05)
    assert departures(h1) == [(i, pytest.approx(0.010)) for i in range(3)]
    assert departures(h2)[1:] == [(i, pytest.approx(0.010)) for i in range(3)]
    assert hub.rx[h0].frames == 3 and hub.tx[h1].frames == 3 and hub.tx[h2].frames == 4


def test_hub_b2a_impairs_only_what_the_hub_sends_to_that_end():
    engine = FakeEngine()
    hub, (h0, h1, h2) = make_hub(engine)
    hub.set_impair(h2, "b2a", parse_netem("loss 100%"), SEED)
    h0.feed_frames([numbered(i, 100) for i in range(4)])
    assert [check_numbered(f) for f in h1.sent_frames()] == [0, 1, 2, 3]
    assert h2.sent_frames() == []
    assert hub.tx[h2].drops["impair_loss"] == 4 and hub.tx[h1].drops == {}
    hub.set_impair(h2, "both", None, SEED)
    h0.feed_frames([numbered(9, 100)])
    assert [check_numbered(f) for f in h2.sent_frames()] == [9]


def test_hub_impairment_waits_for_a_blocked_queue_and_keeps_frames_whole():
    engine = FakeEngine()
    hub, (h0, h1, _h2) = make_hub(engine)
    h1.capacity = 150  # one frame and a half, then blocked
    h0.feed_frames([numbered(i, 100) for i in range(3)])
    hub.set_impair(h1, "b2a", parse_netem("delay 5ms"), SEED)
    assert hub.outof[h1].stage is None and hub.impairment(h1, "b2a") is not None
    h1.drain()  # the queue drains: the stage starts
    assert isinstance(hub.outof[h1].stage, ImpairSender)
    h0.feed_frames([numbered(3, 100)])
    engine.run_until(0.01)
    assert [check_numbered(f) for f in h1.sent_frames()] == [0, 1, 2, 3]
    assert h1.send_times[-1] == (pytest.approx(0.005), 4 * 104)  # frame 3, delayed


# -- the Stage protocol: a stage of another kind plugs in the same way -------------------


class EveryOther:
    """A stage that forwards every second frame (and counts the rest)."""

    def __init__(self):
        self.flow = None
        self.n = 0

    def attach(self, flow):
        self.flow = flow

    def admit(self, mv, start, end, nframes, direct):
        flow = self.flow
        for off, length in iter_frames(mv, start, end):
            self.n += 1
            span = (off - 4, off + length)
            if self.n % 2:
                flow.show_sent(mv, *span)
                assert flow.dst.send(mv[span[0] : span[1]]) == span[1] - span[0]
                flow.stats.frames += 1
            else:
                flow.stats.drop("every_other", 1)
                flow.show_dropped("every_other", mv, *span)

    def push(self):
        pass

    def lose(self, reason):
        pass

    def holding(self):
        return False  # it sends what it keeps at once

    def retire(self):
        self.flow.stage_gone(self)

    def close(self):
        pass


def test_any_stage_sits_between_rewrite_and_tap_and_leaves_when_retired():
    engine = FakeEngine()
    a, b = FakePort(engine, "a"), FakePort(engine, "b")
    link = P2PLink(a, b, vlan=5, access=b)
    link.start()
    seen = []

    class Tap:
        def sent(self, mv, start, end):
            seen.extend(("sent", len(f)) for f in split_frames(bytes(mv[start:end])))

        def dropped(self, reason, mv, start, end):
            seen.append((reason, end - start))

    flow = link.flows[a]
    flow.set_tap(Tap())
    flow.set_stage(EveryOther())
    a.feed_frames([tagged(numbered(i, 80), 5) for i in range(4)] + [numbered(9, 80)])
    # the rewrite first (untagged: dropped there), then the stage, then the tap
    assert [check_numbered(f) for f in b.sent_frames()] == [0, 2]
    assert seen == [
        ("untagged", 84),
        ("sent", 80),
        ("every_other", 84),
        ("sent", 80),
        ("every_other", 84),
    ]
    assert dict(flow.stats.drops) == {"untagged": 1, "every_other": 2}
    flow.set_stage(None)
    assert flow.stage is None
    a.feed_frames([tagged(numbered(i, 80), 5) for i in range(10, 12)])
    assert [check_numbered(f) for f in b.sent_frames()] == [0, 2, 10, 11]
