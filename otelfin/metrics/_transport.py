"""RED metrics for transport spans (HTTP/gRPC servers, message consumers).

``@traced`` feeds the RED metrics through its call observer. Transport instrumentations (the
official ``opentelemetry-instrumentation-*`` packages and otelfin's own) produce spans, not
calls, so this span processor turns every finished SERVER or CONSUMER span into one
observation: operation = span name, outcome from the span status, ``error_code`` from
``otelfin.error_code``. Limit: a processor only sees *sampled* spans, so with a sampler below
100% the transport series count the sampled share only (``@traced`` series count every call).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from otelfin import _internal
from otelfin.metrics._red import RedMetrics

__all__ = ["TransportMetricsProcessor"]

_INCOMING = frozenset({SpanKind.SERVER, SpanKind.CONSUMER})


def _channel(attributes: Mapping[str, object]) -> str | None:
    """The ``channel`` label, by the same rule as ``@traced``: ``channel`` or any ``*.channel``."""
    for key, value in attributes.items():
        if key == "channel" or key.endswith(".channel"):
            return str(value)
    return None


class TransportMetricsProcessor(SpanProcessor):
    """Records incoming transport spans into the RED metrics ``target()`` returns."""

    def __init__(self, target: Callable[[], tuple[RedMetrics, str] | None]) -> None:
        self._target = target

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.kind not in _INCOMING:
            return
        scope = span.instrumentation_scope
        if scope is not None and scope.name == "otelfin":
            return  # @traced spans are already recorded by the call observer
        target = self._target()
        if target is None or span.start_time is None or span.end_time is None:
            return
        metrics, service = target
        try:
            attributes = span.attributes or {}
            code = attributes.get("otelfin.error_code")
            channel = _channel(attributes)
            labels = {"channel": channel} if channel is not None else {}
            metrics.observe(
                service,
                span.name,
                (span.end_time - span.start_time) / 1e9,
                error_code=code if isinstance(code, str) else None,
                failed=span.status.status_code is StatusCode.ERROR,
                labels=labels,
                span=span,  # type: ignore[arg-type]
            )
        except Exception as exc:
            _internal.report("metrics.transport_span", exc)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
