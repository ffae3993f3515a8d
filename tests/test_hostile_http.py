"""Hostile inbound HTTP headers on a real WSGI server (127.0.0.1): answered, never parented."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelfin.instrument.transports.wsgi import middleware

PAN = "4111111111111111"
TP = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"paid"]


@pytest.fixture
def server(spans: InMemorySpanExporter) -> Iterator[WSGIServer]:
    httpd = make_server("127.0.0.1", 0, middleware(_app), handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


HOSTILE = {
    "oversized": b"traceparent: " + b"0" * 60_000 + b"\r\n",
    "binary": b"traceparent: \xff\xfe\x00junk\r\nbaggage: k=\xff\r\n",
    "duplicate": b"traceparent: " + TP + b"\r\ntraceparent: " + TP[:-2] + b"00\r\n",
    "b3 garbage": b"b3: " + b"z" * 32 + b"-" + b"1" * 16 + b"\r\n",
    "tracestate only": b"tracestate: a=b\r\n",
}


@pytest.mark.parametrize("headers", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_headers_answered_without_parent(
    server: WSGIServer, spans: InMemorySpanExporter, headers: bytes
) -> None:
    """Each hostile request gets the app's 200 and a server span that starts a new trace."""
    reply = _raw(server.server_port, b"GET /pay HTTP/1.0\r\n" + headers + b"\r\n")
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"paid")
    (span,) = spans.get_finished_spans()
    assert span.parent is None


def test_card_number_in_url_and_baggage_is_masked(
    server: WSGIServer, spans: InMemorySpanExporter
) -> None:
    """A card number in the query string and in baggage never reaches the span unmasked."""
    request = (
        b"GET /pay?card=" + PAN.encode() + b" HTTP/1.0\r\n"
        b"baggage: " + PAN.encode() + b"=1,card=" + PAN.encode() + b"\r\n\r\n"
    )
    assert _raw(server.server_port, request).endswith(b"paid")
    (span,) = spans.get_finished_spans()
    text = repr((span.name, dict(span.attributes or {}), span.status.description))
    assert PAN not in text
