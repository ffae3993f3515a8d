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

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otelfin import _internal
from otelfin._peer import host_of
from otelfin.instrument.transports._base import (
    Described,
    Patch,
    PullConsumer,
    messaging_attributes,
    patch,
    unpatch,
)

__all__ = ["KafkaConsumerProcessInstrumentor", "KafkaProducerPeerInstrumentor"]


def _describe(consumer: Any, record: Any) -> Described:
    from otelfin.propagation import kafka_headers_getter

    parent = propagate.extract(record.headers or [], getter=kafka_headers_getter)
    topic = str(record.topic)
    attributes = messaging_attributes("kafka", topic, "process")
    attributes["messaging.destination.partition.id"] = str(record.partition)
    attributes["messaging.kafka.offset"] = int(record.offset)
    return parent, topic, attributes


_CONSUMER = PullConsumer("kafka", threading.get_ident, _describe)


_PATCHES: tuple[Patch, ...] = (
    ("kafka", "KafkaConsumer.__next__", _CONSUMER.reader("transports.kafka.start")),
    ("kafka", "KafkaConsumer.close", _CONSUMER.closer),
)


class KafkaConsumerProcessInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Process spans around kafka-python records read by iteration (see module docstring).

    A row of the transport table after the official kafka-python instrumentor, and registered
    as ``otelfin_kafka`` so ``opentelemetry-instrument`` applies it too.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The kafka-python versions this instrumentor supports."""
        return ("kafka-python >= 2.0, < 4.0",)

    def _instrument(self, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            patch(_PATCHES)

    def _uninstrument(self, **kwargs: Any) -> None:
        unpatch(_PATCHES)


def _send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    # Runs inside the official wrapper, whose PRODUCER span is current: it sets the broker
    # only after a successful send (and a send that cannot reach the cluster fails first).
    try:
        span = trace.get_current_span()
        topic = args[0] if args else kwargs.get("topic")
        if span.is_recording() and getattr(span, "name", None) == f"{topic} send":
            servers = instance.config.get("bootstrap_servers")
            if isinstance(servers, (list, tuple)):
                servers = servers[0] if servers else ""
            host = host_of(servers)
            if host:
                span.set_attribute("messaging.system", "kafka")
                span.set_attribute("server.address", host)
    except Exception as exc:
        _internal.report("transports.kafka.send_peer", exc)
    return wrapped(*args, **kwargs)


_PRODUCER_PATCHES: tuple[Patch, ...] = (("kafka", "KafkaProducer.send", _send),)


class KafkaProducerPeerInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """The broker on kafka-python's PRODUCER spans, failed sends included.

    A row of the transport table *before* the official kafka-python instrumentor, so the
    official wrapper encloses this one and its span is current here.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The kafka-python versions this instrumentor supports."""
        return ("kafka-python >= 2.0, < 4.0",)

    def _instrument(self, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            patch(_PRODUCER_PATCHES)

    def _uninstrument(self, **kwargs: Any) -> None:
        unpatch(_PRODUCER_PATCHES)
