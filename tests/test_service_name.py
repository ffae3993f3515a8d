"""Any service name OpenTelemetry accepts works; derived values are made safe, never raised on."""

from __future__ import annotations

import io
import json

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import otelfin
from otelfin.logging import log_service_name, validate_file
from otelfin.testing import reset_tracer_provider


@pytest.mark.parametrize(
    ("name", "derived"),
    [
        ("payments_api", "payments-api"),
        ("payments.api", "payments-api"),
        ("Payments API", "payments-api"),
        ("payment-gateway", "payment-gateway"),
        ("__Zahlungen__Ä", "zahlungen"),
        ("___", "unknown-service"),
    ],
)
def test_log_service_name_is_schema_safe(name: str, derived: str) -> None:
    """The log field is lower-case words joined by hyphens, whatever the name."""
    assert log_service_name(name) == derived


@pytest.mark.parametrize("name", ["payments_api", "payments.api", "Payments API"])
def test_configure_accepts_any_opentelemetry_name(
    name: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """service.name stays as given; logs validate; the metric label exposes cleanly."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", name)
    reset_tracer_provider()
    stream = io.BytesIO()
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    otelfin.configure(log_stream=stream, metrics_registry=registry)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert provider.resource.attributes["service.name"] == name

    @otelfin.traced(name="authorise")
    def authorise() -> str:
        otelfin.get_logger().info("authorised")
        return "ok"

    assert authorise() == "ok"
    exposition = generate_latest(registry).decode()
    otelfin.shutdown()
    (span,) = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == name
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["service_name"] == "payments-api"
    path = f"{tmp_path}/log.jsonl"
    with open(path, "wb") as fh:
        fh.write(stream.getvalue())
    assert validate_file(path).bad_lines == 0
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    samples = families["otelfin_request_duration_seconds"].samples
    assert {s.labels["service"] for s in samples} == {name}
