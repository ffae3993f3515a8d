"""The official OTLP exporters for logs and metrics, chosen by OpenTelemetry's own variables.

Imported only when ``OTEL_LOGS_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` say ``otlp``: the
exporter packages (and gRPC) cost start-up time a service that does not use them should not pay.
The exporters read their endpoint, headers, timeout and TLS settings themselves
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``, ...); otelfin only picks
the protocol, as the specification says: ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``, then
``OTEL_EXPORTER_OTLP_PROTOCOL``, else ``http/protobuf``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from otelfin import _settings

__all__ = ["follow", "forget", "grpc_missing", "log_exporter", "metric_exporter", "protocol"]

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


def _exporter(signal: str, module: str, name: str) -> Any:
    """A new ``name`` from the official exporter ``module`` of the protocol ``signal`` uses.

    The logs exporter's modules are underscore-named (``_log_exporter``): OpenTelemetry
    Python's logs signal still lives under private names, there is no public path to it.
    """
    if protocol(signal) == "grpc":
        try:
            grpc = importlib.import_module(f"opentelemetry.exporter.otlp.proto.grpc.{module}")
        except ImportError as exc:
            raise grpc_missing(signal, exc) from None
        return getattr(grpc, name)()
    http = importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{module}")
    return getattr(http, name)()


def log_exporter() -> Any:
    """A new OTLP log exporter (HTTP or gRPC by :func:`protocol`)."""
    return _exporter("logs", "_log_exporter", "OTLPLogExporter")


def metric_exporter() -> Any:
    """A new OTLP metric exporter (HTTP or gRPC by :func:`protocol`), cumulative."""
    return _exporter("metrics", "metric_exporter", "OTLPMetricExporter")


# --- what the OTLP senders do in a forked child -------------------------------------------------

#: The log shippers and metric pushers running in this process, each with the place its
#: failure in a forked child is reported under; ``forked()`` gives the child its own thread
#: and exporter (the parent's HTTP session and locks are not the child's).
_followed: list[tuple[Any, str]] = []


class _State:
    __slots__ = ("hooked",)

    def __init__(self) -> None:
        self.hooked = False  # register_at_fork has no way to unregister: hook once


_state = _State()


def follow(sender: Any, where: str) -> None:
    """Call ``sender.forked()`` in every child forked until :func:`forget` (contained: a failure
    is reported under ``where``)."""
    _followed.append((sender, where))
    if not _state.hooked and hasattr(os, "register_at_fork"):
        _state.hooked = True
        os.register_at_fork(after_in_child=_after_fork_in_child)


def forget(sender: Any) -> None:
    """Stop following ``sender`` (it is being closed)."""
    _followed[:] = [(s, where) for s, where in _followed if s is not sender]


def _after_fork_in_child() -> None:
    from otelfin import _internal

    for sender, where in list(_followed):
        try:
            sender.forked()
        except Exception as exc:
            _internal.report(where, exc)
