"""Shared plumbing for otelfin's own instrumentors: the patch idiom and consumer process spans."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from otelfin import _internal

__all__ = [
    "Patch",
    "patch",
    "unpatch",
    "open_process_span",
    "close_process_span",
    "PullConsumer",
    "current_task",
    "messaging_attributes",
]

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


def current_task() -> object:
    """The running asyncio task (the owner of an async consumer's process span), or None."""
    import asyncio

    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


def messaging_attributes(system: str, destination: str, operation: str) -> dict[str, Any]:
    """The messaging semantic-convention attributes every messaging span carries."""
    return {
        "messaging.system": system,
        "messaging.destination.name": destination,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
    }


#: What a pull consumer's message continues: ``(parent context, destination, attributes)``.
Described = tuple[Any, str, dict[str, Any]]


class PullConsumer:
    """The process spans of one pull-style consumer: :meth:`finish` before the library is asked
    for the next message (and when it closes), :meth:`start` with the message it returned.

    ``owner`` names the thread or task that reads (``threading.get_ident`` or
    :func:`current_task`); ``describe(holder, message)`` says what the message continues. Both
    steps are contained: a failure is reported (``transports.<name>.finish`` or the ``where``
    given to :meth:`start`) and the host's message is returned untouched.
    """

    def __init__(
        self,
        name: str,
        owner: Callable[[], object],
        describe: Callable[[Any, Any], Described],
    ) -> None:
        self.scope = f"otelfin.instrument.transports.{name}"
        self.finish_where = f"transports.{name}.finish"
        self.owner = owner
        self.describe = describe

    def finish(self, holder: Any) -> None:
        """End the span of the message ``holder`` handed out last, if any."""
        try:
            close_process_span(holder, self.owner())
        except Exception as exc:
            _internal.report(self.finish_where, exc)

    def start(self, holder: Any, message: Any, where: str) -> None:
        """Open the CONSUMER ``process <destination>`` span of ``message``, current from now."""
        try:
            parent, destination, attributes = self.describe(holder, message)
            open_process_span(
                holder, parent, f"process {destination}", attributes, self.owner(), self.scope
            )
        except Exception as exc:
            _internal.report(where, exc)

    # wrapt wrappers (``wrapper(wrapped, instance, args, kwargs)``) for the usual cases; a
    # ``holder`` maps the wrapped object to the one that holds the span.

    def reader(self, where: str) -> Callable[..., Any]:
        """A wrapper for a method returning the next message (``__next__``)."""

        def read(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            self.finish(instance)
            message = wrapped(*args, **kwargs)
            self.start(instance, message, where)
            return message

        return read

    def async_reader(
        self, where: str, holder: Callable[[Any], Any] = lambda instance: instance
    ) -> Callable[..., Awaitable[Any]]:
        """A wrapper for a coroutine method returning the next message (``__anext__``)."""

        async def read(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            target = holder(instance)
            self.finish(target)
            message = await wrapped(*args, **kwargs)
            self.start(target, message, where)
            return message

        return read

    def closer(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """A wrapper for a method that ends the reading (``close``)."""
        self.finish(instance)
        return wrapped(*args, **kwargs)

    async def async_closer(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """A wrapper for a coroutine method that ends the reading (``close``, ``unsubscribe``)."""
        self.finish(instance)
        return await wrapped(*args, **kwargs)
