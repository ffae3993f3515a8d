"""gRPC: client and server spans, sync and ``grpc.aio``, unary and streaming.

The four official instrumentors of ``opentelemetry-instrumentation-grpc`` pass otelfin's tests
(metadata is read by otelfin's propagator, which is case-insensitive and ignores ``-bin``
entries), so this module only switches them on and off together.
"""

from __future__ import annotations

from typing import Any

from otelfin.instrument.transports._base import OfficialInstrumentor

__all__ = ["install", "uninstall"]

_MODULE = "opentelemetry.instrumentation.grpc"
_official = [
    OfficialInstrumentor(_MODULE, name, "grpc", "grpc")
    for name in (
        "GrpcInstrumentorClient",
        "GrpcInstrumentorServer",
        "GrpcAioInstrumentorClient",
        "GrpcAioInstrumentorServer",
    )
]


def install(**kwargs: Any) -> bool:
    """Instrument grpc clients and servers, sync and aio; True when any is active."""
    results = [instrumentor.install(**kwargs) for instrumentor in _official]
    return any(results)


def uninstall() -> None:
    """Remove what :func:`install` added."""
    for instrumentor in reversed(_official):
        instrumentor.uninstall()
