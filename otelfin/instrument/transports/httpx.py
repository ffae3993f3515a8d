"""httpx: client spans and context injection for ``Client`` and ``AsyncClient``.

The official ``opentelemetry-instrumentation-httpx`` passes otelfin's tests as it is.
"""

from __future__ import annotations

from typing import Any

from otelfin.instrument.transports._base import OfficialInstrumentor

__all__ = ["install", "uninstall"]

_official = OfficialInstrumentor(
    "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor", "httpx", "http"
)


def install(**kwargs: Any) -> bool:
    """Instrument httpx (no-op when it is not installed); True when active."""
    return _official.install(**kwargs)


def uninstall() -> None:
    """Remove what :func:`install` added."""
    _official.uninstall()
