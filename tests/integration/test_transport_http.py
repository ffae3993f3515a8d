"""HTTP over real sockets: requests/httpx clients -> a WSGI server on 127.0.0.1; ASGI middleware."""

from __future__ import annotations

import socketserver
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import requests
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otelfin.instrument.transports.asgi import middleware as asgi_middleware
from otelfin.instrument.transports.wsgi import middleware as wsgi_middleware
from tests.integration._settle import spans_once


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Echo the trace id the server span runs under, and one baggage entry."""
    span_context = trace.get_current_span().get_span_context()
    body = f"{span_context.trace_id:032x} {baggage.get_baggage('tenant')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


@pytest.fixture
def server(spans: InMemorySpanExporter) -> Iterator[str]:
    """otelfin configured; a threaded WSGI server with otelfin's middleware on a free port."""
    httpd = make_server("127.0.0.1", 0, wsgi_middleware(_app), _Server, _Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/pay"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _is_server(span: ReadableSpan) -> bool:
    return span.kind is SpanKind.SERVER


def _server_spans(spans: InMemorySpanExporter) -> tuple[ReadableSpan, ...]:
    """The finished spans once the server thread has ended its span: wsgiref closes the
    response (which ends the span) after writing it, so the client can be there first."""
    return spans_once(spans, _is_server, "the WSGI server span")


def _one_trace(spans: InMemorySpanExporter, root: trace.Span, body: str) -> None:
    finished = _server_spans(spans)
    server_span = next(s for s in finished if s.kind is SpanKind.SERVER)
    client_span = next(s for s in finished if s.kind is SpanKind.CLIENT)
    trace_id = root.get_span_context().trace_id
    assert body == f"{trace_id:032x} acme"
    assert {s.context.trace_id for s in finished} == {trace_id}
    assert client_span.parent is not None
    assert client_span.parent.span_id == root.get_span_context().span_id
    assert server_span.parent is not None and server_span.parent.is_remote
    assert server_span.parent.span_id == client_span.context.span_id


def test_requests_to_wsgi_is_one_trace(server: str, spans: InMemorySpanExporter) -> None:
    """requests client span -> WSGI server span, baggage carried along."""
    tracer = trace.get_tracer("test")
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with tracer.start_as_current_span("checkout") as root:
            body = requests.get(server, timeout=5).text
    finally:
        context.detach(token)
    _one_trace(spans, root, body)


def test_httpx_sync_to_wsgi_is_one_trace(server: str, spans: InMemorySpanExporter) -> None:
    """httpx.Client span -> WSGI server span."""
    tracer = trace.get_tracer("test")
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with tracer.start_as_current_span("checkout") as root, httpx.Client() as client:
            body = client.get(server).text
    finally:
        context.detach(token)
    _one_trace(spans, root, body)


async def test_httpx_async_to_wsgi_is_one_trace(server: str, spans: InMemorySpanExporter) -> None:
    """httpx.AsyncClient span -> WSGI server span."""
    tracer = trace.get_tracer("test")
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with tracer.start_as_current_span("checkout") as root:
            async with httpx.AsyncClient() as client:
                body = (await client.get(server)).text
    finally:
        context.detach(token)
    _one_trace(spans, root, body)


def test_b3_caller_is_continued_by_the_wsgi_server(
    server: str, spans: InMemorySpanExporter
) -> None:
    """A Zipkin/B3 caller (no traceparent) is continued through its X-B3-* headers."""
    headers = {
        "X-B3-TraceId": "463ac35c9f6413ad",
        "X-B3-SpanId": "a2fb4a1d1a96d312",
        "X-B3-Sampled": "1",
    }
    # urllib is not instrumented: the request carries the caller's B3 headers only.
    request = urllib.request.Request(server, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read().decode()
    assert body.startswith("0000000000000000463ac35c9f6413ad")
    server_span = next(s for s in _server_spans(spans) if s.kind is SpanKind.SERVER)
    assert server_span.parent is not None and server_span.parent.span_id == 0xA2FB4A1D1A96D312


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    span_context = trace.get_current_span().get_span_context()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"{span_context.trace_id:032x}".encode()})


async def test_asgi_middleware_continues_the_caller(spans: InMemorySpanExporter) -> None:
    """ASGI server span continues a traceparent sent in any casing."""
    app = asgi_middleware(_asgi_app)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app"
    ) as c:
        response = await c.get("/pay", headers={"TraceParent": traceparent})
    assert response.text == "0af7651916cd43dd8448eb211c80319c"
    server_span = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert server_span.parent is not None and server_span.parent.span_id == 0xB7AD6B7169203331
