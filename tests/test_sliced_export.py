"""The OTLP/HTTP exporter otelfin builds encodes a batch in slices, and sends one valid request;
``configure()`` builds it on the first export, not at start-up, and loses no span doing so."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otelfin
from otelfin import _config, _internal
from otelfin._exporters import ExportPipeline, _accounting, _sliced
from otelfin._exporters._otlp import DeferredSpanExporter, OTLPSpanExporterFactory
from otelfin._exporters._wire import encode_request


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
    """100 spans: one POST holding all 100, in order, the same bytes the official encoder
    gives; the encoder paused between its slices (every SLICE spans)."""
    spans = _spans(100)
    pauses: list[float] = []
    monkeypatch.setattr(_accounting.time, "sleep", pauses.append)
    # No other test's pipeline may count as a backlog here (the slices then run unpaused).
    monkeypatch.setattr(_accounting, "_live", weakref.WeakSet())
    exporter = _sliced.SlicedOTLPSpanExporter(endpoint=collector)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    (body,) = _Collector.bodies
    expected = [(s.name, s.context.span_id.to_bytes(8, "big")) for s in spans]
    assert _decoded(body) == expected
    assert body == encode_spans(spans).SerializePartialToString()
    assert len(pauses) == 99 // _sliced.SLICE and all(0 < p <= 0.001 for p in pauses)
    exporter.shutdown()


def test_a_small_batch_goes_through_the_wire_encoder(
    collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of 3 spans (one request's worth) is written by otelfin's wire encoder too, not
    the official one, and is the official encoder's bytes."""
    spans = _spans(3)
    written: list[bytes] = []

    def spy(batch: list[ReadableSpan], **slicing: object) -> bytes:
        written.append(encode_request(batch, **slicing))  # type: ignore[arg-type]
        return written[-1]

    monkeypatch.setattr(_sliced, "encode_request", spy)
    exporter = _sliced.SlicedOTLPSpanExporter(endpoint=collector)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert _Collector.bodies == written == [encode_spans(spans).SerializePartialToString()]
    exporter.shutdown()


def test_a_batch_the_wire_encoder_refuses_is_sent_by_the_official_encoder(
    collector: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An attribute value the wire encoder does not write (an int beyond int64, set on a span
    by hand): the batch still goes out, encoded by the official encoder in slices, which
    drops that attribute as it always did; every span arrives."""
    spans = _spans(20)
    spans[5] = ReadableSpan(
        "odd",
        context=spans[5].context,
        resource=spans[5].resource,
        attributes={"n": 2**64},
        instrumentation_scope=spans[5].instrumentation_scope,
    )
    exporter = _sliced.SlicedOTLPSpanExporter(endpoint=collector)
    with caplog.at_level("CRITICAL"):
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    (body,) = _Collector.bodies
    assert [name for name, _ in _decoded(body)] == [s.name for s in spans]
    assert body == _sliced.official_in_slices(spans)
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


def _deferred() -> tuple[ExportPipeline, DeferredSpanExporter]:
    processor = _config._state.processor
    assert processor is not None
    pipeline = processor.delegate
    assert isinstance(pipeline, ExportPipeline)
    assert isinstance(pipeline.exporter, DeferredSpanExporter)
    return pipeline, pipeline.exporter


def _end_spans(names: list[str]) -> None:
    tracer = trace.get_tracer("test")
    for name in names:
        with tracer.start_as_current_span(name):
            pass


def _exported_names() -> list[str]:
    return sorted(name for body in _Collector.bodies for name, _ in _decoded(body))


def test_configure_builds_the_otlp_exporter_at_the_first_export(
    collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configure() leaves the OTLP exporter unbuilt; spans ended before the first export wait
    in the batch queue, and every one reaches the collector once the export builds it."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # no timed export during the test
    otelfin.configure("svc")
    _, exporter = _deferred()
    assert exporter.exporter is None
    names = [f"s{i:02d}" for i in range(20)]
    _end_spans(names)
    assert exporter.exporter is None and _Collector.bodies == []
    assert _config.force_flush(10)
    assert isinstance(exporter.exporter, _sliced.SlicedOTLPSpanExporter)
    assert _exported_names() == names


def test_the_simple_processor_builds_the_exporter_at_configure(
    collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """span_processor="simple" exports on the caller's thread, so configure() builds the
    exporter as it always did; spans are sent as they end."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector)
    otelfin.configure("svc", span_processor="simple")
    _, exporter = _deferred()
    assert isinstance(exporter.exporter, _sliced.SlicedOTLPSpanExporter)
    _end_spans(["one"])
    assert _exported_names() == ["one"]


def test_shutdown_before_the_first_export_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that never exports never imports the exporter, and an export after shutdown
    fails as the official exporter's does."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    otelfin.configure("svc")
    _, exporter = _deferred()
    otelfin.shutdown()
    assert exporter.exporter is None
    assert exporter.export(_spans(1)) is SpanExportResult.FAILURE
    assert exporter.exporter is None


@pytest.mark.otelfin_internal_errors
def test_a_failed_build_fails_its_export_and_is_tried_again(
    collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build that raises (an import failing for a moment, a credential provider not yet
    installed) fails that export, counted, and the next export builds and sends."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector)
    failures = [RuntimeError("no credential provider 'vault'")]

    def factory() -> SpanExporter:
        if failures:
            raise failures.pop()
        return OTLPSpanExporterFactory()()

    exporter = DeferredSpanExporter(factory)
    pipeline = ExportPipeline(exporter)
    assert pipeline.counting.export(_spans(1)) is SpanExportResult.FAILURE
    assert exporter.exporter is None
    dropped, failed = _internal.export_health()
    assert failed == {"exception": 1} and dropped == {"export_failed": 1}
    assert _internal.internal_error_counts() == {"exporter.export[OTLPSpanExporter (not built)]": 1}
    assert pipeline.counting.export(_spans(1)) is SpanExportResult.SUCCESS
    assert isinstance(exporter.exporter, _sliced.SlicedOTLPSpanExporter)
    assert len(_Collector.bodies) == 1
    pipeline.shutdown()


def test_a_forked_child_gets_its_own_deferred_exporter(
    collector: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After fork the child gets a new, unbuilt exporter (never the parent's HTTP session),
    which builds on the child's first export and sends its spans."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    otelfin.configure("svc")
    pipeline, parent = _deferred()
    built = parent.build()
    pipeline._forked()  # what otelfin's at-fork hook runs in a child
    _, child = _deferred()
    assert child is not parent and child.exporter is None
    assert pipeline.counting.inner is child
    _end_spans(["in-child"])
    assert _config.force_flush(10)
    assert child.exporter is not None and child.exporter is not built
    assert _exported_names() == ["in-child"]
