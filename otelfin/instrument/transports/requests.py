"""requests: client spans and context injection on every ``Session.send``.

The official ``opentelemetry-instrumentation-requests`` passes otelfin's tests as it is; it
injects through the global propagator, which ``otelfin.configure()`` has made otelfin's.
"""

from __future__ import annotations

from typing import Any

from otelfin.instrument.transports._base import OfficialInstrumentor

__all__ = ["install", "uninstall"]

_official = OfficialInstrumentor(
    "opentelemetry.instrumentation.requests", "RequestsInstrumentor", "requests", "http"
)


def install(**kwargs: Any) -> bool:
    """Instrument requests (no-op when it is not installed); True when active."""
    return _official.install(**kwargs)


def uninstall() -> None:
    """Remove what :func:`install` added."""
    _official.uninstall()
