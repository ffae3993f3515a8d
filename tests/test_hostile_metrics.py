"""Hostile label values for RED metrics: bounded, masked, never breaking the call."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry, generate_latest

from otelfin import traced
from otelfin.metrics import red_metrics

PAN = "4111111111111111"


class Unprintable:
    """A label source whose text cannot be rendered."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_huge_string_label_value_is_truncated(prom_registry: CollectorRegistry) -> None:
    """A 1 MB string as the channel label is cut to 100 characters, not kept whole."""

    @traced(attributes={"payment.channel": "channel"})
    def pay(channel: Any) -> str:
        return "ok"

    assert pay("x" * 1_000_000) == "ok"
    exposition = generate_latest(prom_registry).decode()
    assert 'channel="' + "x" * 100 + '"' in exposition
    assert "x" * 101 not in exposition


def test_card_number_label_value_is_masked(prom_registry: CollectorRegistry) -> None:
    """A card number that reaches a label value is masked in the exposition."""

    @traced(attributes={"payment.channel": "channel"})
    def pay(channel: Any) -> None:
        raise ValueError("declined")

    for _ in range(2):
        with pytest.raises(ValueError):
            pay(PAN)
    exposition = generate_latest(prom_registry).decode()
    assert PAN not in exposition
    labels = {"service": "otelfin-test", "operation": pay.__qualname__}
    masked = {**labels, "channel": "XXXXXXXXXXXX1111"}
    get = prom_registry.get_sample_value
    assert get("otelfin_request_duration_seconds_count", {**masked, "outcome": "error"}) == 2
    assert get("otelfin_request_errors_total", {**masked, "error_code": "unclassified"}) == 2


def test_odd_label_values_never_break_the_call(prom_registry: CollectorRegistry) -> None:
    """None, ints, lists and unprintable objects as label sources: results are unchanged."""

    @traced(attributes={"payment.channel": "channel"})
    def pay(channel: Any) -> int:
        return 7

    for value in (None, 3, ["a", "b"], Unprintable(), 10**50, float("nan")):
        assert pay(value) == 7


def test_observe_with_non_recording_span() -> None:
    """RedMetrics.observe with a non-recording span and masked/odd labels records the call."""
    registry = CollectorRegistry()
    metrics = red_metrics(registry=registry)
    span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    metrics.observe("svc", f"GET /cards/{PAN}", 0.01, labels={"channel": PAN}, span=span)
    exposition = generate_latest(registry).decode()
    assert PAN not in exposition
    assert "XXXXXXXXXXXX1111" in exposition


def test_operation_flood_stays_bounded() -> None:
    """Distinct operations (raw URL paths as span names) cannot grow series past 2x the cap."""
    registry = CollectorRegistry()
    metrics = red_metrics(registry=registry, max_series=50)
    for i in range(3000):
        metrics.observe("svc", f"GET /orders/{i}", 0.01, failed=i % 2 == 0)
    assert len(metrics.duration_guard) <= 2 * 50 + 2
    assert len(metrics.errors_guard) <= 2 * 50 + 1
    counts = [
        s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "otelfin_request_duration_seconds_count"
    ]
    assert len(counts) <= 2 * 50 + 2
    assert sum(counts) == 3000  # every observation is kept, folded or not
    errors = registry.get_sample_value(
        "otelfin_request_errors_total",
        {"service": "other", "operation": "other", "error_code": "other", "channel": "other"},
    )
    assert errors is not None and errors > 0


def test_traced_call_with_unsampled_span_is_still_counted(
    prom_registry: CollectorRegistry,
) -> None:
    """A @traced call whose span is not recording (sampled out) is counted, without exemplar."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    @traced(tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
    def pay() -> str:
        return "ok"

    assert pay() == "ok"
    labels = {"service": "otelfin-test", "operation": pay.__qualname__, "channel": ""}
    count = prom_registry.get_sample_value(
        "otelfin_request_duration_seconds_count", {**labels, "outcome": "ok"}
    )
    assert count == 1
    assert "trace_id" not in generate_latest(prom_registry).decode()
