"""Kafka producers inject one traceparent (no broker needed: messages are only queued)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otelfin.propagation import OtelfinPropagator, kafka_headers_getter

confluent_kafka = pytest.importorskip("confluent_kafka")


@pytest.fixture
def producer(spans: InMemorySpanExporter) -> Iterator[Any]:
    """A confluent-kafka producer made after configure() (so instrumented), never connected."""
    made = confluent_kafka.Producer(
        {"bootstrap.servers": "127.0.0.1:1", "log_level": 0, "message.timeout.ms": 1000}
    )
    yield made
    made.purge()


@pytest.mark.parametrize("headers", [[("traceparent", b"00-stale")], {"Traceparent": b"stale"}])
def test_confluent_produce_injects_one_traceparent(
    producer: Any, spans: InMemorySpanExporter, headers: Any
) -> None:
    """produce() opens a producer span and writes exactly its context into the headers."""
    with trace.get_tracer("t").start_as_current_span("checkout"):
        producer.produce("payments", b"pay", headers=headers)
    send = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER)
    items = list(headers.items()) if isinstance(headers, dict) else headers
    assert [k.lower() for k, _ in items].count("traceparent") == 1
    ctx = OtelfinPropagator().extract(headers, getter=kafka_headers_getter)
    assert trace.get_current_span(ctx).get_span_context().span_id == send.context.span_id
