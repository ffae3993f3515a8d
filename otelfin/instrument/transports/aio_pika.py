"""aio-pika (RabbitMQ, asyncio): publish, ``Queue.consume`` callbacks and queue iterators.

The official ``opentelemetry-instrumentation-aio-pika`` covers ``Exchange.publish`` and
callbacks given to ``Queue.consume``. Messages read with ``async for message in
queue.iterator()`` get no span around their processing there: the iterator's internal callback
only moves the message into a local queue, so the official span ends before user code runs.
otelfin wraps ``QueueIterator.__anext__`` (wrapt): each message it returns opens a CONSUMER
"process" span whose parent is the producer's context, made current in the consuming task until
the next message is requested or the iterator closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from opentelemetry import propagate
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otelfin import _internal
from otelfin.instrument.transports._base import (
    OfficialInstrumentor,
    available,
    close_process_span,
    open_process_span,
)

__all__ = ["AioPikaIteratorInstrumentor", "install", "uninstall"]

_official = OfficialInstrumentor(
    "opentelemetry.instrumentation.aio_pika", "AioPikaInstrumentor", "aio_pika", "amqp"
)
# wrapt keeps attributes named _self_* on the wrapper itself (others go to the wrapped function).
_MARK = "_self_otelfin_aio_pika"
_SCOPE = "otelfin.instrument.transports.aio_pika"


def _task() -> object:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


def _finish(iterator: Any) -> None:
    close_process_span(iterator, _task())


def _start(iterator: Any, message: Any) -> None:
    from otelfin.propagation import amqp_headers_getter

    parent = propagate.extract(message.headers or {}, getter=amqp_headers_getter)
    queue = getattr(getattr(iterator, "_amqp_queue", None), "name", None) or "(anonymous)"
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue,
    }
    if getattr(message, "message_id", None):
        attributes["messaging.message.id"] = str(message.message_id)
    if getattr(message, "routing_key", None):
        attributes["messaging.rabbitmq.destination.routing_key"] = str(message.routing_key)
    open_process_span(iterator, parent, f"process {queue}", attributes, _task(), _SCOPE)


async def _anext(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        _finish(instance)
    except Exception as exc:
        _internal.report("transports.aio_pika.finish", exc)
    message = await wrapped(*args, **kwargs)
    try:
        _start(instance, message)
    except Exception as exc:
        _internal.report("transports.aio_pika.start", exc)
    return message


async def _close(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        _finish(instance)
    except Exception as exc:
        _internal.report("transports.aio_pika.finish", exc)
    return await wrapped(*args, **kwargs)


def _patch() -> None:
    import wrapt
    from aio_pika.queue import QueueIterator

    if getattr(QueueIterator.__anext__, _MARK, False):
        return
    for name, wrapper in (("__anext__", _anext), ("close", _close)):
        wrapped = wrapt.FunctionWrapper(getattr(QueueIterator, name), wrapper)
        setattr(wrapped, _MARK, True)
        setattr(QueueIterator, name, wrapped)


def _unpatch() -> None:
    try:
        from aio_pika.queue import QueueIterator
    except ImportError:
        return
    for name in ("__anext__", "close"):
        current = QueueIterator.__dict__.get(name)
        if current is not None and getattr(current, _MARK, False):
            setattr(QueueIterator, name, current.__wrapped__)


class AioPikaIteratorInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Process spans for messages read through ``queue.iterator()`` (see module docstring).

    Registered as the ``otelfin_aio_pika_iterator`` instrumentor so ``opentelemetry-instrument``
    applies it next to the official aio-pika instrumentor.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The aio-pika versions this instrumentor supports."""
        return ("aio_pika >= 7.2.0, < 11.0.0",)

    def _instrument(self, **kwargs: Any) -> None:
        _patch()

    def _uninstrument(self, **kwargs: Any) -> None:
        _unpatch()


def install(**kwargs: Any) -> bool:
    """Instrument aio-pika publish, consume callbacks and queue iterators; True when active."""
    if not available("aio_pika"):
        return False
    _official.install(**kwargs)  # False when the application set it up: the fix still applies
    _patch()
    return True


def uninstall() -> None:
    """Remove what :func:`install` added."""
    _unpatch()
    _official.uninstall()
