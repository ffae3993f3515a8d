"""Kafka: producer/consumer spans and header propagation for kafka-python and confluent-kafka.

The official ``opentelemetry-instrumentation-kafka-python`` and
``opentelemetry-instrumentation-confluent-kafka`` open the spans. Their header getter decodes
every value with ``bytes.decode()`` (a non-UTF-8 header from another producer raised inside the
propagator) and compares names case-sensitively, and their setter appends, so re-sending a
consumed record's headers carried two traceparents. otelfin's propagator recognises both
getters and setters and uses :data:`otelfin.propagation.kafka_headers_getter` /
``kafka_headers_setter`` in their place (see ``otelfin.propagation._propagator``).

The official kafka-python consumer span ends inside ``KafkaConsumer.__next__`` and its context
is detached before the record reaches the caller, so the work done for a record started a new
trace. otelfin wraps ``__next__`` (wrapt, see ``_base.open_process_span``): each record gets a
CONSUMER ``process <topic>`` span, parented on the producer, current in the consuming thread
until the next record is read or the consumer closes. (``poll()`` returns batches and is left to
the application: ``otelfin.propagation.extract(record.headers, kafka_headers_getter)``.)

confluent-kafka is instrumented by swapping ``confluent_kafka.Producer``/``Consumer`` for the
official subclasses: create producers and consumers after ``otelfin.configure()``.
"""

from __future__ import annotations

import threading
import warnings
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

__all__ = ["KafkaConsumerProcessInstrumentor", "install", "uninstall"]

_official = [
    OfficialInstrumentor(
        "opentelemetry.instrumentation.kafka", "KafkaInstrumentor", "kafka", "kafka"
    ),
    OfficialInstrumentor(
        "opentelemetry.instrumentation.confluent_kafka",
        "ConfluentKafkaInstrumentor",
        "confluent_kafka",
        "kafka",
    ),
]


# wrapt keeps attributes named _self_* on the wrapper itself (others go to the wrapped function).
_MARK = "_self_otelfin_kafka"
_SCOPE = "otelfin.instrument.transports.kafka"


def _next(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        close_process_span(instance, threading.get_ident())
    except Exception as exc:
        _internal.report("transports.kafka.finish", exc)
    record = wrapped(*args, **kwargs)
    try:
        from otelfin.propagation import kafka_headers_getter

        parent = propagate.extract(record.headers or [], getter=kafka_headers_getter)
        topic = str(record.topic)
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": int(record.offset),
        }
        open_process_span(
            instance, parent, f"process {topic}", attributes, threading.get_ident(), _SCOPE
        )
    except Exception as exc:
        _internal.report("transports.kafka.start", exc)
    return record


def _close(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        close_process_span(instance, threading.get_ident())
    except Exception as exc:
        _internal.report("transports.kafka.finish", exc)
    return wrapped(*args, **kwargs)


def _patch() -> None:
    import kafka
    import wrapt

    consumer = kafka.KafkaConsumer
    for name, wrapper in (("__next__", _next), ("close", _close)):
        if not getattr(consumer.__dict__.get(name), _MARK, False):
            wrapped = wrapt.FunctionWrapper(consumer.__dict__[name], wrapper)
            setattr(wrapped, _MARK, True)
            setattr(consumer, name, wrapped)


def _unpatch() -> None:
    try:
        import kafka
    except ImportError:
        return
    consumer = kafka.KafkaConsumer
    for name in ("__next__", "close"):
        current = consumer.__dict__.get(name)
        if current is not None and getattr(current, _MARK, False):
            setattr(consumer, name, current.__wrapped__)


class KafkaConsumerProcessInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Process spans around kafka-python records read by iteration (see module docstring).

    Registered as ``otelfin_kafka`` so ``opentelemetry-instrument`` applies it next to the
    official kafka-python instrumentor.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The kafka-python versions this instrumentor supports."""
        return ("kafka-python >= 2.0, < 4.0",)

    def _instrument(self, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            _patch()

    def _uninstrument(self, **kwargs: Any) -> None:
        _unpatch()


def install(**kwargs: Any) -> bool:
    """Instrument kafka-python and confluent-kafka where installed; True when any is active."""
    # kafka-python 3 warns about its own use of importlib.resources when first imported; that
    # warning is the library's business, and under "warnings as errors" it would abort the
    # import half-way, so it is silenced for the import only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        results = [instrumentor.install(**kwargs) for instrumentor in _official]
        if available("kafka"):
            _patch()
            results.append(True)
    return any(results)


def uninstall() -> None:
    """Remove what :func:`install` added."""
    _unpatch()
    for instrumentor in reversed(_official):
        instrumentor.uninstall()
