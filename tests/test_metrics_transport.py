"""RED metrics from transport spans (server/consumer spans of instrumentations)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry

import otelfin
from otelfin.testing import configured_for_test


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_server_and_consumer_spans_feed_red_metrics() -> None:
    """Incoming transport spans are counted; client spans and @traced spans are not doubled."""
    registry = CollectorRegistry()
    with configured_for_test("payment-gateway", metrics_registry=registry):
        tracer = trace.get_tracer("opentelemetry.instrumentation.wsgi")
        with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as span:
            span.set_attribute("payment.channel", "ecom")
        with tracer.start_as_current_span("settle process", kind=SpanKind.CONSUMER) as span:
            span.set_attribute("otelfin.error_code", "SETTLE-001")
            span.set_status(Status(StatusCode.ERROR))
        with tracer.start_as_current_span("GET ledger", kind=SpanKind.CLIENT):
            pass

        @otelfin.traced(name="traced.op", kind="server")
        def op() -> None:
            pass

        op()
        base = {"service": "payment-gateway"}
        ok = sample(
            registry,
            "otelfin_request_duration_seconds_count",
            **base,
            operation="POST /pay",
            outcome="ok",
            channel="ecom",
        )
        assert ok == 1
        errors = sample(
            registry,
            "otelfin_request_errors_total",
            **base,
            operation="settle process",
            error_code="SETTLE-001",
            channel="",
        )
        assert errors == 1
        assert (
            sample(
                registry,
                "otelfin_request_duration_seconds_count",
                **base,
                operation="GET ledger",
                outcome="ok",
                channel="",
            )
            == 0
        )
        assert (
            sample(
                registry,
                "otelfin_request_duration_seconds_count",
                **base,
                operation="traced.op",
                outcome="ok",
                channel="",
            )
            == 1
        )
