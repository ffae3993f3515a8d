"""The default bucket layout: 1 ms..30 s, dense around each SLO, every SLO a bound, and the
P99 that PromQL's histogram_quantile reads from it within 5% (2% near the SLO). The bounds
around client timeouts have tests of their own (tests/test_timeout_buckets.py)."""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from otelfin.metrics import check_slo_bound, default_buckets, nearest_bounds, red_metrics
from otelfin.metrics._buckets import MAX_OPERATION_BOUNDS, exact_quantile, histogram_quantile


def _ratios(bounds: tuple[float, ...]) -> list[float]:
    return [b / a for a, b in itertools.pairwise(bounds)]


def test_layout_spans_1ms_to_30s_about_20_percent_apart() -> None:
    """Bounds from 1 ms to 30 s, no two more than 21% apart; the SLO exactly a bound; above
    30 s only the 60 s timeout's bounds."""
    bounds = default_buckets(0.25)
    assert bounds[0] == 0.001 and 30.0 in bounds
    assert max(_ratios(tuple(b for b in bounds if b <= 30.0))) <= 1.21
    assert [b for b in bounds if b > 31.5] == [58.82, 60.0, 61.2, 63.0]
    assert 0.25 in bounds
    assert len(bounds) == 109  # the series cost the docs state
    assert len(default_buckets(0.25, timeouts=())) == 69


@pytest.mark.parametrize("slo", [0.003, 0.25, 0.3, 1.5, 7.0])
def test_dense_band_around_each_slo(slo: float) -> None:
    """Within 30% of an SLO the bounds are at most 4.1% apart, and the SLO is one of them."""
    bounds = default_buckets(slo)
    assert slo in bounds
    band = tuple(b for b in bounds if slo / 1.3 <= b <= slo * 1.3)
    assert max(_ratios(band)) <= 1.041
    assert band[0] <= slo / 1.25 and band[-1] >= slo * 1.25


def test_operation_slos_and_expected_p99_get_bounds_and_bands() -> None:
    """Each operation SLO is a bound with its own band; an expected P99 gets a band."""
    bounds = default_buckets(0.25, {"risk.score": 0.012, "ledger.post": 0.06}, p99=2.0)
    for slo in (0.25, 0.012, 0.06):
        assert slo in bounds
    near_p99 = [b for b in bounds if 2.0 / 1.3 <= b <= 2.0 * 1.3]
    assert max(_ratios(tuple(near_p99))) <= 1.041
    with pytest.raises(ValueError, match="histogram bounds"):
        default_buckets(0.25, {f"op{i}": 0.001 * 1.5**i for i in range(25)})
    assert len(default_buckets(0.25, {"a": 0.01, "b": 0.05, "c": 1.0})) <= MAX_OPERATION_BOUNDS


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, 1e9])
def test_bad_slo_is_a_value_error(bad: float) -> None:
    """An SLO that is no latency in seconds is refused."""
    with pytest.raises(ValueError, match="slo"):
        default_buckets(bad)


def test_red_metrics_default_to_the_layout() -> None:
    """The RED histograms use the layout when no buckets are given."""
    metrics = red_metrics(registry=CollectorRegistry(), slo=0.3)
    assert metrics.buckets == default_buckets(0.3)


def test_check_slo_bound_names_the_nearest_bounds() -> None:
    """An SLO between bounds is refused with both neighbours; a bound gives its le text."""
    bounds = default_buckets(0.25)
    assert check_slo_bound(0.25, bounds) == "0.25"
    assert nearest_bounds(0.3, bounds) == (0.2925, 0.3042)
    with pytest.raises(ValueError, match=r"nearest: 0.2925 and 0.3042"):
        check_slo_bound(0.3, bounds, "the default layout")
    assert check_slo_bound(1.0, bounds) == "1.0"  # a round timeout is a bound too
    with pytest.raises(ValueError, match=r"nearest: 31.5 and 58.82\)"):
        check_slo_bound(45.0, bounds)
    with pytest.raises(ValueError, match=r"nearest: 63\)"):
        check_slo_bound(90.0, bounds)


def _lognormal(median: float, sigma: float) -> Callable[[random.Random], float]:
    return lambda rng: rng.lognormvariate(math.log(median), sigma)


def _bimodal(rng: random.Random) -> float:
    if rng.random() < 0.85:
        return rng.lognormvariate(math.log(0.030), 0.3)
    return rng.lognormvariate(math.log(0.400), 0.25)


SHAPES = {
    "lognormal 80 ms": _lognormal(0.080, 0.5),
    "bimodal": _bimodal,
    "heavy-tailed": lambda rng: 0.020 * rng.paretovariate(1.5),
    "lognormal 1 ms": _lognormal(0.001, 0.5),
    "lognormal 5 ms": _lognormal(0.005, 0.5),
}


def _promql_p99(bounds: tuple[float, ...], xs: list[float], scale: float) -> float:
    counts = [float(bisect_right(xs, b / scale)) for b in bounds] + [float(len(xs))]
    return histogram_quantile(0.99, bounds, counts)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_p99_within_5_percent_from_2ms_to_20s_and_2_percent_near_the_slo(shape: str) -> None:
    """PromQL's estimate from the default layout, for the shape moved so its P99 sits
    anywhere from 2 ms to 20 s (within 5%) or within 25% of the SLO (within 2%)."""
    rng = random.Random(17)
    xs = sorted(SHAPES[shape](rng) for _ in range(20_000))
    p99 = exact_quantile(xs, 0.99)
    bounds = default_buckets(0.25)
    for k in range(30):
        target = 0.002 * 10_000 ** (k / 29)
        estimate = _promql_p99(bounds, xs, target / p99)
        assert abs(estimate - target) / target <= 0.05, (target, estimate)
    for k in range(12):
        target = 0.2 * 1.5625 ** (k / 11)
        estimate = _promql_p99(bounds, xs, target / p99)
        assert abs(estimate - target) / target <= 0.02, (target, estimate)
