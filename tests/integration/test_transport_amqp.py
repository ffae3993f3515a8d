"""RabbitMQ at 127.0.0.1:5672 (guest/guest): pika and aio-pika keep one trace per message."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.integration._services import amqp_connection, consume
from tests.integration.conftest import require_service

HOST, PORT = "127.0.0.1", 5672
URL = f"amqp://guest:guest@{HOST}:{PORT}/"


@pytest.fixture(autouse=True)
def _rabbitmq() -> None:
    require_service("RabbitMQ", HOST, PORT, "rabbitmq-server -detached")


@pytest.fixture
def foreign_channel() -> Iterator[Any]:
    """A channel opened before otelfin is configured: it publishes without instrumentation,
    like a producer in another language or service."""
    connection = amqp_connection()
    try:
        yield connection.channel()
    finally:
        connection.close()


def _by_name(spans: InMemorySpanExporter, suffix: str) -> ReadableSpan:
    return next(s for s in spans.get_finished_spans() if s.name.endswith(suffix))


def test_pika_callback_runs_inside_the_consume_span(spans: InMemorySpanExporter) -> None:
    """basic_consume callback: current span is the consumer span, child of the single publish."""
    import pika

    tracer = trace.get_tracer("test")
    connection = amqp_connection()
    queue = f"otelfin-test-{uuid.uuid4().hex[:12]}"
    seen: dict[str, Any] = {}
    try:
        channel = connection.channel()
        channel.queue_declare(queue, auto_delete=True)
        with tracer.start_as_current_span("checkout") as root:
            channel.basic_publish("", queue, b"pay", pika.BasicProperties(headers={"k": "v"}))

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            seen["span"] = trace.get_current_span()
            with tracer.start_as_current_span("settle"):
                pass
            ch.basic_ack(method.delivery_tag)
            ch.stop_consuming()

        consume(channel, queue, on_message)
    finally:
        connection.close()
    producers = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert len(producers) == 1, [s.name for s in producers]  # not two nested "send" spans
    consumer = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER)
    settle = _by_name(spans, "settle")
    assert seen["span"].get_span_context().span_id == consumer.context.span_id
    assert consumer.parent is not None and consumer.parent.span_id == producers[0].context.span_id
    assert settle.parent is not None and settle.parent.span_id == consumer.context.span_id
    assert consumer.context.trace_id == root.get_span_context().trace_id


def test_pika_bytes_headers_from_a_foreign_producer(
    foreign_channel: Any, spans: InMemorySpanExporter
) -> None:
    """A traceparent sent as bytes under another casing is continued by the consumer."""
    import pika

    queue = f"otelfin-test-{uuid.uuid4().hex[:12]}"
    foreign_channel.queue_declare(queue, auto_delete=True)
    traceparent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    foreign_channel.basic_publish(
        "", queue, b"pay", pika.BasicProperties(headers={"Traceparent": traceparent, "x": b"\xff"})
    )
    connection = amqp_connection()
    try:
        channel = connection.channel()

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            ch.basic_ack(method.delivery_tag)
            ch.stop_consuming()

        consume(channel, queue, on_message)
    finally:
        connection.close()
    consumer = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER)
    assert consumer.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert consumer.parent is not None and consumer.parent.span_id == 0xB7AD6B7169203331


@pytest.mark.parametrize("connect", ["connect", "connect_robust"])
async def test_aio_pika_consume_callback_and_iterator(
    spans: InMemorySpanExporter, connect: str
) -> None:
    """aio-pika (plain and robust connection): each message from a queue iterator is processed
    under its own process span, parented to the producer."""
    import aio_pika

    tracer = trace.get_tracer("test")
    connection = await getattr(aio_pika, connect)(URL)
    seen: dict[str, int] = {}
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            f"otelfin-test-{uuid.uuid4().hex[:12]}", auto_delete=True
        )
        with tracer.start_as_current_span("checkout") as root:
            for body in (b"one", b"two"):
                await channel.default_exchange.publish(
                    aio_pika.Message(body=body), routing_key=queue.name
                )
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    with tracer.start_as_current_span(f"settle-{message.body.decode()}"):
                        seen[message.body.decode()] = (
                            trace.get_current_span().get_span_context().trace_id
                        )
                if len(seen) == 2:
                    break
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    trace_id = root.get_span_context().trace_id
    assert seen == {"one": trace_id, "two": trace_id}
    producers = {
        s.context.span_id for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER
    }
    processes = [s for s in spans.get_finished_spans() if s.name.startswith("process ")]
    assert len(processes) == 2
    assert all(p.parent is not None and p.parent.span_id in producers for p in processes)
    for name in ("settle-one", "settle-two"):
        settle = _by_name(spans, name)
        assert settle.parent is not None
        assert settle.parent.span_id in {p.context.span_id for p in processes}
        # each message's work sits under its own process span, which covers it
        process = next(p for p in processes if p.context.span_id == settle.parent.span_id)
        assert process.start_time <= settle.start_time and settle.end_time <= process.end_time


async def test_aio_pika_consume_callback(spans: InMemorySpanExporter) -> None:
    """aio-pika Queue.consume callback runs under a consumer span parented to the producer."""
    import aio_pika

    tracer = trace.get_tracer("test")
    connection = await aio_pika.connect(URL)
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            f"otelfin-test-{uuid.uuid4().hex[:12]}", auto_delete=True
        )

        async def on_message(message: Any) -> None:
            async with message.process():
                done.set_result(trace.get_current_span().get_span_context().trace_id)

        await queue.consume(on_message)
        with tracer.start_as_current_span("checkout") as root:
            await channel.default_exchange.publish(
                aio_pika.Message(body=b"x"), routing_key=queue.name
            )
        assert await asyncio.wait_for(done, 10) == root.get_span_context().trace_id
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


def test_pika_consume_generator_continues_the_trace(spans: InMemorySpanExporter) -> None:
    """channel.consume(): work done for a message is a child of its consumer span."""
    import pika

    tracer = trace.get_tracer("test")
    connection = amqp_connection()
    queue = f"otelfin-test-{uuid.uuid4().hex[:12]}"
    try:
        channel = connection.channel()
        channel.queue_declare(queue, auto_delete=True)
        with tracer.start_as_current_span("checkout") as root:
            channel.basic_publish("", queue, b"pay", pika.BasicProperties())
        for method, _properties, _body in channel.consume(queue, inactivity_timeout=5):
            assert method is not None, "no message within 5 s"
            with tracer.start_as_current_span("settle"):
                pass
            channel.basic_ack(method.delivery_tag)
            break
        channel.cancel()
        channel.queue_delete(queue)
    finally:
        connection.close()
    consumer = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER)
    settle = _by_name(spans, "settle")
    assert consumer.context.trace_id == root.get_span_context().trace_id
    assert settle.parent is not None and settle.parent.span_id == consumer.context.span_id
    # cancel() released the message's context: nothing stays current on this thread
    assert not trace.get_current_span().get_span_context().is_valid
