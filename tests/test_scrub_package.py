"""otelfin.scrub as a package: options passed in, the one default, the old names kept."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otelfin.logging
from otelfin import scrub
from otelfin.scrub import ScrubbingSpanExporter, ScrubbingSpanProcessor, ScrubOptions
from otelfin.testing import configured_for_test

VISA = "4111111111111111"


pytestmark = pytest.mark.usefixtures("scrub_defaults")


def test_options_passed_in_win_over_the_default() -> None:
    """An explicit ScrubOptions is used as given; the process default is left alone."""
    wide = ScrubOptions(pan_mask="first6last4", secret_keys=frozenset({"merchant-ref"}))
    assert scrub.scrub_text(VISA, options=wide) == "411111XXXXXX1111"
    assert scrub.scrub_text(VISA) == "XXXXXXXXXXXX1111"
    assert scrub.scrub_value({"merchant_ref": "m1"}, options=wide) == {"merchant_ref": "[REDACTED]"}
    assert scrub.scrub_value({"merchant_ref": "m1"}) == {"merchant_ref": "m1"}


def test_configure_sets_and_resets_the_default() -> None:
    """configure(options) makes them the default; configure(None) restores the built-ins."""
    scrub.configure(ScrubOptions(pan_mask="first6last4"))
    assert scrub.current_options().pan_mask == "first6last4"
    assert scrub.scrub_text(VISA) == "411111XXXXXX1111"
    scrub.configure(None)
    assert scrub.current_options() == ScrubOptions()


def test_bad_options_are_rejected() -> None:
    """An unknown mask is a ValueError; a non-options object is a TypeError."""
    with pytest.raises(ValueError, match="first6last4"):
        ScrubOptions(pan_mask="none")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ScrubOptions"):
        scrub.configure({"pan_mask": "last4"})  # type: ignore[arg-type]


def test_secret_keys_are_normalised_and_a_bare_string_is_one_key() -> None:
    """Extra secret keys compare without case or separators; a str is one name, not letters."""
    options = ScrubOptions(secret_keys="Merchant.Ref")  # type: ignore[arg-type]
    assert options.secret_keys == frozenset({"merchantref"})
    assert scrub.is_secret_key("merchant_ref", options)
    assert not scrub.is_secret_key("m", options)


def test_otelfin_configure_sets_the_scrub_default() -> None:
    """otelfin.configure(pan_mask=..., secret_keys=...) becomes the scrubber's default."""
    with configured_for_test(pan_mask="first6last4", secret_keys=["merchant_ref"]):
        assert scrub.current_options().pan_mask == "first6last4"
        assert scrub.is_secret_key("merchantRef")
    assert scrub.current_options() == ScrubOptions()


def test_pillars_keep_the_options_configure_handed_them() -> None:
    """configure() builds the scrubber's options once and hands them over: the log chain, the
    stdlib bridge (handler and record factory) and @traced's argument text keep them, even if
    the process default changes afterwards (the catalogue check quoting a bad code included);
    a chain built by hand follows the default."""
    import logging

    from otelfin.logging import _pipeline, _stdlib

    with configured_for_test(pan_mask="first6last4", secret_keys=["merchant_ref"]) as spans:

        @otelfin.traced(attributes={"card": "card"})
        def pay(card: dict[str, str]) -> None:
            return None

        scrub.configure(None)  # the process default back to last4, no extra secret names
        with otelfin.logging.capture_logs() as logs:
            otelfin.get_logger().info("paid", card=VISA, merchant_ref="m1")
            logging.getLogger("thirdparty").warning("card %s", VISA)
            otelfin.get_logger().warning("odd code", error_code=int(VISA))
        pay({"number": VISA})
        assert _stdlib._state.factory is not None
        made = _stdlib._state.factory("x", logging.INFO, __file__, 1, "card %s", (VISA,), None)
        by_hand = _pipeline.processors(service_name="svc", render=False)
        event: dict[str, object] = {"event": "e", "card": VISA}
        for proc in by_hand:
            event = proc(None, "info", event)
    assert logs[0]["card"] == "411111XXXXXX1111"
    assert logs[0]["merchant_ref"] == "[REDACTED]"
    assert logs[1]["event"] == "card 411111XXXXXX1111"
    assert made.getMessage() == "card 411111XXXXXX1111"
    (odd,) = [line for line in logs if line["event"] == "odd code"]
    assert odd["error_code"] == "411111XXXXXX1111"  # the catalogue check's quote, too
    (span,) = spans.get_finished_spans()
    assert "411111XXXXXX1111" in str(span.attributes["card"])
    assert event["card"] == "XXXXXXXXXXXX1111"


def test_old_names_in_otelfin_logging_are_the_scrubbers() -> None:
    """otelfin.logging keeps the old public names, as the very same objects."""
    assert otelfin.logging.scrub_text is scrub.scrub_text
    assert otelfin.logging.scrub_value is scrub.scrub_value
    assert otelfin.logging.find_pans is scrub.find_pans
    assert otelfin.logging.ScrubbingSpanExporter is ScrubbingSpanExporter
    assert otelfin.logging.ScrubbingSpanProcessor is ScrubbingSpanProcessor


def test_processor_and_exporter_take_fixed_options() -> None:
    """The span processor and exporter use the options they were built with."""
    wide = ScrubOptions(pan_mask="first6last4")
    provider = TracerProvider()
    ended = InMemorySpanExporter()
    provider.add_span_processor(ScrubbingSpanProcessor(wide))
    provider.add_span_processor(SimpleSpanProcessor(ended))
    with provider.get_tracer("t").start_as_current_span("pay") as span:
        span.set_attribute("note", VISA)
    (finished,) = ended.get_finished_spans()
    assert finished.attributes is not None
    assert finished.attributes["note"] == "411111XXXXXX1111"

    raw = TracerProvider()
    source = InMemorySpanExporter()
    raw.add_span_processor(SimpleSpanProcessor(source))
    with raw.get_tracer("t").start_as_current_span("pay") as span:
        span.set_attribute("note", VISA)
    sink = InMemorySpanExporter()
    ScrubbingSpanExporter(sink, wide).export(source.get_finished_spans())
    (exported,) = sink.get_finished_spans()
    assert exported.attributes is not None
    assert exported.attributes["note"] == "411111XXXXXX1111"
    provider.shutdown()
    raw.shutdown()
