"""``otelfin buckets suggest --prometheus``: per-operation designs from a real Prometheus."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram

from otelfin.cli import main
from otelfin.metrics import metrics_server
from otelfin.testing import configured_for_test
from tests.integration.test_prometheus import _api, _prometheus, _wait

_FINE = tuple(round(0.0005 * 1.2**i, 7) for i in range(52))


def test_buckets_suggest_from_prometheus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prometheus bucket increases give a 5 ms and a 200 ms operation their own dense bounds."""
    registry = CollectorRegistry()
    hist = Histogram("buckets_it_latency", "latency", ["operation"], unit="seconds",
                     buckets=_FINE, registry=registry)  # fmt: skip
    for op in ("risk.score", "gateway"):
        hist.labels(operation=op)  # zero series first, so increase() sees the observations
    rules = tmp_path / "rules.yml"
    rules.write_text("groups: []\n")
    with configured_for_test(metrics_registry=registry, metrics_port=0, metrics_addr="127.0.0.1"):
        server = metrics_server()
        assert server is not None
        with _prometheus(tmp_path, f"127.0.0.1:{server.port}", rules) as base:
            count = "sum(buckets_it_latency_seconds_count)"
            _wait(lambda: _api(base, "/api/v1/query", query=count)["result"], 30, "a first scrape")
            rng = random.Random(5)
            p99 = {}
            for op, median in (("risk.score", 0.005), ("gateway", 0.2)):
                values = sorted(rng.lognormvariate(math.log(median), 0.3) for _ in range(6000))
                for v in values:
                    hist.labels(operation=op).observe(v)
                p99[op] = values[int(0.99 * len(values)) - 1]
            grown = "sum(increase(buckets_it_latency_seconds_count[1m]))"
            _wait(
                lambda: (
                    float(_api(base, "/api/v1/query", query=grown)["result"][0]["value"][1])
                    >= 11000
                ),
                30,
                "the observations in Prometheus",
            )
            metric = "buckets_it_latency_seconds"
            code = main(["buckets", "suggest", "--prometheus", base, "--metric", metric,
                         "--window", "1m", "--format", "json"])  # fmt: skip
            out = capsys.readouterr().out
            assert code == 0, out
            doc = json.loads(out[out.index("{\n") :])
            designs = {op["value"]: op["design"] for op in doc["operations"]}
            for op, truth in p99.items():
                near = [b for b in designs[op]["buckets"] if truth / 1.3 <= b <= truth * 1.3]
                assert len(near) >= 4, (op, truth, designs[op]["buckets"])
            pairs = doc["setting"].split("=", 1)[1].strip('"').split(",")
            assert sorted(pairs) == ["gateway=0.5", "risk.score=0.012"]
            # An unknown metric over the same server is a clear exit 2.
            assert main(["buckets", "suggest", "--prometheus", base, "--metric", "nope"]) == 2
            assert "no nope observations" in capsys.readouterr().err


def test_default_layout_p99_in_real_prometheus(tmp_path: Path) -> None:
    """Real Prometheus' histogram_quantile over otelfin's default layout: a 1 ms-median
    function and a 300 ms-median request get their P99 within 5% of the exact P99, and the
    value equals otelfin's own PromQL arithmetic (what the benchmark and the tests use)."""
    from otelfin.metrics import current_metrics

    registry = CollectorRegistry()
    rules = tmp_path / "rules.yml"
    rules.write_text("groups: []\n")
    with configured_for_test(metrics_registry=registry, metrics_port=0, metrics_addr="127.0.0.1"):
        server, metrics = metrics_server(), current_metrics()
        assert server is not None and metrics is not None
        rng = random.Random(11)
        samples = {
            "risk.score": sorted(rng.lognormvariate(math.log(0.001), 0.5) for _ in range(5000)),
            "POST /v1/payments": sorted(
                rng.lognormvariate(math.log(0.3), 0.4) for _ in range(5000)
            ),
        }
        for operation, values in samples.items():
            for value in values:
                metrics.observe("svc", operation, value)
        with _prometheus(tmp_path, f"127.0.0.1:{server.port}", rules) as base:
            for operation, values in samples.items():
                _assert_p99_matches(base, operation, values, metrics.buckets)


def test_timeout_spike_p99_in_real_prometheus(tmp_path: Path) -> None:
    """Real Prometheus' histogram_quantile over the default layout: 3% of requests cut off at
    a round client timeout (2 s plus up to 20 ms; exactly 0.5 s) give a P99 within 5% of the
    exact one, equal to otelfin's own PromQL arithmetic; the bounds around the timeouts are
    series Prometheus scraped."""
    from otelfin.metrics import current_metrics

    registry = CollectorRegistry()
    rules = tmp_path / "rules.yml"
    rules.write_text("groups: []\n")
    with configured_for_test(metrics_registry=registry, metrics_port=0, metrics_addr="127.0.0.1"):
        server, metrics = metrics_server(), current_metrics()
        assert server is not None and metrics is not None
        rng = random.Random(20)

        def spike(timeout: float, jitter: float) -> list[float]:
            return sorted(
                timeout + rng.uniform(0.0, jitter)
                if rng.random() < 0.03
                else rng.lognormvariate(math.log(timeout * 0.06), 0.4)
                for _ in range(5000)
            )

        samples = {"POST /v1/payments": spike(2.0, 0.020), "acquirer.authorise": spike(0.5, 0.0)}
        for operation, values in samples.items():
            for value in values:
                metrics.observe("svc", operation, value)
        with _prometheus(tmp_path, f"127.0.0.1:{server.port}", rules) as base:
            for operation, values in samples.items():
                _assert_p99_matches(base, operation, values, metrics.buckets)
            series = _api(
                base, "/api/v1/series", **{"match[]": "otelfin_request_duration_seconds_bucket"}
            )
            les = {s["le"] for s in series}
            assert {"0.4902", "0.5", "0.51", "1.961", "2.0", "2.04", "2.1"} <= les


def _assert_p99_matches(base: str, operation: str, values: list[float], buckets: Any) -> None:
    """Prometheus' P99 of ``operation`` is within 5% of the exact one and equals otelfin's own
    PromQL arithmetic over ``buckets``."""
    from otelfin.metrics._buckets import _cumulative, exact_quantile, histogram_quantile

    selector = f'otelfin_request_duration_seconds_bucket{{operation="{operation}"}}'
    query = f"histogram_quantile(0.99, sum by (le) ({selector}))"
    _wait(
        lambda: _api(base, "/api/v1/query", query=query)["result"],
        30,
        f"{operation} in Prometheus",
    )
    result: list[Any] = _api(base, "/api/v1/query", query=query)["result"]
    promql = float(result[0]["value"][1])
    exact = exact_quantile(values, 0.99)
    ours = histogram_quantile(0.99, buckets, _cumulative(values, buckets))
    assert abs(promql - exact) / exact <= 0.05, (operation, promql, exact)
    assert promql == pytest.approx(ours, rel=1e-9)
