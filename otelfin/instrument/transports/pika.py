"""pika (RabbitMQ): producer spans on ``basic_publish``, consumer spans around callbacks.

The official ``opentelemetry-instrumentation-pika`` does the work, with two fixes:

* It instruments both ``BlockingConnection.channel`` and ``Connection.channel``; a blocking
  channel wraps an impl channel, so every blocking publish made two nested "send" spans and
  the consumer's parent was the inner one. otelfin wraps ``BlockingConnection.channel`` (wrapt)
  and takes the decoration off the impl channel's ``basic_publish``, leaving one producer span.
* Its getter hands bytes header values straight to the propagator and lists no keys; otelfin's
  propagator recognises that getter and reads the headers table itself (case-insensitive,
  bytes decoded, non-UTF-8 ignored), see ``otelfin.propagation._propagator``.

* With ``channel.consume()`` (the generator) the official proxy makes each message's consumer
  span current until the next message is read, so work on a message is its child; but after
  the last message it left that context attached to the thread for good. otelfin wraps
  ``BlockingChannel.cancel`` (wrapt), which ends the generator, to release it.

A ``basic_consume`` callback runs inside the consumer span, whose parent is the producer span.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otelfin import _internal
from otelfin.instrument.transports._base import Patch, patch, unpatch

__all__ = ["PikaPublishFixInstrumentor"]


def _one_publish_span(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    channel = wrapped(*args, **kwargs)
    try:
        impl = getattr(channel, "_impl", None)
        decorated = getattr(impl, "__dict__", {}).get("basic_publish")
        if decorated is not None and hasattr(decorated, "_original_function"):
            del impl.__dict__["basic_publish"]  # back to the class method: no second span
    except Exception as exc:
        _internal.report("transports.pika.channel", exc)
    return channel


def _release_generator_context(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    generator = getattr(instance, "_queue_consumer_generator", None)
    pending = getattr(generator, "pending_events", None)
    try:
        return wrapped(*args, **kwargs)
    finally:
        token = getattr(pending, "_self_active_token", None)
        if pending is not None and token is not None:
            try:
                pending._self_active_token = None
                otel_context.detach(token)
            except Exception as exc:
                _internal.report("transports.pika.cancel", exc)


_BLOCKING = "pika.adapters.blocking_connection"
_PATCHES: tuple[Patch, ...] = (
    (_BLOCKING, "BlockingConnection.channel", _one_publish_span),
    (_BLOCKING, "BlockingChannel.cancel", _release_generator_context),
)


class PikaPublishFixInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """One producer span per blocking publish (see module docstring).

    A row of the transport table after the official pika instrumentor, and registered as
    ``otelfin_pika`` so ``opentelemetry-instrument`` applies it too; it only has an effect on top
    of the official pika instrumentor.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The pika versions this instrumentor supports."""
        return ("pika >= 1.0.0",)

    def _instrument(self, **kwargs: Any) -> None:
        patch(_PATCHES)

    def _uninstrument(self, **kwargs: Any) -> None:
        unpatch(_PATCHES)
