"""P99 attribution: the slow threshold, shares, lift, exemplars, sources and the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from otelfin.cli import main
from otelfin.metrics import DURATION_METRIC, red_metrics
from otelfin.tools.metrics import (
    ReportError,
    attribute,
    format_text,
    series_from_registry,
    series_from_text,
)

_TRACER = TracerProvider().get_tracer("test")


def _populate(registry: CollectorRegistry) -> None:
    """2% of traffic (channel=wallet) is slow; everything else is fast."""
    metrics = red_metrics(
        registry=registry, buckets=[0.05, 0.1, 0.15, 0.25, 0.5, 0.55, 0.6, 0.65, 0.7, 1.0]
    )
    rng = random.Random(5)
    for i in range(5000):
        channel = rng.choice(["web", "pos", "app"]) if i % 50 else "wallet"
        slow = channel == "wallet"
        duration = rng.uniform(0.5, 0.7) if slow else rng.uniform(0.01, 0.15)
        span = _TRACER.start_span("slow") if slow else None
        metrics.observe("svc", "pay", duration, labels={"channel": channel}, span=span)


def test_report_names_the_slow_channel() -> None:
    """The injected slow channel tops the ranking with tail share ~100% and a large lift."""
    registry = CollectorRegistry()
    _populate(registry)
    report = attribute(
        series_from_registry(registry, DURATION_METRIC), ["channel"], metric=DURATION_METRIC
    )
    top = report.rows[0]
    assert (top.label, top.value) == ("channel", "wallet")
    assert top.tail_share == pytest.approx(1.0)
    assert top.traffic_share == pytest.approx(0.02)
    assert top.lift == pytest.approx(50.0)
    assert top.requests == 100 and top.slow > 0
    assert top.exemplars and all(len(t) == 32 for t in top.exemplars)
    assert report.threshold_seconds >= report.p99_seconds


def test_coarse_buckets_step_the_threshold_down_and_say_so() -> None:
    """When nothing exceeds the bound over the P99, the next bound down is used, with a note."""
    registry = CollectorRegistry()
    metrics = red_metrics(registry=registry, buckets=[0.1, 0.5, 1.0])
    for i in range(1000):
        metrics.observe(
            "svc", "pay", 0.6 if i % 50 == 0 else 0.05, labels={"channel": str(i % 50 == 0)}
        )
    report = attribute(series_from_registry(registry, DURATION_METRIC), ["channel"],
                       metric=DURATION_METRIC)  # fmt: skip
    assert report.threshold_seconds == 0.5
    assert report.notes and "too coarse" in report.notes[0]
    assert report.rows[0].value == "True" and report.rows[0].tail_share == 1.0


def test_a_tail_of_one_request_steps_down_and_says_how_thin_it_was() -> None:
    """500 requests, a wechat cluster of 9 inside the P99's bucket and 1 above its upper bound:
    ranking that one request (the newcomer's "100% of slow requests from 15% of traffic" from
    a single request) is not an answer. The threshold steps down a bound, the tail holds the
    cluster, and the note says how few were above."""
    registry = CollectorRegistry()
    metrics = red_metrics(registry=registry, buckets=[0.1, 0.5, 1.0, 1.2, 1.5, 2.0])
    for i in range(500):
        if i < 9:
            duration, channel = 1.3, "wechat"
        elif i == 9:
            duration, channel = 1.6, "card"
        else:
            duration, channel = 0.05, "card"
        metrics.observe("svc", "pay", duration, labels={"channel": channel})
    report = attribute(series_from_registry(registry, DURATION_METRIC), ["channel"],
                       metric=DURATION_METRIC)  # fmt: skip
    assert 1.2 < report.p99_seconds <= 1.5
    assert report.threshold_seconds == 1.2 and report.slow == 10
    assert report.notes and report.notes[0].startswith(
        "only 1 request above the bound over the P99"
    )
    assert report.rows[0].value == "wechat" and report.rows[0].tail_share == pytest.approx(0.9)


def test_a_slow_cluster_in_narrow_buckets_is_not_called_coarse() -> None:
    """The default layout with a slow path at one latency (3.6% of requests near 1.3 s, the
    demo's shape): the threshold steps down under the cluster, and the note does not blame
    the buckets."""
    registry = CollectorRegistry()
    metrics = red_metrics(registry=registry)  # the default layout
    for i in range(500):
        slow = i % 28 == 0
        metrics.observe(
            "svc", "pay", 1.3 + i / 1e5 if slow else 0.05, labels={"channel": str(slow)}
        )
    report = attribute(series_from_registry(registry, DURATION_METRIC), ["channel"],
                       metric=DURATION_METRIC)  # fmt: skip
    assert report.threshold_seconds == 1.23 and report.slow == 18
    assert report.notes and "too coarse" not in report.notes[0]
    assert "slowest occupied bucket" in report.notes[0]


def test_threshold_is_the_bound_at_or_above_the_p99() -> None:
    """Slow = count - bucket{le=threshold}: exact per series, no interpolation."""
    registry = CollectorRegistry()
    _populate(registry)
    series = series_from_registry(registry, DURATION_METRIC)
    report = attribute(series, ["channel"], metric=DURATION_METRIC)
    bounds = sorted({b for s in series for b in s.buckets})
    assert report.threshold_seconds in bounds
    below = [b for b in bounds if b < report.threshold_seconds]
    assert not below or below[-1] < report.p99_seconds
    slow = sum(s.count - s.buckets[report.threshold_seconds][1] for s in series)
    assert report.slow == slow


def test_report_from_openmetrics_text_keeps_exemplars_and_classic_text_does_not() -> None:
    """OpenMetrics exposition carries exemplars into the rows; classic text gives none."""
    registry = CollectorRegistry()
    _populate(registry)
    om = series_from_text(generate_openmetrics(registry).decode(), DURATION_METRIC)
    classic = series_from_text(generate_latest(registry).decode(), DURATION_METRIC)
    rows_om = attribute(om, ["channel"], metric=DURATION_METRIC).rows
    rows_classic = attribute(classic, ["channel"], metric=DURATION_METRIC).rows
    assert rows_om[0].exemplars
    assert not rows_classic[0].exemplars
    assert [r.slow for r in rows_om] == [r.slow for r in rows_classic]


def test_report_errors_are_clear() -> None:
    """No such metric, a non-histogram, or no data raise ReportError with the reason."""
    registry = CollectorRegistry()
    red_metrics(registry=registry)
    with pytest.raises(ReportError, match="no histogram named"):
        series_from_registry(registry, "nope_seconds")
    with pytest.raises(ReportError, match="not a histogram"):
        series_from_registry(registry, "otelfin_request_errors")
    with pytest.raises(ReportError, match="has no requests"):
        attribute(series_from_registry(registry, DURATION_METRIC), ["channel"],
                  metric=DURATION_METRIC)  # fmt: skip


def test_text_table_is_compact(capsys: pytest.CaptureFixture[str]) -> None:
    """The text form leads with the P99 and threshold, then one row per value (the label that
    explains the tail first, a single-valued one last), then PromQL."""
    registry = CollectorRegistry()
    _populate(registry)
    report = attribute(
        series_from_registry(registry, DURATION_METRIC), ["operation", "channel"],
        metric=DURATION_METRIC,
    )  # fmt: skip
    text = format_text(report)
    lines = text.splitlines()
    assert lines[0].startswith(f"{DURATION_METRIC}: P99 ~")
    assert "slow = above le=" in lines[0]
    table = lines[lines.index("") + 1 :]
    assert table[0].split()[:4] == ["label", "value", "requests", "traffic"]
    assert table[1].split()[:2] == ["channel", "wallet"]
    assert [row.split()[:2] for row in table if row.startswith("operation")] == [
        ["operation", "pay"]
    ]
    assert lines[1].endswith("requests are slow (" + lines[1].split("(")[-1])
    # Counts read from a registry: the queries are offered, not claimed as run.
    assert "PromQL for the same report in Prometheus (not run here):" in lines
    assert "PromQL:" not in lines


def test_cli_report_from_file_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--file with --format json prints the documented keys; the slow channel ranks first."""
    registry = CollectorRegistry()
    _populate(registry)
    path = tmp_path / "metrics.txt"
    path.write_bytes(generate_openmetrics(registry))
    assert main(["p99", "report", "--file", str(path), "--by", "channel", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"quantile", "threshold_seconds", "p99_seconds", "rows", "promql"} <= set(data)
    row = data["rows"][0]
    assert set(row) == {"label", "value", "requests", "count", "slow", "traffic_share",
                        "tail_share", "lift", "exemplars"}  # fmt: skip
    assert data["counts"] == "requests" and data["total"] == data["requests"]
    assert row["value"] == "wallet" and row["exemplars"]
    assert any("histogram_quantile(0.99" in q for q in data["promql"])


def test_cli_report_input_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file, a wrong metric and an unreachable scrape URL all exit 2."""
    assert main(["p99", "report", "--file", str(tmp_path / "none"), "--by", "channel"]) == 2
    path = tmp_path / "m.txt"
    path.write_text("# TYPE up gauge\nup 1\n")
    assert main(["p99", "report", "--file", str(path), "--by", "channel"]) == 2
    assert "no histogram named" in capsys.readouterr().err
    code = main(["p99", "report", "--scrape", "http://127.0.0.1:9/metrics", "--by", "channel",
                 "--timeout", "1"])  # fmt: skip
    assert code == 2
    assert "cannot scrape" in capsys.readouterr().err


def test_cli_report_scrape_live_server(capsys: pytest.CaptureFixture[str]) -> None:
    """--scrape reads a live /metrics endpoint (OpenMetrics negotiated, exemplars included)."""
    from otelfin.metrics import start_metrics_server

    registry = CollectorRegistry()
    _populate(registry)
    server = start_metrics_server(0, "127.0.0.1", registry)
    try:
        assert main(["p99", "report", "--scrape", server.url, "--by", "channel",
                     "--format", "json"]) == 0  # fmt: skip
    finally:
        server.stop()
    data = json.loads(capsys.readouterr().out)
    assert data["rows"][0]["value"] == "wallet"
    assert data["rows"][0]["exemplars"]
    assert data["promql_ran"] is False


def test_cli_report_scrape_text_says_its_promql_was_not_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--scrape text output: no bare ``PromQL:`` block claiming [5m] windows it never queried."""
    from otelfin.metrics import start_metrics_server

    registry = CollectorRegistry()
    _populate(registry)
    server = start_metrics_server(0, "127.0.0.1", registry)
    try:
        assert main(["p99", "report", "--scrape", server.url, "--by", "channel"]) == 0
    finally:
        server.stop()
    lines = capsys.readouterr().out.splitlines()
    assert "PromQL:" not in lines
    assert "PromQL for the same report in Prometheus (not run here):" in lines


def _two_routes(path: Path) -> None:
    """POST /pay: 100 requests, 10 slow on wallet; GET /status: 300 fast; 50 function calls."""
    registry = CollectorRegistry()
    metrics = red_metrics(registry=registry, buckets=[0.05, 0.1, 0.25, 0.5, 1.0])
    for i in range(100):
        channel = "wallet" if i % 10 == 0 else "card"
        duration = 0.7 if channel == "wallet" else 0.02
        metrics.observe("svc", "POST /pay", duration, labels={"channel": channel})
    for _ in range(300):
        metrics.observe("svc", "GET /status", 0.01, labels={"channel": ""})
    for _ in range(50):
        metrics.observe("svc", "risk.score", 0.003, labels={"channel": "card"}, entry=False)
    path.write_bytes(generate_openmetrics(registry))


def test_cli_operation_scopes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--operation (repeatable) and --metric NAME{operation="X"} scope the counts; every number
    says what it counts; an operation that does not exist is exit 2 naming the ones there are."""
    path = tmp_path / "metrics.txt"
    _two_routes(path)
    base = ["p99", "report", "--file", str(path), "--format", "json"]
    assert main([*base, "--by", "channel"]) == 0
    everything = json.loads(capsys.readouterr().out)
    assert everything["requests"] == 400 and everything["counts"] == "requests"
    assert main([*base, "--by", "channel", "--operation", "POST /pay"]) == 0
    scoped = json.loads(capsys.readouterr().out)
    assert scoped["requests"] == 100 and scoped["operations"] == ["POST /pay"]
    assert scoped["rows"][0]["value"] == "wallet" and scoped["rows"][0]["count"] == 10
    assert all('operation="POST /pay"' in query for query in scoped["promql"])
    metric = 'otelfin_request_duration_seconds{operation="POST /pay"}'
    assert main([*base, "--by", "channel", "--metric", metric]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 100
    two = ["--operation", "POST /pay", "--operation", "GET /status"]
    assert main([*base, "--by", "channel", *two]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 400
    assert main(["p99", "report", "--file", str(path), "--by", "channel", *two[:2]]) == 0
    text = capsys.readouterr().out
    assert "10 of 100 requests are slow" in text and "observations" not in text
    functions = "otelfin_function_duration_seconds"
    assert (
        main(["p99", "report", "--file", str(path), "--by", "channel", "--metric", functions]) == 0
    )
    assert "of 50 calls are slow" in capsys.readouterr().out
    assert main([*base, "--by", "channel", "--operation", "POST /nope"]) == 2
    err = capsys.readouterr().err
    assert "'POST /nope'" in err and "'GET /status'" in err and "'POST /pay'" in err
    bad = 'otelfin_request_duration_seconds{channel="card"}'
    assert main([*base, "--by", "channel", "--metric", bad]) == 2
    assert "only operation=" in capsys.readouterr().err
