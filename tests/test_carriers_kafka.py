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


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # kafka-python 3 import warning
def test_kafka_python_record_is_processed_under_the_producer(
    spans: InMemorySpanExporter,
) -> None:
    """Work done after ``next(consumer)`` is in a process span parented on the producer."""
    from kafka import KafkaConsumer
    from kafka.consumer.fetcher import ConsumerRecord

    traceparent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [("junk", b"\xff\xfe"), ("Traceparent", traceparent)]
    record = ConsumerRecord("payments", 0, None, 7, 0, 0, None, b"v", headers, None, 1, 1, -1)
    # No broker here, and a real KafkaConsumer would dial one: a bare instance carries just the
    # state __next__ reads, so the library's own __next__ and both wrappers run unchanged.
    consumer = KafkaConsumer.__new__(KafkaConsumer)
    consumer.config = {"bootstrap_servers": "127.0.0.1:1", "consumer_timeout_ms": 20}
    consumer._closed = False
    consumer._iterator = iter([record])
    consumer._message_generator_v2 = lambda: iter(())  # nothing more to fetch
    assert next(consumer) is record
    with trace.get_tracer("t").start_as_current_span("settle"):
        pass
    with pytest.raises(StopIteration):
        next(consumer)  # asking for the next record ends the previous one's span
    assert not trace.get_current_span().get_span_context().is_valid
    finished = {s.name: s for s in spans.get_finished_spans()}
    process, settle = finished["process payments"], finished["settle"]
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert process.parent is not None and process.parent.span_id == 0xB7AD6B7169203331
    assert settle.parent is not None and settle.parent.span_id == process.context.span_id
