"""Bucket design: PromQL's histogram_quantile, latency_buckets, suggest_buckets, the CLI."""

from __future__ import annotations

import json
import math
import random

import pytest

from otelfin.cli import main
from otelfin.metrics import (
    DEFAULT_PROMETHEUS_BUCKETS,
    histogram_quantile,
    latency_buckets,
    suggest_buckets,
)
from otelfin.metrics._buckets import _cumulative, exact_quantile


def test_histogram_quantile_interpolates_like_promql() -> None:
    """Linear interpolation inside the bucket holding the rank, lower bound 0 for the first."""
    bounds = [0.1, 0.2, 0.4]
    cumulative = [50, 90, 100, 100]
    assert histogram_quantile(0.5, bounds, cumulative) == pytest.approx(0.1)
    assert histogram_quantile(0.7, bounds, cumulative) == pytest.approx(0.15)
    assert histogram_quantile(0.25, bounds, cumulative) == pytest.approx(0.05)


def test_histogram_quantile_in_inf_bucket_returns_top_bound() -> None:
    """A rank in +Inf returns the highest finite bound, as Prometheus does."""
    assert histogram_quantile(0.99, [0.1, 0.2], [10, 20, 100]) == 0.2


def test_histogram_quantile_empty_is_nan() -> None:
    """No observations gives NaN, not zero."""
    assert math.isnan(histogram_quantile(0.99, [0.1], [0, 0]))


def test_histogram_quantile_rejects_wrong_lengths() -> None:
    """The +Inf count is required."""
    with pytest.raises(ValueError, match="plus the \\+Inf"):
        histogram_quantile(0.5, [0.1, 0.2], [1, 2])


@pytest.mark.parametrize("count", [8, 10, 12])
@pytest.mark.parametrize("slo", [0.003, 0.25, 2.0])
def test_latency_buckets_has_slo_bound_and_dense_band(count: int, slo: float) -> None:
    """count bounds, one exactly on the SLO, neighbours 1.1-1.25x apart around it."""
    bounds = latency_buckets(slo=slo, count=count)
    assert len(bounds) == count
    assert slo in bounds
    i = bounds.index(slo)
    for a, b in ((bounds[i - 1], bounds[i]), (bounds[i], bounds[i + 1])):
        assert 1.08 <= b / a <= 1.3
    assert list(bounds) == sorted(set(bounds))


def test_latency_buckets_dense_around_p99_with_separate_slo() -> None:
    """With p99 far from the SLO, the band centres on p99 and the SLO still gets a bound."""
    bounds = latency_buckets(slo=0.1, p99=2.0)
    assert 0.1 in bounds
    near = [b for b in bounds if 1.5 <= b <= 2.6]
    assert len(near) >= 4
    assert 8 <= len(bounds) <= 12


@pytest.mark.parametrize(
    "kwargs, message",
    [({}, "needs slo"), ({"slo": -1}, "positive"), ({"slo": 0.2, "count": 20}, "between 8")],
)
def test_latency_buckets_rejects_bad_input(kwargs: dict[str, float], message: str) -> None:
    """Clear ValueErrors for missing/negative SLO and out-of-range counts."""
    with pytest.raises(ValueError, match=message):
        latency_buckets(**kwargs)  # type: ignore[arg-type]


def _shape(name: str, rng: random.Random) -> float:
    if name == "lognormal":
        return rng.lognormvariate(math.log(0.08), 0.5)
    if name == "bimodal":
        if rng.random() < 0.85:
            return rng.lognormvariate(math.log(0.03), 0.3)
        return rng.lognormvariate(math.log(0.4), 0.25)
    if name == "heavy":
        return 0.02 * rng.paretovariate(1.5)
    if name == "fast":
        return rng.lognormvariate(math.log(0.003), 0.3)
    if rng.random() < 0.97:  # timeout spike
        return rng.lognormvariate(math.log(0.12), 0.4)
    return 2.0 + rng.uniform(0, 0.02)


@pytest.mark.parametrize("shape", ["lognormal", "bimodal", "heavy", "fast", "spike"])
def test_suggest_buckets_accurate_on_held_out_data(shape: str) -> None:
    """Designed on one sample, P99 error <= 2% on fresh data; default buckets do worse."""
    rng = random.Random(42)
    design = suggest_buckets([_shape(shape, rng) for _ in range(10_000)])
    assert 8 <= len(design.buckets) <= 12
    fresh = sorted(_shape(shape, rng) for _ in range(60_000))
    truth = exact_quantile(fresh, 0.99)
    ours = histogram_quantile(0.99, design.buckets, _cumulative(fresh, design.buckets))
    default = histogram_quantile(
        0.99, DEFAULT_PROMETHEUS_BUCKETS, _cumulative(fresh, DEFAULT_PROMETHEUS_BUCKETS)
    )
    assert abs(ours - truth) / truth <= 0.02
    assert abs(ours - truth) <= abs(default - truth) + 1e-12
    assert design.held_out_error <= 0.02
    assert design.window_accuracy.ratio <= 1.3


def test_suggest_buckets_puts_slo_on_a_bound() -> None:
    """--slo lands exactly on a bound even when it is not near the P99."""
    rng = random.Random(1)
    design = suggest_buckets([_shape("lognormal", rng) for _ in range(5000)], 10, slo=0.1)
    assert 0.1 in design.buckets
    assert len(design.buckets) <= 10


def test_suggest_buckets_handles_a_point_mass_timeout() -> None:
    """A timeout at exactly 2.0 s gets a narrow bucket, so the P99 is within 1%."""
    rng = random.Random(1)
    xs = [rng.lognormvariate(-2.5, 0.3) if rng.random() < 0.97 else 2.0 for _ in range(20000)]
    design = suggest_buckets(xs)
    assert 2.0 in design.buckets
    assert abs(design.estimated_p99_seconds - 2.0) / 2.0 < 0.01


@pytest.mark.parametrize(
    "samples, message",
    [([0.1] * 10, "at least 200"), ([0.1] * 300 + [math.nan], "finite"), ([-1.0] * 300, ">= 0")],
)
def test_suggest_buckets_rejects_bad_samples(samples: list[float], message: str) -> None:
    """Too few, NaN or negative samples are a clear ValueError."""
    with pytest.raises(ValueError, match=message):
        suggest_buckets(samples)


def test_cli_buckets_suggest_json(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """--format json prints {"buckets": [...], ...} with the expected error and exit 0."""
    rng = random.Random(7)
    path = tmp_path / "lat.txt"
    path.write_text("\n".join(str(_shape("lognormal", rng)) for _ in range(3000)) + "\n")
    assert main(["buckets", "suggest", "--samples", str(path), "--count", "10", "--slo", "0.25",
                 "--format", "json"]) == 0  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert len(data["buckets"]) == 10
    assert 0.25 in data["buckets"]
    assert data["expected_error"] < 0.05
    assert data["default_buckets"]["buckets"] == list(DEFAULT_PROMETHEUS_BUCKETS)


def test_cli_buckets_suggest_text_and_bad_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Text output names the buckets; a non-number line is exit 2 with file:line."""
    rng = random.Random(7)
    path = tmp_path / "lat.txt"
    path.write_text("\n".join(str(_shape("fast", rng)) for _ in range(1000)))
    assert main(["buckets", "suggest", "--samples", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("buckets = [")
    assert "default buckets" in out
    bad = tmp_path / "bad.txt"
    bad.write_text("0.1\nabc\n")
    assert main(["buckets", "suggest", "--samples", str(bad)]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err


def test_cli_buckets_suggest_missing_file(capsys) -> None:  # type: ignore[no-untyped-def]
    """A missing samples file is exit 2, not a traceback."""
    assert main(["buckets", "suggest", "--samples", "/nonexistent/x"]) == 2
    assert "cannot read" in capsys.readouterr().err
