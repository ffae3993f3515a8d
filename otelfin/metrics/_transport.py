"""RED metrics for transport spans (HTTP/gRPC servers, message consumers).

``@traced`` feeds the RED metrics through its call observer. Transport instrumentations (the
official ``opentelemetry-instrumentation-*`` packages and otelfin's own) produce spans, not
calls, so this span processor turns every finished SERVER or CONSUMER span into one
observation: outcome from ``otelfin.outcome`` (set just before the span ended, see
:mod:`otelfin._outcome`), ``error_code`` from ``otelfin.error_code``, and
operation = ``<method> <http.route>`` for an HTTP server span with a route template, the method
alone for one without (the span name of a bare WSGI/ASGI middleware holds the raw path, one
series per payment id), the span name otherwise. CLIENT and PRODUCER spans (database
statements, HTTP client calls, publishes) feed the dependency histogram by system and peer, so
a P99 report can tell the code's tail from a dependency's. Unsampled spans reach this
processor too: configure() wraps the sampler so measured span kinds are recorded, not exported
(see ``otelfin._sampling``).

A SERVER or CONSUMER span is a request unless its local parent is a SERVER or CONSUMER span
itself (a nested handler span); such a nested span is measured as a function, so one request
is one observation of the request histogram.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode, get_current_span

from otelfin import _internal, _outcome
from otelfin._keep import operation_of
from otelfin._peer import peer_of, stamp_span
from otelfin.metrics._red import RedMetrics

__all__ = ["TransportMetricsProcessor"]

# Tuples, not sets: SpanKind is an Enum whose __hash__ runs in Python (these run on every span).
_INCOMING = (SpanKind.SERVER, SpanKind.CONSUMER)
_OUTGOING = (SpanKind.CLIENT, SpanKind.PRODUCER)
# Semantic-convention keys, newest first, for a dependency's system (its peer: otelfin._peer).
_SYSTEM_KEYS = ("db.system.name", "db.system", "messaging.system", "rpc.system")


def _first(attributes: Mapping[str, object], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = attributes.get(key)
        if value:
            return str(value)
    return ""


def _system(attributes: Mapping[str, object]) -> str:
    system = _first(attributes, _SYSTEM_KEYS)
    if not system and ("http.request.method" in attributes or "http.method" in attributes):
        return "http"
    return system


def _channel(attributes: Mapping[str, object]) -> str | None:
    """The ``channel`` label, by the same rule as ``@traced``: ``channel`` or any ``*.channel``."""
    # Keys only (items() of a Mapping that is not a dict goes through the mixin); the
    # substring test first: a dozen keys, none of them a channel, is the common case.
    for key in attributes:
        if "channel" in key and (key == "channel" or key.endswith(".channel")):
            return str(attributes[key])
    return None


def outcome_of(span: ReadableSpan, attributes: Mapping[str, object] | None = None) -> str:
    """The span's ``otelfin.outcome``, or the same decision made from its final state
    (``attributes``: the span's, when the caller read them already)."""
    if attributes is None:
        attributes = _outcome.attributes_of(span)
    value = attributes.get(_outcome.ATTRIBUTE)
    if isinstance(value, str) and value in _outcome.OUTCOMES:
        return value
    return _outcome.of_span(attributes, span.status.status_code)


# Nested incoming spans waiting for their end; past this many (spans that never end) the
# oldest are forgotten, which only costs those a request observation instead of a function one.
_MAX_NESTED = 4096


class TransportMetricsProcessor(SpanProcessor):
    """Records incoming transport spans into the RED metrics ``target()`` returns."""

    def __init__(self, target: Callable[[], tuple[RedMetrics, str] | None]) -> None:
        self._target = target
        self._nested: dict[int, None] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.kind not in _INCOMING:
            return
        parent = span.parent
        if parent is None or parent.is_remote:
            return
        try:
            parent_span = get_current_span(parent_context)
            if getattr(parent_span, "kind", None) in _INCOMING:
                nested = self._nested
                if len(nested) >= _MAX_NESTED:
                    nested.pop(next(iter(nested)), None)
                nested[span.context.span_id] = None
        except Exception as exc:
            _internal.report("metrics.transport_span_start", exc)

    def _on_ending(self, span: Span) -> None:
        # The SDK calls this before any processor's on_end: the exported span and the
        # dependency series then name the same peer (see otelfin._peer).
        if span.kind in _OUTGOING:
            try:
                stamp_span(span)
            except Exception as exc:
                _internal.report("metrics.peer_stamp", exc)

    def on_end(self, span: ReadableSpan) -> None:
        outgoing = span.kind in _OUTGOING
        if not outgoing and span.kind not in _INCOMING:
            return
        scope = span.instrumentation_scope
        if scope is not None and scope.name == "otelfin":
            return  # a @traced call (incoming or kind="client"): the call observer records it
        target = self._target()
        if target is None or span.start_time is None or span.end_time is None:
            return
        metrics, service = target
        try:
            seconds = (span.end_time - span.start_time) / 1e9
            attributes = _outcome.attributes_of(span)
            if outgoing:
                metrics.observe_dependency(
                    service,
                    _system(attributes),
                    peer_of(attributes),
                    span.name,
                    seconds,
                    failed=span.status.status_code is StatusCode.ERROR,
                    span=span,  # type: ignore[arg-type]
                    outcome=outcome_of(span, attributes),
                )
                return
            code = attributes.get("otelfin.error_code")
            channel = _channel(attributes)
            labels = {"channel": channel} if channel is not None else {}
            nested = bool(self._nested) and (
                span.context is not None and self._nested.pop(span.context.span_id, False) is None
            )
            metrics.observe(
                service,
                operation_of(span.name, attributes),
                seconds,
                error_code=code if isinstance(code, str) else None,
                labels=labels,
                span=span,  # type: ignore[arg-type]
                outcome=outcome_of(span, attributes),
                entry=not nested,
            )
        except Exception as exc:
            _internal.report(
                "metrics.dependency_span" if outgoing else "metrics.transport_span", exc
            )

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
