"""A declined @traced call records what the SDK's public methods would, first call or repeat.

The decline path remembers each catalogue code's attributes and writes them (and the
``exception`` event) onto SDK spans without the SDK's per-value checks
(``otelfin.instrument._spanwrite``). These tests pin that the exported span, its event, its
status and the metrics are the same as through the public methods, under default and tight
span limits, and that nothing a message carries is remembered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, StatusCode
from prometheus_client import CollectorRegistry

import otelfin
from otelfin import _outcome
from otelfin.instrument import _spanwrite, _traced
from otelfin.metrics import DURATION_METRIC
from otelfin.metrics.names import DECLINES, ERRORS

PAN = "4111 1111 1111 1111"
MESSAGES = ("Insufficient balance", f"card {PAN} over limit", "Insufficient balance", "")


class _NoSpanTypeIsFast(dict[type, bool]):
    """A stand-in for the fast-path table that sends every span type to the public methods."""

    def get(self, key: type, default: Any = None) -> bool:  # type: ignore[override]
        return False


@contextlib.contextmanager
def _public_methods_only() -> Iterator[None]:
    """Every span write through the SDK's public methods (the reference output)."""
    table = _spanwrite._state.fast_types
    _spanwrite._state.fast_types = _NoSpanTypeIsFast()
    try:
        yield
    finally:
        _spanwrite._state.fast_types = table


def _forget_codes() -> None:
    _traced._state.codes = (None, {})


def _decline(fn: Any, message: str, **attrs: Any) -> None:
    with pytest.raises(otelfin.OtelfinError) as raised:
        fn(message, **attrs)
    assert raised.value.message == message  # the very exception, unchanged


def _view(span: ReadableSpan) -> dict[str, Any]:
    """Everything an exporter reads from a finished span, in order."""
    return {
        "attributes": list((span.attributes or {}).items()),
        "dropped_attributes": span.dropped_attributes,
        "events": [
            (
                event.name,
                type(event.attributes).__name__,
                list((event.attributes or {}).items()),
                event.dropped_attributes,
            )
            for event in span.events
        ],
        "dropped_events": span.dropped_events,
        "status": (span.status.status_code, span.status.description),
    }


def _run(provider: TracerProvider, exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    @otelfin.traced(name="acquirer.authorise", tracer_provider=provider)
    def authorise(message: str, **attrs: Any) -> None:
        raise otelfin.OtelfinError("PAY-012", message, **attrs)

    _forget_codes()  # the first call fills the table, the later ones read it
    exporter.clear()
    for message in MESSAGES:
        _decline(authorise, message)
    _decline(authorise, "with extras", attempt=2)
    return [_view(span) for span in exporter.get_finished_spans()]


def _span_type(provider: TracerProvider) -> type:
    span = provider.get_tracer("probe").start_span("probe")
    span.end()
    return type(span)


def _provider(limits: SpanLimits | None = None) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(span_limits=limits) if limits else TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.mark.parametrize(
    "limits",
    [
        None,
        # Each limit alone, so each check is exercised: values cut to 7 characters
        # ("declined", the messages), one attribute an event, two a span, and a span that is
        # full after the decline (the outcome is set again, not added).
        SpanLimits(max_attribute_length=7),
        SpanLimits(max_event_attributes=1),
        SpanLimits(max_span_attributes=2),
        SpanLimits(max_span_attributes=3),
    ],
    ids=["default", "value-length", "event-attributes", "span-attributes", "exactly-full"],
)
def test_decline_records_what_the_public_methods_record(limits: SpanLimits | None) -> None:
    """Attributes (order included), event, dropped counts and status equal the SDK's own."""
    provider, exporter = _provider(limits)
    try:
        fast = _run(provider, exporter)
        assert _spanwrite._state.fast_types.get(_span_type(provider)) is True
        with _public_methods_only():
            reference = _run(provider, exporter)
    finally:
        provider.shutdown()
    assert fast == reference
    if limits is None:
        first = fast[0]
        assert first["attributes"] == [
            ("error.type", "PAY-012"),
            ("otelfin.error_code", "PAY-012"),
            (_outcome.ATTRIBUTE, "declined"),
        ]
        assert first["events"] == [
            (
                "exception",
                "BoundedAttributes",
                [
                    ("exception.type", "otelfin.OtelfinError"),
                    ("exception.message", "PAY-012: Insufficient balance"),
                ],
                0,
            )
        ]
        assert first["status"] == (StatusCode.UNSET, None)
        # Repeats read the remembered attributes; each event keeps its own message.
        assert [view["attributes"] for view in fast[:4]] == [first["attributes"]] * 4
        assert [view["events"][0][2][1][1] for view in fast[:4]] == [
            f"PAY-012: {m}" if m else "PAY-012" for m in MESSAGES
        ]
        assert fast[4]["attributes"] == [
            ("error.type", "PAY-012"),
            ("otelfin.error_code", "PAY-012"),
            ("otelfin.error.attempt", 2),
            (_outcome.ATTRIBUTE, "declined"),
        ]


def test_declines_export_scrubbed_and_count_as_declines(
    spans: InMemorySpanExporter, prom_registry: CollectorRegistry
) -> None:
    """Through configure(): the card number in a repeat's message is masked on export, the
    metrics say declined each time, and the remembered table holds the code, no message."""

    @otelfin.traced(name="acquirer.charge")
    def charge(message: str) -> None:
        raise otelfin.OtelfinError("PAY-012", message)

    _forget_codes()
    for message in MESSAGES:
        _decline(charge, message)
    exported = [s for s in spans.get_finished_spans() if s.name == "acquirer.charge"]
    assert len(exported) == len(MESSAGES)
    for span in exported:
        attributes = span.attributes or {}
        assert attributes["otelfin.error_code"] == "PAY-012"
        assert attributes[_outcome.ATTRIBUTE] == "declined"
        assert span.status.status_code is StatusCode.UNSET
        assert [e.name for e in span.events] == ["exception"]
    leaked = str(exported[1].events[0].attributes)
    assert PAN not in leaked and "1111" in leaked  # masked, last four kept

    labels = {"service": "otelfin-test", "operation": "acquirer.charge", "channel": ""}
    count = f"{DURATION_METRIC}_count"
    assert prom_registry.get_sample_value(count, {**labels, "outcome": "declined"}) == 4
    assert prom_registry.get_sample_value(count, {**labels, "outcome": "error"}) is None
    coded = {**labels, "error_code": "PAY-012"}
    assert prom_registry.get_sample_value(DECLINES, coded) == 4
    assert prom_registry.get_sample_value(ERRORS, coded) is None

    _catalogue, remembered = _traced._state.codes
    assert list(remembered) == ["PAY-012"]
    assert "Insufficient" not in repr(remembered) and "4111" not in repr(remembered)


def test_unregistered_codes_are_not_remembered() -> None:
    """A code the catalogue does not hold is an error and stays out of the table."""
    provider, exporter = _provider()

    @otelfin.traced(name="odd", tracer_provider=provider)
    def odd(code: str) -> None:
        raise otelfin.OtelfinError(code, "nope")

    _forget_codes()
    try:
        for code in ("ZZZ-901", "ZZZ-902"):
            with pytest.raises(otelfin.OtelfinError):
                odd(code)
    finally:
        provider.shutdown()
    for span, code in zip(exporter.get_finished_spans(), ("ZZZ-901", "ZZZ-902"), strict=True):
        assert (span.attributes or {})[_outcome.ATTRIBUTE] == "error"
        assert (span.attributes or {})["error.type"] == code
        assert span.status.status_code is StatusCode.ERROR
    assert _traced._state.codes[1] == {}


class _Watching(SdkSpan):
    """A span type of its own whose writers must be the ones called."""

    def set_attributes(self, attributes: Any) -> None:
        self.seen.append(("attributes", dict(attributes)))
        super().set_attributes(attributes)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self.seen.append(("event", name))
        super().add_event(name, attributes, timestamp)


def _span(cls: type[SdkSpan]) -> Any:
    span = cls("s", context=SpanContext(1, 2, is_remote=False))
    span.seen = []  # type: ignore[attr-defined]
    span.start()
    return span


def test_span_types_with_their_own_writers_get_them_called() -> None:
    """A span subclass overriding the writers is written through its own methods."""
    span = _span(_Watching)
    _spanwrite.set_text_attributes(span, {"error.type": "PAY-012"})
    _spanwrite.add_text_event(span, "exception", {"exception.message": "m"})
    assert span.seen == [("attributes", {"error.type": "PAY-012"}), ("event", "exception")]
    assert span.attributes["error.type"] == "PAY-012"


def test_an_ended_span_is_left_alone() -> None:
    """Writing onto a span that has ended changes nothing (the SDK's own rule)."""
    provider, _exporter = _provider()
    span: Any = provider.get_tracer("t").start_span("s")
    span.end()
    provider.shutdown()
    _spanwrite.set_text_attributes(span, {"error.type": "PAY-012"})
    _spanwrite.add_text_event(span, "exception", {"exception.message": "m"})
    assert dict(span.attributes) == {} and list(span.events) == []
