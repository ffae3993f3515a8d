"""aio-pika (RabbitMQ, asyncio): publish, ``Queue.consume`` callbacks and queue iterators.

The official ``opentelemetry-instrumentation-aio-pika`` covers ``Exchange.publish`` and
callbacks given to ``Queue.consume``. Messages read with ``async for message in
queue.iterator()`` get no span around their processing there: the iterator's internal callback
only moves the message into a local queue, so the official span ends before user code runs.
otelfin wraps ``QueueIterator.__anext__`` (wrapt): each message it returns opens a CONSUMER
"process" span whose parent is the producer's context, made current in the consuming task until
the next message is requested or the iterator closes.

``connect_robust()`` queues hand out a ``RobustQueueIterator``, whose own ``__anext__`` (it waits
through reconnections) never calls the base method, so that override is wrapped as well. A
context variable marks the iterator whose ``__anext__`` is already being observed, so a version
whose override does call ``super().__anext__()`` still gets one span per message, not two.
"""

from __future__ import annotations

import contextvars
from collections.abc import Collection
from typing import Any

from opentelemetry import propagate
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otelfin.instrument.transports._base import (
    Described,
    Patch,
    PullConsumer,
    current_task,
    messaging_attributes,
    patch,
    unpatch,
)

__all__ = ["AioPikaIteratorInstrumentor"]
# The iterator whose __anext__ is being observed in this task (guards a wrapped override that
# calls the wrapped base method).
_observing: contextvars.ContextVar[object] = contextvars.ContextVar(
    "otelfin_aio_pika_anext", default=None
)


def _describe(iterator: Any, message: Any) -> Described:
    from otelfin.propagation import amqp_headers_getter

    parent = propagate.extract(message.headers or {}, getter=amqp_headers_getter)
    queue = getattr(getattr(iterator, "_amqp_queue", None), "name", None) or "(anonymous)"
    attributes = messaging_attributes("rabbitmq", queue, "process")
    if getattr(message, "message_id", None):
        attributes["messaging.message.id"] = str(message.message_id)
    if getattr(message, "routing_key", None):
        attributes["messaging.rabbitmq.destination.routing_key"] = str(message.routing_key)
    return parent, queue, attributes


_CONSUMER = PullConsumer("aio_pika", current_task, _describe)


async def _anext(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if _observing.get() is instance:
        return await wrapped(*args, **kwargs)
    _CONSUMER.finish(instance)
    token = _observing.set(instance)
    try:
        message = await wrapped(*args, **kwargs)
    finally:
        _observing.reset(token)
    _CONSUMER.start(instance, message, "transports.aio_pika.start")
    return message


_PATCHES: tuple[Patch, ...] = (
    ("aio_pika.queue", "QueueIterator.__anext__", _anext),
    ("aio_pika.queue", "QueueIterator.close", _CONSUMER.async_closer),
    # connect_robust(): its iterator overrides __anext__ (close is inherited, wrapped above)
    ("aio_pika.robust_queue", "RobustQueueIterator.__anext__", _anext),
)


class AioPikaIteratorInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Process spans for messages read through ``queue.iterator()`` (see module docstring).

    A row of the transport table next to the official aio-pika instrumentor (it applies also
    when the application switched that one on), and registered as the
    ``otelfin_aio_pika_iterator`` instrumentor for ``opentelemetry-instrument``.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The aio-pika versions this instrumentor supports."""
        return ("aio_pika >= 7.2.0, < 11.0.0",)

    def _instrument(self, **kwargs: Any) -> None:
        patch(_PATCHES)

    def _uninstrument(self, **kwargs: Any) -> None:
        unpatch(_PATCHES)
