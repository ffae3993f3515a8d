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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# ``import otelfin`` imports nothing else: each name loads its module on first use (PEP 562),
# so a service pays for the SDK, the scrubber and the catalogue when it configures or decorates,
# not when it imports (benchmarks/bench_startup.py measures both).
_LAZY = {
    "Config": "otelfin.pillar",
    "configure": "otelfin._config",
    "get_config": "otelfin._config",
    "shutdown": "otelfin._config",
    "OtelfinError": "otelfin._errors",
    "traced": "otelfin.instrument",
    "__version__": "otelfin._version",
}


def __getattr__(name: str) -> Any:
    import importlib

    from otelfin._burst import import_burst

    module = _LAZY.get(name)
    if module is None:
        try:  # a subpackage (otelfin.audit, otelfin.logging, ...) after a plain import
            with import_burst():
                return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    with import_burst():  # the SDK, the scrubber, the catalogue: see otelfin._burst
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def get_logger(**bound: Any) -> Any:
    """A structlog logger writing JSON lines through otelfin's chain (see otelfin.logging)."""
    from otelfin.logging import get_logger as _get_logger

    return _get_logger(**bound)
