"""A real OTLP receiver on 127.0.0.1, over HTTP and gRPC, from the official protobuf definitions.

It decodes what the exporters send with the ``opentelemetry-proto`` messages (the Collector's
own definitions) and keeps every log record and metric data point it was sent, so tests can
compare them with what the service wrote. ``down()`` closes the port (connection refused, as a
restarting collector does) and ``up()`` opens the same port again.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


class Received:
    """What one receiver was sent, decoded (shared by its HTTP and gRPC fronts)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logs: list[Any] = []  # ExportLogsServiceRequest
        self.metrics: list[Any] = []  # ExportMetricsServiceRequest
        self.spans: list[Any] = []  # ExportTraceServiceRequest
        self.paths: list[str] = []

    def log_records(self) -> Iterator[tuple[Any, Any]]:
        """(resource, record) for every log record received, in order."""
        with self.lock:
            requests = list(self.logs)
        for request in requests:
            for resource_logs in request.resource_logs:
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        yield resource_logs.resource, record

    def last_metrics(self) -> dict[str, Any]:
        """The latest data of each metric name received (cumulative: the latest is the total)."""
        latest: dict[str, Any] = {}
        with self.lock:
            requests = list(self.metrics)
        for request in requests:
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        latest[metric.name] = metric
        return latest


def attributes(items: Any) -> dict[str, Any]:
    """An OTLP KeyValue list as a dict of plain values."""
    out: dict[str, Any] = {}
    for kv in items:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


_ROUTES = {
    "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, "logs"),
    "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest, "metrics"),
    "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, "spans"),
}
_RESPONSES = {
    "logs": logs_service_pb2.ExportLogsServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "spans": trace_service_pb2.ExportTraceServiceResponse,
}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        received: Received = self.server.received  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        route = _ROUTES.get(self.path)
        if route is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        message, kind = route
        with received.lock:
            getattr(received, kind).append(message.FromString(body))
            received.paths.append(self.path)
        answer = _RESPONSES[kind]().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        return


class HttpReceiver:
    """OTLP/HTTP (protobuf) on ``/v1/logs``, ``/v1/metrics`` and ``/v1/traces``."""

    def __init__(self, port: int = 0) -> None:
        self.received = Received()
        self.port = port
        self.server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        server.received = self.received  # type: ignore[attr-defined]
        self.port = server.server_address[1]
        self.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def down(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> HttpReceiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()


class GrpcReceiver:
    """OTLP/gRPC: the LogsService, MetricsService and TraceService on one port."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        self.received = received = Received()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                with received.lock:
                    received.logs.append(request)
                return logs_service_pb2.ExportLogsServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                with received.lock:
                    received.metrics.append(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                with received.lock:
                    received.spans.append(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GrpcReceiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(grace=None)
