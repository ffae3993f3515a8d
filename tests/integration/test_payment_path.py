"""One payment, one trace: HTTP -> gRPC -> RabbitMQ -> worker -> NATS over real connections.

checkout (test) --requests--> payment API (WSGI) --gRPC--> ledger (grpc server) --pika-->
RabbitMQ --aio-pika iterator--> settlement worker --nats publish--> notifier (nats subscriber)
"""

from __future__ import annotations

import asyncio
import json
import socketserver
import threading
import uuid
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otelfin.instrument.transports.wsgi import middleware
from tests.integration._services import LEDGER_POST, amqp_connection, ledger_call, ledger_server
from tests.integration._settle import spans_once
from tests.integration.conftest import require_service

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Loop:
    """An asyncio loop in a thread, for the worker and the notifier."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_payment_crosses_five_hops_in_one_trace(spans: InMemorySpanExporter) -> None:
    """Every hop's span shares the checkout's trace id, each parented on the hop before."""
    require_service("RabbitMQ", "127.0.0.1", 5672, "rabbitmq-server -detached")
    require_service("NATS", "127.0.0.1", 4222, "nats-server -a 127.0.0.1 -p 4222")
    import aio_pika
    import nats

    suffix = uuid.uuid4().hex[:12]
    queue_name = f"otelfin-settlements-{suffix}"
    subject = f"otelfin.settled.{suffix}"
    tracer = trace.get_tracer("payment-path")
    notified = threading.Event()
    result: dict[str, Any] = {}

    # Ledger (gRPC) publishes the settlement order to RabbitMQ.
    def post(request: bytes, ctx: Any) -> bytes:
        connection = amqp_connection()
        try:
            connection.channel().basic_publish("", queue_name, request)
        finally:
            connection.close()
        return b"posted"

    ledger, ledger_port = ledger_server(post)
    channel = grpc.insecure_channel(f"127.0.0.1:{ledger_port}")
    post_to_ledger = ledger_call(channel)

    # Payment API (WSGI) calls the ledger.
    def api(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        answer = post_to_ledger(body, timeout=10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [answer]

    httpd = make_server("127.0.0.1", 0, middleware(api), _Server, _Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    # Settlement worker (aio-pika iterator) and notifier (NATS subscriber).
    loop = _Loop()
    state: dict[str, Any] = {}

    async def start_async_side() -> None:
        state["amqp"] = await aio_pika.connect(AMQP_URL)
        amqp_channel = await state["amqp"].channel()
        state["queue"] = await amqp_channel.declare_queue(queue_name, auto_delete=False)
        state["nats"] = await nats.connect(NATS_URL)

        async def notifier(msg: Any) -> None:
            result["notified_span"] = trace.get_current_span().get_span_context()
            result["payment"] = json.loads(msg.data)
            notified.set()

        await state["nats"].subscribe(subject, cb=notifier)

    async def settle_one() -> None:
        async with state["queue"].iterator() as messages:
            async for message in messages:
                async with message.process():
                    with tracer.start_as_current_span("settle"):
                        await state["nats"].publish(subject, message.body)
                break

    async def stop_async_side() -> None:
        await state["queue"].delete(if_unused=False, if_empty=False)
        await state["amqp"].close()
        await state["nats"].drain()

    try:
        loop.run(start_async_side())
        worker = asyncio.run_coroutine_threadsafe(settle_one(), loop.loop)
        payment = {"payment_id": suffix, "amount": "99.99"}
        with tracer.start_as_current_span("checkout") as root:
            response = requests.post(
                f"http://127.0.0.1:{httpd.server_port}/payments",
                data=json.dumps(payment),
                timeout=10,
            )
        assert response.text == "posted"
        worker.result(20)
        assert notified.wait(20), "the notifier never received the settlement"
    finally:
        try:
            loop.run(stop_async_side())
        finally:
            loop.close()
            httpd.shutdown()
            httpd.server_close()
            channel.close()
            ledger.stop(None)

    assert result["payment"] == payment
    # The WSGI thread ends its SERVER span after writing the response; shutdown() does not
    # wait for that thread, so wait for the span itself.
    finished = spans_once(
        spans, lambda s: s.kind is SpanKind.SERVER and "POST" in s.name, "the API's SERVER span"
    )
    trace_id = root.get_span_context().trace_id
    assert result["notified_span"].trace_id == trace_id

    def one(kind: SpanKind, name_part: str) -> ReadableSpan:
        found = [s for s in finished if s.kind is kind and name_part in s.name]
        assert len(found) == 1, (kind, name_part, [s.name for s in finished])
        return found[0]

    chain = [
        next(s for s in finished if s.name == "checkout"),
        one(SpanKind.CLIENT, "POST"),  # requests
        one(SpanKind.SERVER, "POST"),  # WSGI payment API
        one(SpanKind.CLIENT, LEDGER_POST),  # gRPC client
        one(SpanKind.SERVER, LEDGER_POST),  # gRPC ledger
        one(SpanKind.PRODUCER, queue_name),  # pika publish
        one(SpanKind.CONSUMER, f"process {queue_name}"),  # aio-pika worker
        next(s for s in finished if s.name == "settle"),
        one(SpanKind.PRODUCER, subject),  # NATS publish
        one(SpanKind.CONSUMER, f"process {subject}"),  # NATS notifier
    ]
    assert {s.context.trace_id for s in chain} == {trace_id}
    assert {s.context.trace_id for s in finished} == {trace_id}
    for child, parent in zip(chain[1:], chain[:-1], strict=True):
        assert child.parent is not None, child.name
        assert child.parent.span_id == parent.context.span_id, (child.name, parent.name)
    assert chain[-1].context.span_id == result["notified_span"].span_id
