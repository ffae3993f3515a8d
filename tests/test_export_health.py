"""Export health on /metrics: dropped spans and failed exports, by reason (real collectors)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from prometheus_client import CollectorRegistry, generate_latest

import otelfin
from otelfin import _internal
from otelfin.logging import capture_logs
from tests._collectors import HangingCollector, Http500Collector
from tests.integration.conftest import require_binary


def _value(registry: CollectorRegistry, name: str, reason: str) -> float:
    return registry.get_sample_value(name, {"reason": reason}) or 0.0


def _spans(count: int) -> None:
    tracer = trace.get_tracer("app")
    for _ in range(count):
        with tracer.start_as_current_span("charge"):
            pass


def test_collector_answering_500_is_counted_on_metrics() -> None:
    """A 500 from the collector: failures{reason=failure} and dropped{export_failed} count."""
    registry = CollectorRegistry()
    with Http500Collector() as collector:
        otelfin.configure(
            "payment-gateway",
            span_exporter=OTLPSpanExporter(endpoint=collector.endpoint, timeout=5),
            metrics_registry=registry,
        )
        with capture_logs() as logs:
            _spans(30)
            trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
            _spans(30)
            trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        assert collector.requests >= 2
    assert _value(registry, "otelfin_span_export_failures_total", "failure") >= 2
    assert _value(registry, "otelfin_spans_dropped_total", "export_failed") == 60
    assert _value(registry, "otelfin_spans_dropped_total", "queue_full") == 0
    warned = [r["event"] for r in logs if r.get("logger") == "otelfin"]
    assert sum("dropped (export_failed)" in w for w in warned) == 1, warned
    assert sum("export failed (failure)" in w for w in warned) == 1, warned
    otelfin.shutdown()


def test_full_queue_and_shutdown_drops_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hanging collector: spans the full queue refuses and those left at shutdown all count."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "200")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50")
    registry = CollectorRegistry()
    with HangingCollector() as collector:
        otelfin.configure(
            "payment-gateway",
            span_exporter=OTLPSpanExporter(endpoint=collector.endpoint, timeout=30),
            metrics_registry=registry,
        )
        _spans(1000)
        queue_full = _value(registry, "otelfin_spans_dropped_total", "queue_full")
        assert 1000 - 200 - 50 <= queue_full <= 1000 - 200
        otelfin.shutdown(timeout_millis=300)
        dropped, failures = _internal.export_health()
    # nothing was exported: every one of the 1,000 spans is counted exactly once
    assert dropped["queue_full"] + dropped["shutdown"] == 1000, dropped
    assert failures["timeout"] == 1  # the export still waiting for the collector


def test_health_exposition_passes_promtool() -> None:
    """The new counters (and the rest of otelfin's exposition) pass promtool check metrics."""
    promtool = require_binary("promtool")
    registry = CollectorRegistry()
    with Http500Collector() as collector:
        otelfin.configure(
            "payment-gateway",
            span_exporter=OTLPSpanExporter(endpoint=collector.endpoint, timeout=5),
            span_processor="simple",
            metrics_registry=registry,
        )
        _spans(3)
        text = generate_latest(registry)
    otelfin.shutdown()
    assert b'otelfin_spans_dropped_total{reason="export_failed"} 3.0' in text
    assert b'otelfin_span_export_failures_total{reason="timeout"} 0.0' in text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


class _RecordOnly(Sampler):
    """Records every span but samples none (what a tail-sampling setup may do)."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


def test_unsampled_spans_never_fill_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded-but-unsampled spans (never queued by the SDK) do not count against the queue."""
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50")
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=_RecordOnly())
    otelfin.configure("payment-gateway", span_exporter=spans, tracer_provider=provider)
    tracer = provider.get_tracer("app")
    for _ in range(500):
        with tracer.start_as_current_span("unsampled"):
            pass
    otelfin.shutdown()
    dropped, _ = _internal.export_health()
    assert dropped.get("queue_full", 0) == 0 and dropped.get("shutdown", 0) == 0
