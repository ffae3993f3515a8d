"""RED and dependency metrics count every request whatever the sampler; buckets per operation."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

import otelfin
from otelfin import _sampling
from otelfin.metrics import names, operation_buckets


def _count(registry: CollectorRegistry, metric: str, **labels: str) -> float:
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == metric + "_count" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total


def _serve(n: int) -> None:
    tracer = trace.get_tracer("tests.server")
    for i in range(n):
        with (
            tracer.start_as_current_span(
                "POST /payments/{pid}", kind=SpanKind.SERVER, attributes={"http.route": "x"}
            ),
            tracer.start_as_current_span(
                "SELECT ledger",
                kind=SpanKind.CLIENT,
                attributes={"db.system": "postgresql", "server.address": "ledger-db"},
            ) as db,
        ):
            if i % 10 == 0:
                db.set_status(StatusCode.ERROR)


def test_unsampled_requests_are_counted_but_not_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 requests under a 10% sampler: 1,000 in the RED series, about 100 traces exported."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    otelfin.configure(
        "svc", span_exporter=exporter, span_processor="simple", metrics_registry=registry
    )
    _serve(1000)
    assert _count(registry, names.DURATION, operation="POST /payments/{pid}") == 1000
    assert _count(registry, names.DEPENDENCY, system="postgresql", peer="ledger-db") == 1000
    assert _count(registry, names.DEPENDENCY, outcome="error") == 100
    traces = {s.context.trace_id for s in exporter.get_finished_spans()}
    assert 50 <= len(traces) <= 160, len(traces)  # binomial(1000, 0.1): mean 100, sd 9.5
    assert all(s.context.trace_flags.sampled for s in exporter.get_finished_spans())


def test_counting_unsampled_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics_count_unsampled=False keeps the sampler as it is: only sampled spans count."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    registry = CollectorRegistry()
    otelfin.configure(
        "svc", traces_exporter="none", metrics_registry=registry, metrics_count_unsampled=False
    )
    provider = trace.get_tracer_provider()
    assert not isinstance(provider.sampler, _sampling.RecordMeasuredSampler)  # type: ignore[attr-defined]
    _serve(20)
    assert _count(registry, names.DURATION) == 0


def test_sampler_wraps_once_and_keeps_internal_spans_dropped() -> None:
    """Reconfiguring never stacks wrappers, and INTERNAL spans keep the delegate's DROP."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision

    wrapped = _sampling.wrap(ALWAYS_OFF)
    assert _sampling.wrap(wrapped) is wrapped
    internal = wrapped.should_sample(None, 1, "f", SpanKind.INTERNAL)
    server = wrapped.should_sample(None, 1, "GET /", SpanKind.SERVER, {"http.route": "/"})
    assert internal.decision is Decision.DROP
    assert server.decision is Decision.RECORD_ONLY
    assert dict(server.attributes) == {"http.route": "/"}


def test_operation_slos_are_all_bucket_bounds() -> None:
    """Each operation's SLO is exactly a bound, with bounds dense around it."""
    bounds = operation_buckets(0.25, {"risk.score": 0.01})
    assert 0.25 in bounds and 0.01 in bounds
    assert sum(1 for b in bounds if 0.002 <= b <= 0.05) >= 5
    with pytest.raises(ValueError, match="histogram bounds"):
        operation_buckets(0.25, {f"op{i}": 0.001 * 3**i for i in range(8)})


def test_operation_slos_setting_reaches_the_histogram(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTELFIN_METRICS_OPERATION_SLOS puts each operation's SLO on the duration histogram."""
    monkeypatch.setenv("OTELFIN_METRICS_OPERATION_SLOS", "risk.score=0.01,POST /payments=0.3")
    registry = CollectorRegistry()
    otelfin.configure("svc", traces_exporter="none", metrics_registry=registry)
    metrics = otelfin.metrics.current_metrics()
    assert metrics is not None
    assert {0.01, 0.3, 0.25} <= set(metrics.buckets)


def test_bad_operation_slos_fail_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed entry names the variable and the entry."""
    monkeypatch.setenv("OTELFIN_METRICS_OPERATION_SLOS", "risk.score")
    with pytest.raises(ValueError, match="OTELFIN_METRICS_OPERATION_SLOS"):
        otelfin.configure("svc", traces_exporter="none")


def test_p99_report_names_the_slow_dependency() -> None:
    """The dependency histogram lets the P99 report say the tail is the ledger database."""
    from otelfin.tools.metrics import attribute, series_from_registry

    registry = CollectorRegistry()
    otelfin.configure("svc", traces_exporter="none", metrics_registry=registry)
    tracer = trace.get_tracer("tests.client")
    t0 = 1_000_000_000
    for i in range(400):
        peer, seconds = ("ledger-db", 0.9) if i % 20 == 0 else ("risk-cache", 0.004)
        system = "postgresql" if peer == "ledger-db" else "redis"
        span = tracer.start_span(
            "query",
            kind=SpanKind.CLIENT,
            attributes={"db.system": system, "server.address": peer},
            start_time=t0,
        )
        span.end(end_time=t0 + int(seconds * 1e9))
    report = attribute(
        series_from_registry(registry, names.DEPENDENCY), ["peer"], metric=names.DEPENDENCY
    )
    top = report.rows[0]
    assert (top.label, top.value) == ("peer", "ledger-db")
    assert top.tail_share > 0.9 and top.traffic_share < 0.1
