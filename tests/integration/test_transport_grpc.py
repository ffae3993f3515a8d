"""gRPC over real sockets on 127.0.0.1: sync and grpc.aio, unary and streaming, one trace."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

SERVICE = "otelfin.test.Ledger"


def _ident(b: bytes) -> bytes:
    return b


def _trace_hex() -> bytes:
    return f"{trace.get_current_span().get_span_context().trace_id:032x}".encode()


class _SyncLedger:
    def post(self, request: bytes, ctx: Any) -> bytes:
        return _trace_hex()

    def stream(self, request_iterator: Iterator[bytes], ctx: Any) -> Iterator[bytes]:
        for _ in request_iterator:
            yield _trace_hex()

    def fan_out(self, request: bytes, ctx: Any) -> Iterator[bytes]:
        for _ in range(2):
            yield _trace_hex()

    def fan_in(self, request_iterator: Iterator[bytes], ctx: Any) -> bytes:
        for _ in request_iterator:
            pass
        return _trace_hex()


class _AioLedger:
    async def post(self, request: bytes, ctx: Any) -> bytes:
        return _trace_hex()

    async def stream(
        self, request_iterator: AsyncIterator[bytes], ctx: Any
    ) -> AsyncIterator[bytes]:
        async for _ in request_iterator:
            yield _trace_hex()


def _handler(impl: Any) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Post": grpc.unary_unary_rpc_method_handler(impl.post, _ident, _ident),
            "Stream": grpc.stream_stream_rpc_method_handler(impl.stream, _ident, _ident),
            **(
                {
                    "FanOut": grpc.unary_stream_rpc_method_handler(impl.fan_out, _ident, _ident),
                    "FanIn": grpc.stream_unary_rpc_method_handler(impl.fan_in, _ident, _ident),
                }
                if hasattr(impl, "fan_out")
                else {}
            ),
        },
    )


def _check(spans: InMemorySpanExporter, root: trace.Span, method: str) -> None:
    finished = [s for s in spans.get_finished_spans() if s.name == f"/{SERVICE}/{method}"]
    client: ReadableSpan = next(s for s in finished if s.kind is SpanKind.CLIENT)
    server: ReadableSpan = next(s for s in finished if s.kind is SpanKind.SERVER)
    assert client.context.trace_id == server.context.trace_id == root.get_span_context().trace_id
    assert client.parent is not None and client.parent.span_id == root.get_span_context().span_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id


@pytest.fixture
def sync_channel(spans: InMemorySpanExporter) -> Iterator[grpc.Channel]:
    """A sync gRPC server (created after configure, so instrumented) and a channel to it."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((_handler(_SyncLedger()),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(None)


def test_sync_unary(sync_channel: grpc.Channel, spans: InMemorySpanExporter) -> None:
    """Sync unary call: client span -> server span, handler sees the caller's trace."""
    call = sync_channel.unary_unary(f"/{SERVICE}/Post", _ident, _ident)
    with trace.get_tracer("t").start_as_current_span("root") as root:
        reply = call(b"x", timeout=5)
    assert reply == f"{root.get_span_context().trace_id:032x}".encode()
    _check(spans, root, "Post")


def test_sync_streaming(sync_channel: grpc.Channel, spans: InMemorySpanExporter) -> None:
    """Sync bidirectional stream keeps the trace for every message."""
    call = sync_channel.stream_stream(f"/{SERVICE}/Stream", _ident, _ident)
    with trace.get_tracer("t").start_as_current_span("root") as root:
        replies = list(call(iter([b"a", b"b", b"c"]), timeout=5))
    assert replies == [f"{root.get_span_context().trace_id:032x}".encode()] * 3
    _check(spans, root, "Stream")


async def test_aio_unary_and_streaming(spans: InMemorySpanExporter) -> None:
    """grpc.aio unary and streaming calls continue the caller's trace."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(_AioLedger()),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            post = channel.unary_unary(f"/{SERVICE}/Post", _ident, _ident)
            stream = channel.stream_stream(f"/{SERVICE}/Stream", _ident, _ident)
            with trace.get_tracer("t").start_as_current_span("root") as root:
                reply = await post(b"x", timeout=5)
                replies = [r async for r in stream(iter([b"a", b"b"]), timeout=5)]
    finally:
        await server.stop(None)
    expected = f"{root.get_span_context().trace_id:032x}".encode()
    assert reply == expected and replies == [expected, expected]
    _check(spans, root, "Post")
    _check(spans, root, "Stream")


def test_sync_unary_stream_and_stream_unary(
    sync_channel: grpc.Channel, spans: InMemorySpanExporter
) -> None:
    """Server-streaming and client-streaming calls continue the caller's trace too."""
    fan_out = sync_channel.unary_stream(f"/{SERVICE}/FanOut", _ident, _ident)
    fan_in = sync_channel.stream_unary(f"/{SERVICE}/FanIn", _ident, _ident)
    with trace.get_tracer("t").start_as_current_span("root") as root:
        many = list(fan_out(b"x", timeout=5))
        one = fan_in(iter([b"a", b"b"]), timeout=5)
    expected = f"{root.get_span_context().trace_id:032x}".encode()
    assert many == [expected, expected] and one == expected
    _check(spans, root, "FanOut")
    _check(spans, root, "FanIn")
