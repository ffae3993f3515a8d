"""otelfin: OpenTelemetry tracing, metrics and logs for payment services.

The public surface is small on purpose::

    import otelfin
    otelfin.configure(service_name="payment-gateway")

    @otelfin.traced(attributes={"payment.channel": "channel"})
    def process_payment(req, channel): ...

    log = otelfin.get_logger()
    otelfin.audit.record("card_data.read", actor="alice", outcome="success")
"""

from __future__ import annotations

from typing import Any

from otelfin import audit
from otelfin._config import configure, get_config, shutdown
from otelfin._errors import OtelfinError
from otelfin._version import __version__
from otelfin.instrument import traced
from otelfin.pillar import Config

__all__ = [
    "configure",
    "shutdown",
    "traced",
    "get_logger",
    "OtelfinError",
    "Config",
    "get_config",
    "audit",
    "__version__",
]


def get_logger(**bound: Any) -> Any:
    """A structlog logger writing JSON lines through otelfin's chain (see otelfin.logging)."""
    from otelfin.logging import get_logger as _get_logger

    return _get_logger(**bound)
