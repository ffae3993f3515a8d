"""The official OTLP exporters for logs and metrics, chosen by OpenTelemetry's own variables.

Imported only when ``OTEL_LOGS_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` say ``otlp``: the
exporter packages (and gRPC) cost start-up time a service that does not use them should not pay.
The exporters read their endpoint, headers, timeout and TLS settings themselves
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``, ...); otelfin only picks
the protocol, as the specification says: ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``, then
``OTEL_EXPORTER_OTLP_PROTOCOL``, else ``http/protobuf``.
"""

from __future__ import annotations

from typing import Any

from otelfin import _settings

__all__ = ["grpc_missing", "log_exporter", "metric_exporter", "protocol"]

_PROTOCOLS = ("http/protobuf", "grpc")


def protocol(signal: str) -> str:
    """The OTLP protocol for ``signal`` (``logs``, ``metrics``, ``traces``).

    ``http/json`` has no exporter in OpenTelemetry Python; asking for it (or a typo) is a
    ``ValueError`` naming the variable, never a silent switch to another protocol.
    """
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = (_settings.env_value(name) or "").lower()
        if value:
            if value not in _PROTOCOLS:
                raise ValueError(f"{name}={value!r} is not supported: use grpc or http/protobuf")
            return value
    return "http/protobuf"


def grpc_missing(signal: str, exc: ImportError) -> ValueError:
    """The error for OTLP over gRPC asked for without its exporter installed."""
    return ValueError(
        f"OTLP {signal} over gRPC was asked for (OTEL_EXPORTER_OTLP_PROTOCOL=grpc) but its "
        f"exporter is not installed ({exc}); pip install 'otelfin[otlp-grpc]', or set "
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf for OTLP over HTTP"
    )


def log_exporter() -> Any:
    """A new OTLP log exporter (HTTP or gRPC by :func:`protocol`)."""
    if protocol("logs") == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                OTLPLogExporter as GrpcLogExporter,
            )
        except ImportError as exc:
            raise grpc_missing("logs", exc) from None
        return GrpcLogExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter()


def metric_exporter() -> Any:
    """A new OTLP metric exporter (HTTP or gRPC by :func:`protocol`), cumulative."""
    if protocol("metrics") == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )
        except ImportError as exc:
            raise grpc_missing("metrics", exc) from None
        return GrpcMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()
