"""nats-py: publish, subscribe callbacks and request/reply continue one trace.

No official OpenTelemetry instrumentation exists for nats-py, so this is otelfin's own
``BaseInstrumentor`` (wrapt), registered as the ``nats`` ``opentelemetry_instrumentor``:

* ``Client.publish`` opens a PRODUCER ``publish <subject>`` span and writes the context into a
  copy of the message headers (the caller's dict is never changed; ``Msg.respond`` republishes
  the request's own headers, which are replaced by the responder's context).
* ``Client.subscribe(cb=...)`` wraps the callback: it runs inside a CONSUMER
  ``process <subject>`` span whose parent is the publisher's context.
* ``Client.request`` opens a CLIENT ``request <subject>`` span; the publish inside it injects
  that span's context without opening a second span.

* ``Subscription.next_msg()`` and ``async for msg in sub.messages``: each message gets a
  CONSUMER ``process <subject>`` span, current in the reading task until the next message is
  read or the subscription is unsubscribed (see ``_base.open_process_span``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Collection
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

from otelfin import _internal
from otelfin.instrument.transports._base import (
    Described,
    Patch,
    PullConsumer,
    current_task,
    messaging_attributes,
    patch,
    unpatch,
)

__all__ = ["NatsInstrumentor"]

_SCOPE = "otelfin.instrument.transports.nats"
_in_request: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "otelfin_nats_in_request", default=False
)


def _attributes(
    subject: str, operation: str, size: int | None, client: Any = None
) -> dict[str, Any]:
    attributes = messaging_attributes("nats", subject, operation)
    if size is not None:
        attributes["messaging.message.body.size"] = size
    url = getattr(client, "connected_url", None) if client is not None else None
    if url is not None and url.hostname:  # the server this client is connected to
        attributes["server.address"] = url.hostname
        if url.port:
            attributes["server.port"] = url.port
    return attributes


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


def _with_headers(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """kwargs for ``publish`` with the current context injected into a copy of the headers."""
    from otelfin.propagation import nats_headers_setter

    headers = _arg(args, kwargs, 3, "headers")
    carrier = dict(headers) if headers else {}
    propagate.inject(carrier, setter=nats_headers_setter)
    new_kwargs = dict(kwargs)
    new_kwargs["headers"] = carrier
    names = ("subject", "payload", "reply", "headers")
    for index, value in enumerate(args[:4]):
        if names[index] != "headers":
            new_kwargs.setdefault(names[index], value)
    return new_kwargs


def _size(payload: Any) -> int | None:
    return len(payload) if isinstance(payload, (bytes, bytearray, memoryview)) else None


def _error(span: trace.Span, exc: BaseException) -> None:
    # Runs while the host's exception propagates: recording it (which calls str(exc)) must
    # never replace that exception with one of its own.
    try:
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.set_attribute("error.type", type(exc).__qualname__)
        span.record_exception(exc)
    except Exception as err:
        _internal.report("transports.nats.error", err)


async def _publish(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span: trace.Span | None = None
    try:
        if _in_request.get():  # request() already opened the span; only inject
            call_kwargs = _with_headers(args, kwargs)
        else:
            subject = str(_arg(args, kwargs, 0, "subject"))
            size = _size(_arg(args, kwargs, 1, "payload"))
            span = trace.get_tracer(_SCOPE).start_span(
                f"publish {subject}",
                kind=SpanKind.PRODUCER,
                attributes=_attributes(subject, "send", size, instance),
            )
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                call_kwargs = _with_headers(args, kwargs)
            finally:
                otel_context.detach(token)
    except Exception as exc:
        _internal.report("transports.nats.publish", exc)
        if span is not None:
            span.end()
        return await wrapped(*args, **kwargs)
    if span is None:
        return await wrapped(**call_kwargs)
    with trace.use_span(
        span, end_on_exit=True, record_exception=False, set_status_on_exception=False
    ):
        try:
            return await wrapped(**call_kwargs)
        except BaseException as exc:
            _error(span, exc)
            raise


async def _request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        subject = str(_arg(args, kwargs, 0, "subject"))
        tracer = trace.get_tracer(_SCOPE)
        span = tracer.start_span(
            f"request {subject}",
            kind=SpanKind.CLIENT,
            attributes=_attributes(
                subject, "send", _size(_arg(args, kwargs, 1, "payload")), instance
            ),
        )
    except Exception as exc:
        _internal.report("transports.nats.request", exc)
        return await wrapped(*args, **kwargs)
    flag = _in_request.set(True)
    try:
        with trace.use_span(
            span, end_on_exit=True, record_exception=False, set_status_on_exception=False
        ):
            try:
                return await wrapped(*args, **kwargs)
            except BaseException as exc:
                _error(span, exc)
                raise
    finally:
        _in_request.reset(flag)


def _traced_callback(callback: Any) -> Any:
    from otelfin.propagation import nats_headers_getter

    async def process(msg: Any) -> Any:
        try:
            parent = propagate.extract(msg.headers or {}, getter=nats_headers_getter)
            subject = str(getattr(msg, "subject", ""))
            span = trace.get_tracer(_SCOPE).start_span(
                f"process {subject}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes=_attributes(subject, "process", _size(getattr(msg, "data", None))),
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
        except Exception as exc:
            _internal.report("transports.nats.process", exc)
            return await callback(msg)
        try:
            return await callback(msg)
        except BaseException as exc:
            _error(span, exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    process.__wrapped__ = callback  # type: ignore[attr-defined]
    return process


async def _subscribe(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        callback = _arg(args, kwargs, 2, "cb")
        # request()'s own reply-inbox subscription (a bound method of the client) is left
        # alone: the reply is already covered by the request span.
        internal = getattr(callback, "__self__", None) is instance
        if callback is not None and not internal and not hasattr(callback, "__wrapped__"):
            kwargs = dict(kwargs)
            if len(args) > 2:
                args = (*args[:2], _traced_callback(callback), *args[3:])
            else:
                kwargs["cb"] = _traced_callback(callback)
    except Exception as exc:
        _internal.report("transports.nats.subscribe", exc)
    return await wrapped(*args, **kwargs)


def _describe(subscription: Any, msg: Any) -> Described:
    from otelfin.propagation import nats_headers_getter

    parent = propagate.extract(msg.headers or {}, getter=nats_headers_getter)
    subject = str(getattr(msg, "subject", ""))
    return parent, subject, _attributes(subject, "process", _size(getattr(msg, "data", None)))


_CONSUMER = PullConsumer("nats", current_task, _describe)
_NEXT_MSG = _CONSUMER.async_reader("transports.nats.next_msg")
# ``async for msg in sub.messages``: the span is held by the subscription the iterator reads.
_MESSAGES = _CONSUMER.async_reader(
    "transports.nats.messages", lambda iterator: getattr(iterator, "_sub", iterator)
)


_PATCHES: tuple[Patch, ...] = (
    ("nats.aio.client", "Client.publish", _publish),
    ("nats.aio.client", "Client.request", _request),
    ("nats.aio.client", "Client.subscribe", _subscribe),
    ("nats.aio.subscription", "Subscription.next_msg", _NEXT_MSG),
    ("nats.aio.subscription", "Subscription.unsubscribe", _CONSUMER.async_closer),
    ("nats.aio.subscription", "_SubscriptionMessageIterator.__anext__", _MESSAGES),
)


class NatsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """OpenTelemetry instrumentor for nats-py (``nats.aio.client.Client``)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The nats-py versions this instrumentor supports."""
        return ("nats-py >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        patch(_PATCHES)

    def _uninstrument(self, **kwargs: Any) -> None:
        unpatch(_PATCHES)
