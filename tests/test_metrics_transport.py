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


def _exemplars(registry: CollectorRegistry, operation: str) -> dict[str, str]:
    """Bucket bound -> exemplar trace id of the duration histogram for ``operation``."""
    out: dict[str, str] = {}
    for metric in registry.collect():
        for s in metric.samples:
            if (
                s.name == "otelfin_request_duration_seconds_bucket"
                and s.labels.get("operation") == operation
                and s.exemplar is not None
            ):
                out[s.labels["le"]] = s.exemplar.labels["trace_id"]
    return out


def test_transport_span_exemplars_are_rate_limited_per_bucket() -> None:
    """A server span's observation carries its trace id as exemplar; a second one in the same
    bucket within a second is counted without replacing it; a slow one in another bucket gets
    its own (the exemplar a P99 point opens)."""
    registry = CollectorRegistry()
    with configured_for_test("payment-gateway", metrics_registry=registry):
        tracer = trace.get_tracer("opentelemetry.instrumentation.asgi")
        ids = []
        for _ in range(2):
            with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as span:
                ids.append(f"{span.get_span_context().trace_id:032x}")
        slow = tracer.start_span("POST /pay", kind=SpanKind.SERVER, start_time=1_000_000_000)
        slow.end(end_time=4_000_000_000)  # 3 s: far above the fast requests' bucket
        slow_id = f"{slow.get_span_context().trace_id:032x}"
        count = sample(
            registry,
            "otelfin_request_duration_seconds_count",
            service="payment-gateway",
            operation="POST /pay",
            outcome="ok",
            channel="",
        )
        exemplars = _exemplars(registry, "POST /pay")
    assert count == 3
    assert ids[0] in exemplars.values() and ids[1] not in exemplars.values()
    assert slow_id in exemplars.values()


def test_transport_channel_label_from_a_namespaced_attribute() -> None:
    """``payment.channel`` (any ``*.channel``) on a server span becomes the channel label."""
    registry = CollectorRegistry()
    with configured_for_test("payment-gateway", metrics_registry=registry):
        tracer = trace.get_tracer("opentelemetry.instrumentation.asgi")
        with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.route", "/pay")
            span.set_attribute("payment.channel", "moto")
        count = sample(
            registry,
            "otelfin_request_duration_seconds_count",
            service="payment-gateway",
            operation="POST /pay",
            outcome="ok",
            channel="moto",
        )
    assert count == 1


def test_http_server_spans_are_labelled_by_route_template_never_raw_path() -> None:
    """operation is ``<method> <http.route>``; without a route the method, never the raw path."""
    registry = CollectorRegistry()
    with configured_for_test("payment-gateway", metrics_registry=registry):
        tracer = trace.get_tracer("opentelemetry.instrumentation.asgi")
        for pid in (1, 2):
            with tracer.start_as_current_span(f"POST /payments/{pid}", kind=SpanKind.SERVER) as s:
                s.set_attribute("http.request.method", "POST")
                s.set_attribute("http.route", "/payments/{pid}")
            with tracer.start_as_current_span(f"GET /raw/{pid}", kind=SpanKind.SERVER) as s:
                s.set_attribute("http.method", "GET")
                s.set_attribute("http.target", f"/raw/{pid}")
        count = "otelfin_request_duration_seconds_count"
        base = {"service": "payment-gateway", "outcome": "ok", "channel": ""}
        assert sample(registry, count, **base, operation="POST /payments/{pid}") == 2
        assert sample(registry, count, **base, operation="GET") == 2
        assert sample(registry, count, **base, operation="GET /raw/1") == 0
