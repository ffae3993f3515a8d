"""Shared plumbing for otelfin's own instrumentors: the patch idiom and consumer process spans."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Patch", "patch", "unpatch", "open_process_span", "close_process_span"]

#: ``(module, "Class.method", wrapper)``: what an instrumentor wraps, declared once for both
#: directions. ``wrapper(wrapped, instance, args, kwargs)`` is wrapt's signature.
Patch = tuple[str, str, Any]


def patch(patches: tuple[Patch, ...]) -> None:
    """Wrap each target with ``wrapt.wrap_function_wrapper`` (called from ``_instrument``)."""
    import wrapt

    for module, name, wrapper in patches:
        wrapt.wrap_function_wrapper(module, name, wrapper)


def unpatch(patches: tuple[Patch, ...]) -> None:
    """Undo :func:`patch` with OpenTelemetry's ``unwrap`` (called from ``_uninstrument``)."""
    from opentelemetry.instrumentation.utils import unwrap

    for module, name, _ in reversed(patches):
        owner, _, attr = name.rpartition(".")
        target: Any = importlib.import_module(module)
        for part in owner.split(".") if owner else ():
            target = getattr(target, part)
        unwrap(target, attr)


# --- a process span for pull-style consumers ----------------------------------------------------
# Iterators (aio-pika's queue.iterator(), kafka-python's ``for record in consumer``) hand a
# message to code that runs after the library call returns, so no wrapper can enclose the work.
# The span for one message is therefore opened when the iterator returns it, made current in the
# consumer's own thread or task, and closed when the next message is asked for or the iterator
# closes. ``owner`` identifies that thread or task: the context is only detached where it was
# attached (contextvars refuses anything else), the span is ended in any case.

_PROCESS = "_otelfin_process_scope"


def open_process_span(
    holder: Any,
    parent: Any,
    name: str,
    attributes: dict[str, Any],
    owner: object,
    scope: str,
) -> None:
    """Start a CONSUMER span under ``parent`` and make it current; stored on ``holder``."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    span = trace.get_tracer(scope).start_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    )
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    holder.__dict__[_PROCESS] = (span, token, owner)


def close_process_span(holder: Any, owner: object) -> None:
    """End the span :func:`open_process_span` stored on ``holder``, if any."""
    from opentelemetry import context as otel_context

    state = holder.__dict__.pop(_PROCESS, None)
    if state is None:
        return
    span, token, opened_by = state
    try:
        if opened_by == owner:
            otel_context.detach(token)
    finally:
        span.end()
