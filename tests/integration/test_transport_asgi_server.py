"""ASGI over a real socket: an instrumented httpx client -> uvicorn on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import otelfin
from otelfin.instrument.transports.asgi import middleware
from tests.integration._procs import free_port
from tests.integration._settle import spans_once


@otelfin.traced(name="authorise", attributes={"payment.channel": "channel"})
async def authorise(channel: str) -> int:
    return trace.get_current_span().get_span_context().trace_id


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    trace_id = await authorise("ecom")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"{trace_id:032x}".encode()})


def _is_request_span(span: ReadableSpan) -> bool:
    return span.kind is SpanKind.SERVER and span.name != "authorise"


@pytest.fixture
def asgi_server(spans: InMemorySpanExporter) -> Iterator[str]:
    """uvicorn serving the middleware-wrapped app on a free 127.0.0.1 port, in a thread."""
    port = free_port()
    config = uvicorn.Config(
        middleware(_app), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start on 127.0.0.1")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def test_real_asgi_server_continues_client_trace(
    asgi_server: str, spans: InMemorySpanExporter
) -> None:
    """Client span -> uvicorn server span -> @traced span: one trace, correct parents."""
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("checkout") as root:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{asgi_server}/pay")
    trace_id = root.get_span_context().trace_id
    assert response.status_code == 200
    assert response.text == f"{trace_id:032x}"
    # uvicorn's thread ends the server span after the response went out: wait for it.
    finished = spans_once(spans, _is_request_span, "the uvicorn request's SERVER span")
    client_span = next(s for s in finished if s.kind is SpanKind.CLIENT)
    server_span = next(s for s in finished if _is_request_span(s))
    inner = next(s for s in finished if s.name == "authorise")
    assert client_span.parent is not None
    assert client_span.parent.span_id == root.get_span_context().span_id
    assert server_span.parent is not None and server_span.parent.is_remote
    assert server_span.parent.span_id == client_span.context.span_id
    assert inner.parent is not None and inner.parent.span_id == server_span.context.span_id
    assert inner.attributes["payment.channel"] == "ecom"
    assert {s.context.trace_id for s in (client_span, server_span, inner)} == {trace_id}
