"""Card numbers in span attribute keys: masked both as spans end and on export."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from otelfin import traced
from otelfin.scrub import is_secret_key
from otelfin.testing import configured_for_test

PAN = "4111111111111111"
MASKED = "XXXXXXXXXXXX1111"


@pytest.mark.parametrize("scrub_as_spans_end", [False, True], ids=["on-export", "on-ending"])
def test_card_number_in_attribute_keys_is_masked(scrub_as_spans_end: bool) -> None:
    """Span and event attribute keys holding a card number are renamed with it masked."""

    @traced
    def charge() -> None:
        span = trace.get_current_span()
        span.set_attribute(f"card.{PAN}", "on-file")
        span.set_attribute(f"x.{PAN}.password", "hunter2")
        span.add_event("checked", {f"check {PAN}": True})

    with configured_for_test(scrub_all_spans=scrub_as_spans_end) as exporter:
        charge()
        (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    attributes = dict(span.attributes)
    assert attributes[f"card.{MASKED}"] == "on-file"
    assert attributes[f"x.{MASKED}.password"] == "[REDACTED]"
    assert span.events[0].attributes is not None
    assert dict(span.events[0].attributes) == {f"check {MASKED}": True}
    assert PAN not in repr(attributes) + repr(dict(span.events[0].attributes))


def test_secret_key_holding_card_number_is_still_secret() -> None:
    """A secret-named key that also holds a card number stays a secret key (log fields)."""
    assert is_secret_key(f"x.{PAN}.password")
    assert not is_secret_key(f"card.{PAN}")
    assert is_secret_key("password") and not is_secret_key("amount")


def _span_text(span: object) -> str:
    from opentelemetry.sdk.trace import ReadableSpan

    assert isinstance(span, ReadableSpan)
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    return repr((span.name, dict(span.attributes or {}), events, span.status.description))


@pytest.mark.parametrize("scrub_as_spans_end", [False, True], ids=["on-export", "on-ending"])
def test_card_number_in_name_status_and_exception_chain(scrub_as_spans_end: bool) -> None:
    """Span name, status, exception message, stack trace and chained causes: all masked."""

    @traced(name=f"charge {PAN}")
    def charge() -> None:
        try:
            raise KeyError(PAN)
        except KeyError as cause:
            raise ValueError(f"declined {PAN}") from cause

    with configured_for_test(scrub_all_spans=scrub_as_spans_end) as exporter:
        with pytest.raises(ValueError):
            charge()
        (span,) = exporter.get_finished_spans()
    text = _span_text(span)
    assert "exception.stacktrace" in text and "direct cause" in text
    assert PAN not in text
    assert text.count(MASKED) >= 5  # name, status, message, and both messages in the trace
