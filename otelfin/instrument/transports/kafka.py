"""Kafka: producer/consumer spans and header propagation for kafka-python and confluent-kafka.

The official ``opentelemetry-instrumentation-kafka-python`` and
``opentelemetry-instrumentation-confluent-kafka`` open the spans. Their header getter decodes
every value with ``bytes.decode()`` (a non-UTF-8 header from another producer raised inside the
propagator) and compares names case-sensitively, and their setter appends, so re-sending a
consumed record's headers carried two traceparents. otelfin's propagator recognises both
getters and setters and uses :data:`otelfin.propagation.kafka_headers_getter` /
``kafka_headers_setter`` in their place (see ``otelfin.propagation._propagator``).

confluent-kafka is instrumented by swapping ``confluent_kafka.Producer``/``Consumer`` for the
official subclasses: create producers and consumers after ``otelfin.configure()``.
"""

from __future__ import annotations

import warnings
from typing import Any

from otelfin.instrument.transports._base import OfficialInstrumentor

__all__ = ["install", "uninstall"]

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


def install(**kwargs: Any) -> bool:
    """Instrument kafka-python and confluent-kafka where installed; True when any is active."""
    # kafka-python 3 warns about its own use of importlib.resources when first imported; that
    # warning is the library's business, and under "warnings as errors" it would abort the
    # import half-way, so it is silenced for the import only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        results = [instrumentor.install(**kwargs) for instrumentor in _official]
    return any(results)


def uninstall() -> None:
    """Remove what :func:`install` added."""
    for instrumentor in reversed(_official):
        instrumentor.uninstall()
