"""NATS at 127.0.0.1:4222: publish/subscribe and request/reply continue one trace."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.integration.conftest import require_service

HOST, PORT = "127.0.0.1", 4222


@pytest.fixture(autouse=True)
def _nats() -> None:
    require_service("NATS", HOST, PORT, "nats-server -a 127.0.0.1 -p 4222")


async def test_publish_subscribe(spans: InMemorySpanExporter) -> None:
    """The subscriber callback runs in a consumer span whose parent is the publish span."""
    import nats

    tracer = trace.get_tracer("test")
    client = await nats.connect(f"nats://{HOST}:{PORT}")
    subject = f"otelfin.test.{uuid.uuid4().hex[:12]}"
    got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def handler(msg: Any) -> None:
        with tracer.start_as_current_span("settle"):
            got.set_result(dict(msg.headers or {}))

    try:
        subscription = await client.subscribe(subject, cb=handler)
        caller_headers = {"Nats-Msg-Id": "42"}
        with tracer.start_as_current_span("checkout") as root:
            await client.publish(subject, b"pay", headers=caller_headers)
        headers = await asyncio.wait_for(got, 5)
        await subscription.unsubscribe()
    finally:
        await client.drain()
    assert caller_headers == {"Nats-Msg-Id": "42"}  # the caller's dict is left alone
    assert headers["Nats-Msg-Id"] == "42" and "traceparent" in headers
    finished = spans.get_finished_spans()
    publish = next(s for s in finished if s.kind is SpanKind.PRODUCER)
    process = next(s for s in finished if s.kind is SpanKind.CONSUMER)
    settle = next(s for s in finished if s.name == "settle")
    assert publish.name == f"publish {subject}" and process.name == f"process {subject}"
    assert publish.attributes is not None and publish.attributes["messaging.system"] == "nats"
    assert publish.parent is not None and publish.parent.span_id == root.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert settle.parent is not None and settle.parent.span_id == process.context.span_id
    assert settle.start_time >= process.start_time and settle.end_time <= process.end_time


async def test_request_reply(spans: InMemorySpanExporter) -> None:
    """request() is a client span; the responder processes under it and replies in-trace."""
    import nats

    tracer = trace.get_tracer("test")
    client = await nats.connect(f"nats://{HOST}:{PORT}")
    subject = f"otelfin.test.{uuid.uuid4().hex[:12]}"

    async def responder(msg: Any) -> None:
        trace_id = trace.get_current_span().get_span_context().trace_id
        await msg.respond(f"{trace_id:032x}".encode())

    try:
        subscription = await client.subscribe(subject, cb=responder)
        with tracer.start_as_current_span("checkout") as root:
            reply = await client.request(subject, b"ping", timeout=5)
        await subscription.unsubscribe()
    finally:
        await client.drain()
    assert reply.data == f"{root.get_span_context().trace_id:032x}".encode()
    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.kind is SpanKind.CLIENT)
    process = next(s for s in finished if s.name == f"process {subject}")
    assert request.name == f"request {subject}"
    assert not any(s.name == f"publish {subject}" for s in finished)  # no second span
    assert process.parent is not None and process.parent.span_id == request.context.span_id


async def test_callback_errors_are_recorded_and_propagate_to_nats(
    spans: InMemorySpanExporter,
) -> None:
    """An exception in the callback marks the consumer span and still reaches nats' error_cb."""
    import nats

    errors: asyncio.Queue[BaseException] = asyncio.Queue()

    async def error_cb(exc: BaseException) -> None:
        await errors.put(exc)

    client = await nats.connect(f"nats://{HOST}:{PORT}", error_cb=error_cb)
    subject = f"otelfin.test.{uuid.uuid4().hex[:12]}"

    async def broken(msg: Any) -> None:
        raise ValueError("ledger down")

    try:
        await client.subscribe(subject, cb=broken)
        await client.publish(subject, b"x")
        exc = await asyncio.wait_for(errors.get(), 5)
    finally:
        await client.drain()
    assert isinstance(exc, ValueError) and str(exc) == "ledger down"
    process = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER)
    assert not process.status.is_ok
    assert process.attributes is not None and process.attributes["error.type"] == "ValueError"


async def test_next_msg_and_message_iterator(spans: InMemorySpanExporter) -> None:
    """Pull-style reads process each message in a span parented on its publish span."""
    import nats

    tracer = trace.get_tracer("test")
    client = await nats.connect(f"nats://{HOST}:{PORT}")
    subject = f"otelfin.test.{uuid.uuid4().hex[:12]}"
    try:
        subscription = await client.subscribe(subject)
        with tracer.start_as_current_span("checkout"):
            await client.publish(subject, b"first")
            await client.publish(subject, b"second")
        await subscription.next_msg(timeout=5)
        with tracer.start_as_current_span("settle-first"):
            pass
        async for _msg in subscription.messages:
            with tracer.start_as_current_span("settle-second"):
                pass
            break
        await subscription.unsubscribe()
        assert not trace.get_current_span().get_span_context().is_valid
    finally:
        await client.drain()
    finished = spans.get_finished_spans()
    publishes = [s for s in finished if s.kind is SpanKind.PRODUCER]
    processes = [s for s in finished if s.name == f"process {subject}"]
    assert len(publishes) == 2 and len(processes) == 2
    for publish, process, settle_name in zip(
        publishes, processes, ("settle-first", "settle-second"), strict=True
    ):
        settle = next(s for s in finished if s.name == settle_name)
        assert process.parent is not None and process.parent.span_id == publish.context.span_id
        assert settle.parent is not None and settle.parent.span_id == process.context.span_id
