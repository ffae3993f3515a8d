"""P99 accuracy of otelfin's bucket layouts vs prometheus_client's default buckets.

Part 1, the default layout (``default_buckets()``, what every otelfin histogram has out of the
box), on seven latency shapes: the five below plus lognormal medians of 1 ms and 5 ms. For
each, the relative error of PromQL's ``histogram_quantile(0.99)`` (``histogram_quantile`` here
is Prometheus' bucketQuantile, linear interpolation inside the bucket) against the exact P99 of
the same samples: at the shape's own scale; worst over the shape scaled so its P99 sweeps
2 ms..20 s (log-spaced); and worst with the P99 within 25% of the declared SLO (0.25 s).
Targets (issue 17): <= 5% and <= 2% near the SLO. The timeout spike's worst over arbitrary
positions is printed as information, not a target: moving the pile anywhere models a timeout the
layout knows nothing of, and 5% at every position would take ~190 bounds.

Part 1b, the timeout spike where timeouts sit: the pile at T (T + 0..1%, the shape scaled;
exactly T; T + 0..20 ms, the shape's own jitter) for every round timeout the layout has bounds
around (``ROUND_TIMEOUTS``), and for a timeout declared with ``default_buckets(timeouts=[T])`` at
positions 2 ms..20 s. Target <= 5% (a 20 ms spread at a declared timeout is information: under
~150 ms it is a block 10-40% wide, not a pile). Also the series each label set costs, counted in
a real prometheus_client exposition, next to the old default (10 bounds) and prometheus_client's
own.

Part 2, ``suggest_buckets``: buckets are designed on a training sample, then tested on *fresh*
data from the same distribution: the error on a large held-out sample, and on 3,000-sample
windows (95th percentile of the error against the true P99, next to the window's own sampling
noise). Targets (issue 4): held-out error <= 2%; window error p95 <= 1.3x the window noise p95.

Run: ``python benchmarks/bench_buckets.py [--quick]``.
"""

from __future__ import annotations

import math
import random
import sys
from bisect import bisect_right
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from otelfin.metrics._buckets import (
    DEFAULT_HIGH,
    DEFAULT_PROMETHEUS_BUCKETS,
    ROUND_TIMEOUTS,
    _cumulative,
    default_buckets,
    exact_quantile,
    histogram_quantile,
    latency_buckets,
)
from otelfin.metrics._design import suggest_buckets

Q = 0.99
WINDOW = 3000


def lognormal(rng: random.Random) -> float:
    return rng.lognormvariate(math.log(0.080), 0.5)


def bimodal(rng: random.Random) -> float:
    if rng.random() < 0.85:
        return rng.lognormvariate(math.log(0.030), 0.3)
    return rng.lognormvariate(math.log(0.400), 0.25)


def heavy_tailed(rng: random.Random) -> float:
    return 0.020 * rng.paretovariate(1.5)


def very_fast(rng: random.Random) -> float:
    return rng.lognormvariate(math.log(0.003), 0.3)


def timeout_spike(rng: random.Random) -> float:
    if rng.random() < 0.97:
        return rng.lognormvariate(math.log(0.120), 0.4)
    return 2.0 + rng.uniform(0.0, 0.020)  # client timeout at 2 s plus scheduling jitter


SHAPES: dict[str, Callable[[random.Random], float]] = {
    "lognormal": lognormal,
    "bimodal": bimodal,
    "heavy-tailed": heavy_tailed,
    "very fast (3 ms)": very_fast,
    "timeout spike": timeout_spike,
}


def fast_1ms(rng: random.Random) -> float:
    return rng.lognormvariate(math.log(0.001), 0.5)


def fast_5ms(rng: random.Random) -> float:
    return rng.lognormvariate(math.log(0.005), 0.5)


FAST_SHAPES: dict[str, Callable[[random.Random], float]] = {
    "lognormal 1 ms": fast_1ms,
    "lognormal 5 ms": fast_5ms,
}
SLO = 0.25
OLD_DEFAULT = latency_buckets(slo=SLO)  # otelfin's default before issue 17


def scaled_error(bounds: tuple[float, ...], xs: list[float], p99: float, target: float) -> float:
    """histogram_quantile's relative error for the samples scaled so their P99 is ``target``.

    Scaling the samples by s and keeping the bounds is the same as keeping the samples and
    dividing the bounds by s, which needs no copy of the samples.
    """
    s = target / p99
    counts = [float(bisect_right(xs, b / s)) for b in bounds] + [float(len(xs))]
    return rel(histogram_quantile(Q, bounds, counts), target)


def sweep(bounds: tuple[float, ...], xs: list[float], low: float, high: float, n: int) -> float:
    """The worst error over ``n`` log-spaced P99 positions from ``low`` to ``high``."""
    p99 = exact_quantile(xs, Q)
    return max(scaled_error(bounds, xs, p99, low * (high / low) ** (k / (n - 1))) for k in range(n))


def series_per_label_set(bounds: tuple[float, ...]) -> int:
    """Sample lines one label set of a histogram with ``bounds`` adds to the exposition."""
    registry = CollectorRegistry()
    histogram = Histogram("x_seconds", "x", ["op"], buckets=bounds, registry=registry)
    histogram.labels("a").observe(0.1)
    text = generate_latest(registry).decode()
    return sum(1 for line in text.splitlines() if line.startswith("x_seconds") and 'op="a"' in line)


def default_layout(quick: bool) -> tuple[int, int]:
    """Part 1: the default layout's accuracy table; returns (targets met, targets checked)."""
    n, scales = (30_000, 40) if quick else (200_000, 120)
    layout = default_buckets(SLO)
    print(
        f"Default layout: default_buckets(slo={SLO:g}) = {len(layout)} bounds, "
        f"{layout[0]:g}..{layout[-1]:g} s; {n} samples per shape; P99 swept over {scales} "
        "positions 2 ms..20 s and 24 within 25% of the SLO"
    )
    header = (
        f"{'shape':<18} {'true P99':>9} | {'own scale':>9} {'2ms-20s':>8} {'near SLO':>8} | "
        f"{'old dflt':>8} {'2ms-20s':>8} | {'prom dflt':>9} {'2ms-20s':>8} | ok"
    )
    print(header)
    print("-" * len(header))
    met = checked = 0
    for index, (name, draw) in enumerate({**SHAPES, **FAST_SHAPES}.items()):
        rng = random.Random(2000 + index)
        xs = sorted(draw(rng) for _ in range(n))
        truth = exact_quantile(xs, Q)
        own = scaled_error(layout, xs, truth, truth)
        anywhere = sweep(layout, xs, 0.002, 20.0, scales)
        near = sweep(layout, xs, SLO / 1.25, SLO * 1.25, 24)
        old_own, old_any = (
            scaled_error(OLD_DEFAULT, xs, truth, truth),
            sweep(OLD_DEFAULT, xs, 0.002, 20.0, scales),
        )
        prom = DEFAULT_PROMETHEUS_BUCKETS
        prom_own, prom_any = (
            scaled_error(prom, xs, truth, truth),
            sweep(prom, xs, 0.002, 20.0, scales),
        )
        spike = draw is timeout_spike
        # A timeout pile moved to an arbitrary position is information (see Part 1b), not a
        # target: the spike is held to 5% at timeouts, where it sits.
        ok = own <= 0.05 and near <= 0.02 and (spike or anywhere <= 0.05)
        met += ok
        checked += 1
        mark = "*" if spike else " "
        print(
            f"{name:<18} {truth:>8.4f}s | {own:>9.2%} {anywhere:>7.2%}{mark} {near:>8.2%} | "
            f"{old_own:>8.1%} {old_any:>8.0%} | {prom_own:>9.1%} {prom_any:>8.0%} | "
            f"{'yes' if ok else 'NO'}"
        )
    print(
        "* information, not a target: the timeout pile moved to arbitrary positions, i.e. a\n"
        "  timeout the layout knows nothing of. A pile of identical latencies just above a bound\n"
        "  is interpolated across the whole ~20%-wide bucket; 5% at every position would take\n"
        "  about 190 bounds. Part 1b holds the spike to 5% where timeouts sit: the round values\n"
        "  the layout has bounds around, and the service's own declared with timeouts=."
    )
    print()
    t_met, t_checked = timeout_spikes(layout, 100_000 if not quick else 30_000, quick)
    met += t_met
    checked += t_checked
    declared = default_buckets(SLO, timeouts=(1.5, 2.5))
    for label, bounds in (
        ("default layout (round timeouts)", layout),
        ("timeouts=() (issue 17's layout)", default_buckets(SLO, timeouts=())),
        ("timeouts=(1.5, 2.5) declared", declared),
        ("old default", OLD_DEFAULT),
        ("prometheus_client default", prom),
    ):
        print(
            f"series per label set, {label}: {series_per_label_set(bounds)} "
            f"({len(bounds)} bounds + +Inf, _sum, _count, _created)"
        )
    with_ops = default_buckets(SLO, {"risk.score": 0.01, "ledger.post": 0.05})
    print(f"with two operation SLOs (10 ms, 50 ms): {len(with_ops)} bounds")
    print()
    return met, checked


#: Where the requests a timeout T cuts off land (u uniform in 0..1): the benchmark's spike
#: (2 s + 0..20 ms) scaled to T, exactly at T, and T plus 0..20 ms of scheduling delay.
PILES: dict[str, Callable[[float, float], float]] = {
    "T + 0..1% (shape)": lambda t, u: t * (1 + 0.01 * u),
    "exactly T": lambda t, u: t,
    "T + 0..20 ms": lambda t, u: t + 0.020 * u,
}
#: Which piles are held to 5% with a declared timeout at an arbitrary value. A 20 ms spread
#: is 10-40% of a timeout under ~150 ms: a block with an edge inside a coarse bucket, no pile.
DECLARED_TARGETS = ("T + 0..1% (shape)", "exactly T")


def timeout_spikes(layout: tuple[float, ...], n: int, quick: bool) -> tuple[int, int]:
    """Part 1b: the spike shape with its timeout at T. Returns (targets met, checked)."""
    rng = random.Random(2100)
    body: list[float] = []
    pile: list[float] = []
    for _ in range(n):  # the timeout spike shape with a unit timeout: body median 0.06
        if rng.random() < 0.97:
            body.append(rng.lognormvariate(math.log(0.06), 0.4))
        else:
            pile.append(rng.random())
    body.sort()
    pile.sort()

    def error(bounds: tuple[float, ...], t: float, place: Callable[[float, float], float]) -> float:
        xs = sorted([b * t for b in body] + [place(t, u) for u in pile])
        return rel(hq(bounds, xs), exact_quantile(xs, Q))

    positions = 20 if quick else 40
    arbitrary = [0.002 * 10_000 ** (k / (positions - 1)) for k in range(positions)]
    undeclared = default_buckets(SLO, timeouts=())
    print(
        f"1b. Timeout spike with the timeout at T (97% lognormal, median 0.06 T; 3% cut off at T); "
        f"{n} samples. Round T: {', '.join(f'{t:g}' for t in ROUND_TIMEOUTS)} s. Declared: "
        f"default_buckets(timeouts=[T]) for {positions} T from 2 ms to 20 s."
    )
    header = (
        f"{'where the pile sits':<18} | {'round T':>8} {'worst at':>8} | {'declared':>8} "
        f"{'worst at':>8} | {'undeclared, arbitrary T':>23} | {'timeouts=(), round T':>20} | ok"
    )
    print(header)
    print("-" * len(header))
    met = checked = 0
    for name, place in PILES.items():
        at_round = {t: error(layout, t, place) for t in ROUND_TIMEOUTS}
        at_declared = {t: error(default_buckets(SLO, timeouts=[t]), t, place) for t in arbitrary}
        blind = max(error(layout, t, place) for t in arbitrary)
        old = {t: error(undeclared, t, place) for t in ROUND_TIMEOUTS}
        old_30 = max(e for t, e in old.items() if t <= DEFAULT_HIGH)
        round_t = max(at_round, key=lambda t: at_round[t])
        declared_t = max(at_declared, key=lambda t: at_declared[t])
        held = name in DECLARED_TARGETS
        ok = at_round[round_t] <= 0.05 and (not held or at_declared[declared_t] <= 0.05)
        met += ok
        checked += 1
        mark = " " if held else "*"
        print(
            f"{name:<18} | {at_round[round_t]:>8.2%} {round_t:>7.4g}s | "
            f"{at_declared[declared_t]:>7.2%}{mark} {declared_t:>7.4g}s | {blind:>22.2%}* | "
            f"{old_30:>20.2%} | {'yes' if ok else 'NO'}"
        )
    print(
        "targets: <= 5% at every round T; with the timeout declared, <= 5% anywhere for the\n"
        "shape's pile and one exactly at T. * information: an undeclared timeout at an\n"
        "arbitrary value (the layout's coarse buckets, as above); a 20 ms spread at a declared\n"
        "timeout under ~150 ms (a block 10-40% wide whose top edge falls in a coarse bucket).\n"
        "The last column is issue 17's layout (no timeout bounds) at the round values up to\n"
        "30 s; at 60 s, above its top bound, the pile is in +Inf and reads 50% low."
    )
    print()
    return met, checked


def hq(bounds: tuple[float, ...], sorted_values: list[float]) -> float:
    return histogram_quantile(Q, bounds, _cumulative(sorted_values, bounds))


def rel(a: float, b: float) -> float:
    return abs(a - b) / b


def main() -> int:
    quick = "--quick" in sys.argv
    met, checked = default_layout(quick)
    train_n, test_n, windows = (10_000, 100_000, 100) if quick else (20_000, 400_000, 300)
    print(f"train {train_n}, held-out {test_n}, {windows} windows of {WINDOW}; quantile {Q}")
    header = (
        f"{'shape':<18} {'true P99':>9} | {'otelfin err':>11} {'win p95':>8} {'noise p95':>9} "
        f"{'ratio':>6} | {'default err':>11} {'win p95':>8} | {'n':>2}  ok"
    )
    print(header)
    print("-" * len(header))
    failed = 0
    for index, (name, draw) in enumerate(SHAPES.items()):
        rng = random.Random(1000 + index)  # fixed seeds: the table is reproducible
        train = [draw(rng) for _ in range(train_n)]
        design = suggest_buckets(train, count=12)
        test = sorted(draw(rng) for _ in range(test_n))
        truth = exact_quantile(test, Q)
        ours = rel(hq(design.buckets, test), truth)
        default = rel(hq(DEFAULT_PROMETHEUS_BUCKETS, test), truth)
        errs, dflt, noise = [], [], []
        for _ in range(windows):
            window = sorted(draw(rng) for _ in range(WINDOW))
            errs.append(rel(hq(design.buckets, window), truth))
            dflt.append(rel(hq(DEFAULT_PROMETHEUS_BUCKETS, window), truth))
            noise.append(rel(exact_quantile(window, Q), truth))
        e95 = exact_quantile(sorted(errs), 0.95)
        d95 = exact_quantile(sorted(dflt), 0.95)
        n95 = exact_quantile(sorted(noise), 0.95)
        ratio = e95 / n95 if n95 else math.inf
        ok = ours <= 0.02 and ratio <= 1.3
        failed += not ok
        print(
            f"{name:<18} {truth:>8.4f}s | {ours:>10.2%} {e95:>8.2%} {n95:>9.2%} {ratio:>6.2f} "
            f"| {default:>10.2%} {d95:>8.2%} | {len(design.buckets):>2}  {'yes' if ok else 'NO'}"
        )
    print()
    print("latency_buckets(slo=0.25):", latency_buckets(slo=0.25))
    print("latency_buckets(slo=0.25, p99=0.4):", latency_buckets(slo=0.25, p99=0.4))
    print(f"suggest_buckets targets met: {len(SHAPES) - failed}/{len(SHAPES)}")
    print(f"default layout targets met: {met}/{checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
