"""The OTLP/HTTP exporter otelfin builds encodes a batch in slices, and sends one valid request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelfin._exporters import _sliced
from otelfin._exporters._otlp import OTLPSpanExporterFactory


class _Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).bodies.append(body)
        self.send_response(type(self).status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[str]:
    _Collector.bodies = []
    _Collector.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    server.shutdown()
    server.server_close()


def _spans(n: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    for i in range(n):
        with tracer.start_as_current_span(f"s{i}", attributes={"i": i}):
            pass
    return list(memory.get_finished_spans())


def _decoded(body: bytes) -> list[tuple[str, bytes]]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return [
        (span.name, span.span_id)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def test_a_batch_is_one_request_encoded_in_slices(
    collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 spans: one POST holding all 100, in order, the same spans the official encoder
    gives; the encoder paused between its slices of 8 (12 pauses)."""
    spans = _spans(100)
    pauses: list[float] = []
    monkeypatch.setattr(_sliced.time, "sleep", pauses.append)
    exporter = _sliced.SlicedOTLPSpanExporter(endpoint=collector)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    (body,) = _Collector.bodies
    expected = [(s.name, s.context.span_id.to_bytes(8, "big")) for s in spans]
    assert _decoded(body) == expected
    assert len(pauses) == 12 and all(0 < p <= 0.001 for p in pauses)
    exporter.shutdown()


def test_a_refused_request_is_a_failure(collector: str) -> None:
    """A collector answering 400 (not retryable) makes the export a FAILURE."""
    _Collector.status = 400
    exporter = _sliced.SlicedOTLPSpanExporter(endpoint=collector)
    assert exporter.export(_spans(20)) is SpanExportResult.FAILURE
    exporter.shutdown()


def test_without_the_client_the_official_export_runs(collector: str) -> None:
    """When this exporter version keeps no HTTP client where expected, the official export
    path sends the batch instead (one request, every span)."""
    exporter = _sliced.SlicedOTLPSpanExporter(endpoint=collector)
    exporter.__dict__["_client_backup"] = exporter.__dict__.pop("_client")
    exporter.__dict__["_client"] = None
    with pytest.raises(AttributeError):
        exporter.export(_spans(20))  # the official path needs its client: proves it ran
    exporter.__dict__["_client"] = exporter.__dict__.pop("_client_backup")
    assert exporter.export(_spans(20)) is SpanExportResult.SUCCESS
    assert len(_decoded(_Collector.bodies[-1])) == 20
    exporter.shutdown()


def test_configure_builds_the_sliced_exporter_for_otlp_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTLP over HTTP (the default protocol) gets the sliced exporter."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    exporter = OTLPSpanExporterFactory()()
    assert isinstance(exporter, _sliced.SlicedOTLPSpanExporter)
    exporter.shutdown()
