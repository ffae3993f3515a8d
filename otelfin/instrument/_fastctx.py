"""Making a span current with as little machinery as possible.

``opentelemetry.context.attach(trace.set_span_in_context(span))`` goes through three generic
layers (set_value, get_current, the runtime-context object) on every call. When the runtime
context is OpenTelemetry's default contextvars one, which is the case unless
``OTEL_PYTHON_CONTEXT`` names another, we talk to its ContextVar directly; the effect on the
context is identical. Anything else falls back to the public API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context

__all__ = [
    "REQUEST_KEY",
    "SPAN_KEY",
    "attach_context",
    "context_with",
    "context_with_request",
    "current_context",
    "detach",
    "span_in",
]

#: Context key of the current request's span (the entry span ``@traced`` saw last).
REQUEST_KEY = context_api.create_key("otelfin.request_span")
#: The key under which a Context holds its current span (derived, not imported: the same in
#: every runtime-context implementation).
SPAN_KEY: str = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))

current_context: Callable[[], Context]
span_in: Callable[[Context], Any]
context_with: Callable[[Any, Context], Context]
context_with_request: Callable[[Any, Context, Any], Context]
attach_context: Callable[[Context], Any]
detach: Callable[[Any], Any]

try:
    from opentelemetry.context import _RUNTIME_CONTEXT
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
    from opentelemetry.trace.propagation import _SPAN_KEY

    _var = (
        _RUNTIME_CONTEXT._current_context
        if type(_RUNTIME_CONTEXT) is ContextVarsRuntimeContext
        else None
    )
except (ImportError, AttributeError):  # pragma: no cover - a different OpenTelemetry layout
    _var = None

if _var is not None:
    current_context = _var.get

    def span_in(base: Context) -> Any:
        """The span set in ``base``, or None."""
        return base.get(_SPAN_KEY)

    def context_with(span: Any, base: Context) -> Context:
        """``base`` with ``span`` as the current span."""
        values = base.copy()
        values[_SPAN_KEY] = span
        return Context(values)

    def context_with_request(span: Any, base: Context, request: Any) -> Context:
        """``base`` with ``span`` as the current span and ``request`` as the request's span."""
        values = base.copy()
        values[_SPAN_KEY] = span
        values[REQUEST_KEY] = request
        return Context(values)

    attach_context = _var.set
    detach = _var.reset
else:  # pragma: no cover - exercised only with a custom OTEL_PYTHON_CONTEXT
    current_context = context_api.get_current

    def span_in(base: Context) -> Any:
        """The span set in ``base``, or None."""
        span = trace.get_current_span(base)
        return span if span.get_span_context().is_valid else None

    def context_with(span: Any, base: Context) -> Context:
        """``base`` with ``span`` as the current span."""
        return trace.set_span_in_context(span, base)

    def context_with_request(span: Any, base: Context, request: Any) -> Context:
        """``base`` with ``span`` as the current span and ``request`` as the request's span."""
        return trace.set_span_in_context(span, context_api.set_value(REQUEST_KEY, request, base))

    attach_context = context_api.attach
    detach = context_api.detach
