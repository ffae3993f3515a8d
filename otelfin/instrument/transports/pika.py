"""pika (RabbitMQ): producer spans on ``basic_publish``, consumer spans around callbacks.

The official ``opentelemetry-instrumentation-pika`` does the work, with two fixes:

* It instruments both ``BlockingConnection.channel`` and ``Connection.channel``; a blocking
  channel wraps an impl channel, so every blocking publish made two nested "send" spans and
  the consumer's parent was the inner one. otelfin wraps ``BlockingConnection.channel`` (wrapt)
  and takes the decoration off the impl channel's ``basic_publish``, leaving one producer span.
* Its getter hands bytes header values straight to the propagator and lists no keys; otelfin's
  propagator recognises that getter and reads the headers table itself (case-insensitive,
  bytes decoded, non-UTF-8 ignored), see ``otelfin.propagation._propagator``.

A ``basic_consume`` callback runs inside the consumer span, whose parent is the producer span.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otelfin import _internal
from otelfin.instrument.transports._base import OfficialInstrumentor

__all__ = ["PikaPublishFixInstrumentor", "install", "uninstall"]

_official = OfficialInstrumentor(
    "opentelemetry.instrumentation.pika", "PikaInstrumentor", "pika", "amqp"
)
# wrapt keeps attributes named _self_* on the wrapper itself (others go to the wrapped function).
_MARK = "_self_otelfin_pika_fix"


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


def _patch() -> None:
    import wrapt
    from pika.adapters.blocking_connection import BlockingConnection

    if not getattr(BlockingConnection.channel, _MARK, False):
        wrapper = wrapt.FunctionWrapper(BlockingConnection.channel, _one_publish_span)
        setattr(wrapper, _MARK, True)
        BlockingConnection.channel = wrapper


def _unpatch() -> None:
    try:
        from pika.adapters.blocking_connection import BlockingConnection
    except ImportError:
        return
    current = BlockingConnection.__dict__.get("channel")
    if current is not None and getattr(current, _MARK, False):
        BlockingConnection.channel = current.__wrapped__


class PikaPublishFixInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """One producer span per blocking publish (see module docstring).

    Registered as ``otelfin_pika`` so ``opentelemetry-instrument`` applies it too; it only has
    an effect on top of the official pika instrumentor.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The pika versions this instrumentor supports."""
        return ("pika >= 1.0.0",)

    def _instrument(self, **kwargs: Any) -> None:
        _patch()

    def _uninstrument(self, **kwargs: Any) -> None:
        _unpatch()


def install(**kwargs: Any) -> bool:
    """Instrument pika channels created from now on; True when active."""
    if not _official.install(**kwargs):
        return False
    _patch()
    return True


def uninstall() -> None:
    """Remove what :func:`install` added."""
    _unpatch()
    _official.uninstall()
