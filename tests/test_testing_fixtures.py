"""The pytest plugin's fixtures used together, as the docs offer them."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import otelfin


@otelfin.traced(name="authorise")
def _authorise() -> str:
    return "approved"


def _count(registry: CollectorRegistry) -> float | None:
    labels = {"service": "otelfin-test", "operation": "authorise", "outcome": "ok", "channel": ""}
    return registry.get_sample_value("otelfin_request_duration_seconds_count", labels)


def test_spans_then_prom_registry_both_record(
    spans: InMemorySpanExporter, prom_registry: CollectorRegistry
) -> None:
    """With spans and prom_registry in one test, the call reaches both (spans was empty)."""
    _authorise()
    assert [s.name for s in spans.get_finished_spans()] == ["authorise"]
    assert _count(prom_registry) == 1.0


def test_prom_registry_then_spans_both_record(
    prom_registry: CollectorRegistry, spans: InMemorySpanExporter
) -> None:
    """The same in the other fixture order."""
    _authorise()
    assert [s.name for s in spans.get_finished_spans()] == ["authorise"]
    assert _count(prom_registry) == 1.0
