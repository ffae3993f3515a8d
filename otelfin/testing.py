"""Test helpers, also registered as a pytest plugin (``pytest11`` entry point ``otelfin``).

Fixtures:
    ``spans``: otelfin configured against a fresh SDK TracerProvider (set as the global one
    for the test) with a synchronous in-memory exporter; yields the exporter.
    ``prom_registry``: a fresh prometheus_client ``CollectorRegistry`` with otelfin configured
    (in-memory spans) to record its RED metrics there; assert with ``get_sample_value``.

Nothing here runs at import time; the fixtures restore OpenTelemetry's and otelfin's globals
afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from prometheus_client import CollectorRegistry

__all__ = ["configured_for_test", "reset_tracer_provider", "spans", "prom_registry"]


def reset_tracer_provider() -> None:
    """Let a test set the global tracer provider again (OpenTelemetry allows it only once)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@contextmanager
def configured_for_test(
    service_name: str = "otelfin-test", **options: object
) -> Iterator[InMemorySpanExporter]:
    """``otelfin.configure()`` against a fresh provider and in-memory exporter, undone after."""
    from otelfin import _config

    _config.reset()
    reset_tracer_provider()
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    options.setdefault("span_processor", "simple")
    try:
        _config.configure(service_name, span_exporter=exporter, **options)  # type: ignore[arg-type]
        yield exporter
    finally:
        _config.reset()
        provider.shutdown()
        reset_tracer_provider()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """otelfin configured with an in-memory span exporter; yields the exporter."""
    with configured_for_test() as exporter:
        yield exporter


@pytest.fixture
def prom_registry() -> Iterator[CollectorRegistry]:
    """A fresh ``CollectorRegistry`` that otelfin's ``@traced`` metrics record into."""
    registry = CollectorRegistry()
    with configured_for_test(metrics_registry=registry):
        yield registry
