"""Headers otelfin writes into RabbitMQ and NATS messages, read back by OpenTelemetry's own
propagators (B3 multi, W3C baggage) from the plain dict the consumer receives."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelfin.propagation import OtelfinPropagator
from otelfin.testing import configured_for_test
from tests.integration.conftest import require_service

AMQP = ("127.0.0.1", 5672)
NATS = ("127.0.0.1", 4222)
B3_NAMES = {"x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}


@pytest.fixture
def b3multi() -> Iterator[InMemorySpanExporter]:
    """otelfin configured with OTEL_PROPAGATORS=tracecontext,baggage,b3multi."""
    with configured_for_test(propagators="tracecontext,baggage,b3multi") as exporter:
        yield exporter


def _inbound_baggage() -> Any:
    """A context holding baggage as it arrived from upstream, a property included."""
    return OtelfinPropagator().extract({"baggage": "tenant=acme;ttl=30, channel=web"})


def _check(headers: dict[str, Any], root: Any) -> None:
    text = {k: v.decode() if isinstance(v, bytes) else v for k, v in headers.items()}
    assert set(text) >= B3_NAMES, sorted(text)
    assert not any(k.startswith("X-B3") for k in text), sorted(text)
    # OpenTelemetry's own B3 multi propagator, on a plain (case-sensitive) dict
    theirs = trace.get_current_span(B3MultiFormat().extract(text)).get_span_context()
    assert theirs.is_valid and theirs.trace_id == root.get_span_context().trace_id
    assert "tenant=acme;ttl=30" in text["baggage"].split(",")
    # and a second hop keeps the property: extract -> inject round trip
    again: dict[str, str] = {}
    propagator = OtelfinPropagator()
    propagator.inject(again, propagator.extract(text))
    assert set(again["baggage"].split(",")) == {"tenant=acme;ttl=30", "channel=web"}


def test_b3multi_and_baggage_properties_through_rabbitmq(b3multi: InMemorySpanExporter) -> None:
    """pika: b3multi headers are lower-case and readable by OpenTelemetry's B3 propagator;
    the baggage property survives the broker."""
    require_service("RabbitMQ", *AMQP, "rabbitmq-server -detached")
    import pika

    params = pika.ConnectionParameters(*AMQP, credentials=pika.PlainCredentials("guest", "guest"))
    connection = pika.BlockingConnection(params)
    queue = f"otelfin-test-{uuid.uuid4().hex[:12]}"
    try:
        channel = connection.channel()
        channel.queue_declare(queue, auto_delete=True)
        token = context.attach(_inbound_baggage())
        try:
            with trace.get_tracer("test").start_as_current_span("checkout") as root:
                channel.basic_publish("", queue, b"pay", pika.BasicProperties(headers={}))
        finally:
            context.detach(token)
        method, properties, _body = channel.basic_get(queue, auto_ack=True)
        for _ in range(50):
            if method is not None:
                break
            connection.sleep(0.1)
            method, properties, _body = channel.basic_get(queue, auto_ack=True)
        assert method is not None, "no message within 5 s"
        channel.queue_delete(queue)
    finally:
        connection.close()
    _check(dict(properties.headers), root)


async def test_b3multi_and_baggage_properties_through_nats(b3multi: InMemorySpanExporter) -> None:
    """nats-py: the same headers, received by a subscriber, read by OpenTelemetry's B3."""
    require_service("NATS", *NATS, "nats-server -a 127.0.0.1 -p 4222")
    import nats

    client = await nats.connect(f"nats://{NATS[0]}:{NATS[1]}")
    subject = f"otelfin.test.{uuid.uuid4().hex[:12]}"
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def handler(msg: Any) -> None:
        got.set_result(dict(msg.headers or {}))

    try:
        subscription = await client.subscribe(subject, cb=handler)
        token = context.attach(_inbound_baggage())
        try:
            with trace.get_tracer("test").start_as_current_span("checkout") as root:
                await client.publish(subject, b"pay")
        finally:
            context.detach(token)
        headers = await asyncio.wait_for(got, 5)
        await subscription.unsubscribe()
    finally:
        await client.drain()
    _check(headers, root)
    assert baggage.get_baggage("tenant", _inbound_baggage()) == "acme"  # value without property
