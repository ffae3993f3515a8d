"""OTLP over gRPC when the protocol says so: a real TraceService on 127.0.0.1 counts the spans."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

import otelfin
from otelfin import _config


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.names: list[str] = []
        self.attributes: list[str] = []
        self.got = threading.Event()

    def Export(self, request: Any, context: Any) -> Any:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.names.append(span.name)
                    self.attributes.extend(str(a.value) for a in span.attributes)
        self.got.set()
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[_Collector, int]]:
    """A gRPC TraceService on a free 127.0.0.1 port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = _Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize(
    ("variable", "processor"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "simple"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "simple"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "batch"),
    ],
)
def test_grpc_protocol_exports_over_grpc(
    collector: tuple[_Collector, int],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    processor: str,
) -> None:
    """protocol=grpc sends every span, scrubbed, to the gRPC collector (not OTLP/HTTP); with
    the batch processor the exporter is built by the first export (here shutdown's flush)."""
    servicer, port = collector
    monkeypatch.setenv(variable, "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    config = otelfin.configure("grpc-export", span_processor=processor)
    assert config.traces_exporter == "otlp"

    @otelfin.traced(name="authorise", attributes={"card": "card"})
    def authorise(card: str) -> str:
        return "ok"

    for _ in range(3):
        authorise("4111 1111 1111 1111")
    otelfin.shutdown()
    assert servicer.got.wait(10)
    assert servicer.names == ["authorise"] * 3
    assert not any("4111 1111 1111 1111" in a for a in servicer.attributes)
    assert any("1111" in a for a in servicer.attributes)


def test_missing_grpc_exporter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the otlp-grpc extra, configure() says what to install; it never falls back."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    with pytest.raises(ValueError, match=r"pip install 'otelfin\[otlp-grpc\]'"):
        otelfin.configure("grpc-missing", traces_exporter="otlp")
    _config.reset()


def test_unsupported_protocol_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """http/json (no Python exporter) or a typo is a ValueError, not a silent HTTP export."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="http/json"):
        otelfin.configure("grpc-typo", traces_exporter="otlp")
    _config.reset()
