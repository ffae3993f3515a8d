"""Bounds around client timeouts: the round values by default, the service's own when it
declares them, and a pile of requests cut off at a timeout read within 5% by PromQL."""

from __future__ import annotations

import itertools
import math
import random
import urllib.request
from bisect import bisect_right
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import otelfin
from otelfin import _settings
from otelfin.metrics import ROUND_TIMEOUTS, default_buckets, metrics_server, red_metrics
from otelfin.metrics._buckets import exact_quantile, histogram_quantile
from otelfin.testing import configured_for_test

#: Where the requests a timeout T cuts off land: exactly at T, T plus up to 1% (the
#: benchmark's spike, 2 s + 0..20 ms, scaled), T plus up to 20 ms of scheduling delay.
PILES = {
    "at T": lambda rng, t: t,
    "T + 0..1%": lambda rng, t: t * (1 + rng.uniform(0.0, 0.01)),
    "T + 0..20 ms": lambda rng, t: t + rng.uniform(0.0, 0.020),
}
#: Share of requests in the pile: just over 1% (the P99 at its bottom), 3%, 10% (its top).
MASSES = (0.012, 0.03, 0.1)


def _spike(timeout: float, pile: str, mass: float, n: int = 20_000) -> list[float]:
    """A lognormal body (median 6% of the timeout) and ``mass`` of requests cut off at it."""
    rng = random.Random(20)
    body = timeout * 0.06
    place = PILES[pile]
    return sorted(
        place(rng, timeout) if rng.random() < mass else rng.lognormvariate(math.log(body), 0.4)
        for _ in range(n)
    )


def _promql_error(bounds: tuple[float, ...], xs: list[float]) -> float:
    counts = [float(bisect_right(xs, b)) for b in bounds] + [float(len(xs))]
    truth = exact_quantile(xs, 0.99)
    return abs(histogram_quantile(0.99, bounds, counts) - truth) / truth


def _worst(bounds: tuple[float, ...], timeouts: tuple[float, ...]) -> float:
    return max(
        _promql_error(bounds, _spike(t, pile, mass))
        for t, pile, mass in itertools.product(timeouts, PILES, MASSES)
    )


def test_round_timeouts_have_bounds_at_just_below_and_just_above() -> None:
    """Each round timeout T is a bound, with one 2% below it and two within 5% above it;
    the bounds are finite and strictly increasing."""
    bounds = default_buckets(0.25)
    assert all(math.isfinite(b) for b in bounds)
    assert all(a < b for a, b in itertools.pairwise(bounds))
    assert ROUND_TIMEOUTS == (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0)
    for t in ROUND_TIMEOUTS:
        assert t in bounds
        assert [b for b in bounds if t / 1.021 <= b < t], t
        above = [b for b in bounds if t < b <= t * 1.051]
        assert len(above) >= 2 and above[0] <= t * 1.021, (t, above)


def test_spike_at_a_round_timeout_reads_within_5_percent() -> None:
    """A pile of requests at any round timeout (at it, 1% or 20 ms over it; 1.2-10% of the
    traffic) has its PromQL P99 within 5%; without the timeout bounds it is not."""
    assert _worst(default_buckets(0.25), ROUND_TIMEOUTS) <= 0.05
    assert _worst(default_buckets(0.25, timeouts=()), ROUND_TIMEOUTS) > 0.10


@pytest.mark.parametrize("timeout", [0.0037, 0.043, 0.33, 1.7, 7.3, 17.0, 45.0])
def test_declared_timeout_anywhere_reads_within_5_percent(timeout: float) -> None:
    """A declared timeout at an arbitrary value gets the same bounds, replacing the round
    values; its spike (at it or 1% over) reads within 5%."""
    bounds = default_buckets(0.25, timeouts=[timeout])
    assert timeout in bounds and 60.0 not in bounds  # no round timeout above 30 s
    worst = max(
        _promql_error(bounds, _spike(timeout, pile, mass))
        for pile, mass in itertools.product(("at T", "T + 0..1%"), MASSES)
    )
    assert worst <= 0.05
    both = default_buckets(0.25, timeouts=[*ROUND_TIMEOUTS, timeout])
    assert timeout in both and set(ROUND_TIMEOUTS) <= set(both)


def test_an_slo_and_a_timeout_close_together_are_both_bounds() -> None:
    """Bounds within 1% of each other merge, but never an SLO or a timeout itself."""
    bounds = default_buckets(0.25, timeouts=[0.251])
    assert 0.25 in bounds and 0.251 in bounds


@pytest.mark.parametrize("bad", [0.0, -2.0, math.nan, math.inf, 1e9])
def test_bad_timeout_is_a_value_error(bad: float) -> None:
    """A timeout that is no duration in seconds is refused."""
    with pytest.raises(ValueError, match="timeout"):
        default_buckets(0.25, timeouts=[bad])


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1.5, 2.5", (1.5, 2.5)),
        ("round,1.7", tuple(sorted({*ROUND_TIMEOUTS, 1.7}))),
        ("none", ()),
    ],
)
def test_timeouts_setting_parses(text: str, parsed: tuple[float, ...]) -> None:
    """OTELFIN_METRICS_TIMEOUTS: seconds, 'round' for the round values, 'none' for none."""
    setting = _settings.by_name("metrics_timeouts")
    assert setting.env == "OTELFIN_METRICS_TIMEOUTS"
    assert setting.parse(text, "OTELFIN_METRICS_TIMEOUTS") == parsed


@pytest.mark.parametrize("text", ["2s", "0", "-1", "inf"])
def test_timeouts_setting_refuses_what_is_no_timeout(text: str) -> None:
    """A timeout list that is not positive seconds is a ValueError naming the variable."""
    with pytest.raises(ValueError, match="OTELFIN_METRICS_TIMEOUTS"):
        _settings.by_name("metrics_timeouts").parse(text, "OTELFIN_METRICS_TIMEOUTS")


def test_red_metrics_take_timeouts() -> None:
    """red_metrics(timeouts=...) builds the layout with the service's own timeouts."""
    metrics = red_metrics(registry=CollectorRegistry(), slo=0.3, timeouts=[1.7])
    assert metrics.buckets == default_buckets(0.3, timeouts=[1.7])


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _le_values(text: str) -> set[str]:
    prefix = "otelfin_request_duration_seconds_bucket{"
    return {
        line.split('le="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_metrics_endpoint_exposes_the_timeout_bounds() -> None:
    """/metrics serves the request histogram with a bucket at each round timeout and its
    neighbours by default, and at a declared timeout (configure(metrics_timeouts=...))."""
    for options, expected, absent in (
        ({}, {"1.961", "2.0", "2.04", "2.1", "0.5", "0.51", "0.525", "60.0", "63.0"}, {"1.7"}),
        ({"metrics_timeouts": [1.7]}, {"1.667", "1.7", "1.734", "1.785"}, {"2.0", "60.0"}),
    ):
        registry = CollectorRegistry()
        with configured_for_test(
            metrics_registry=registry, metrics_port=0, metrics_addr="127.0.0.1", **options
        ):

            @otelfin.traced(name="authorise")
            def authorise() -> None:
                return None

            authorise()
            server = metrics_server()
            assert server is not None
            les = _le_values(_scrape(server.url))
        assert expected <= les, sorted(expected - les)
        assert not absent & les


def test_metrics_timeouts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTELFIN_METRICS_TIMEOUTS reaches the histogram configure() builds."""
    monkeypatch.setenv("OTELFIN_METRICS_TIMEOUTS", "round,1.7")
    registry = CollectorRegistry()
    with configured_for_test(metrics_registry=registry):

        @otelfin.traced(name="authorise")
        def authorise() -> None:
            return None

        authorise()
        bounds = {
            sample.labels["le"]
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "otelfin_request_duration_seconds_bucket"
        }
    assert {"1.7", "1.734", "2.0", "2.04"} <= bounds


def test_rules_build_checks_the_slo_against_the_service_timeouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round timeout is a bound of the default layout, so rules build takes it as an SLO;
    with OTELFIN_METRICS_TIMEOUTS=none it is no bound and rules build refuses (exit 2)."""
    from otelfin.cli import main

    out = tmp_path / "rules.yaml"
    assert main(["rules", "build", "--slo", "1", "-o", str(out)]) == 0
    assert 'le="1.0"' in out.read_text()
    monkeypatch.setenv("OTELFIN_METRICS_TIMEOUTS", "none")
    assert main(["rules", "build", "--slo", "1", "-o", str(out)]) == 2
    monkeypatch.setenv("OTELFIN_METRICS_TIMEOUTS", "1")
    assert main(["rules", "build", "--slo", "1", "-o", str(out)]) == 0


def test_demo_report_histograms_draw_the_occupied_buckets_wide_enough() -> None:
    """The report's per-channel charts show the buckets that hold requests, the SLO and the
    P99 (not all ~110 of the layout), so every bar is at least 2 px wide."""
    import re

    from otelfin.metrics import DURATION_METRIC
    from otelfin.tools.demo._html import _histograms
    from otelfin.tools.metrics import series_from_registry

    registry = CollectorRegistry()
    metrics = red_metrics(registry=registry)
    rng = random.Random(3)
    for channel in ("card", "wechat"):
        for _ in range(300):
            seconds = rng.lognormvariate(math.log(0.08 if channel == "card" else 0.4), 0.3)
            metrics.observe("svc", "pay", seconds, labels={"channel": channel})
    html = _histograms(series_from_registry(registry, DURATION_METRIC), 0.25, None)
    widths = [float(w) for w in re.findall(r'<rect class="bucket" [^>]*width="([0-9.]+)"', html)]
    per_channel = len(widths) // 2
    assert len(widths) % 2 == 0 and 10 < per_channel < len(metrics.buckets) // 2
    assert min(widths) >= 2.0
    assert html.count('<line class="slo"') == 2 and html.count('<line class="p99"') == 2
