"""otelfin.scrub as a package: options passed in, the one default, the old names kept."""

from __future__ import annotations

from pathlib import Path

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


HANDED = {"pan_mask": "first6last4", "secret_keys": ["merchant_ref"]}


@pytest.mark.parametrize("tail", [False, True], ids=["pipeline", "behind-tail-sampling"])
def test_export_scrubbing_keeps_the_options_configure_handed_it(tail: bool) -> None:
    """Spans scrubbed at export (not as they end) are masked with the options configure()
    handed the export pipeline, also behind the tail-sampling processor, after the process
    default went back to last4."""
    from opentelemetry import trace
    from opentelemetry.trace import StatusCode

    extra = {"keep_traces": "error"} if tail else {}
    with configured_for_test(scrub_all_spans=False, **HANDED, **extra) as spans:
        scrub.configure(None)
        with trace.get_tracer("t").start_as_current_span("pay") as span:
            span.set_attribute("card", VISA)
            span.set_attribute("merchant_ref", "m1")
            span.set_status(StatusCode.ERROR)
        (exported,) = spans.get_finished_spans()
    assert exported.attributes is not None
    assert exported.attributes["card"] == "411111XXXXXX1111"
    assert exported.attributes["merchant_ref"] == "[REDACTED]"


def test_audit_keeps_the_options_configure_handed_it(tmp_path: Path) -> None:
    """Audit records are masked with the options configure() handed the audit pillar, after
    the process default went back to last4, and after a configure() that keeps the trail."""
    from otelfin import audit

    path = str(tmp_path / "audit.jsonl")
    with configured_for_test(audit_file=path, **HANDED) as spans:
        scrub.configure(None)
        first = audit.record("card.read", actor="alice", outcome="success", card=VISA)
        otelfin.configure(
            "otelfin-test", span_exporter=spans, span_processor="simple", audit_file=path
        )
        scrub.configure(ScrubOptions(pan_mask="first6last4"))
        second = audit.record("card.read", actor=f"ops {VISA}", outcome="success", merchant_ref="m")
    assert first["details"]["card"] == "411111XXXXXX1111"
    assert second["seq"] == first["seq"] + 1  # the same trail, the new options
    assert second["actor"] == "ops XXXXXXXXXXXX1111"
    assert second["details"]["merchant_ref"] == "m"


def test_baggage_keeps_the_options_configure_handed_it() -> None:
    """The propagator masks baggage arriving and leaving with the options configure() handed
    it, after the process default went back to last4 (no extra secret names), and the ones
    a later configure() hands it."""
    from opentelemetry import baggage, propagate

    header = {"baggage": f"card={VISA},merchant_ref=m1,tenant=acme"}
    with configured_for_test(**HANDED) as spans:
        scrub.configure(None)
        arrived = dict(baggage.get_all(propagate.extract(header)))
        carrier: dict[str, str] = {}
        leaving = baggage.set_baggage("card", f"x{VISA}")
        propagate.inject(carrier, leaving)
        propagator = propagate.get_global_textmap()
        otelfin.configure("otelfin-test", span_exporter=spans, span_processor="simple")
        scrub.configure(ScrubOptions(pan_mask="first6last4"))
        assert propagate.get_global_textmap() is propagator  # kept, with the new options
        again = dict(baggage.get_all(propagate.extract(header)))
        propagate.inject(carrier, leaving)  # the same baggage: not the header cached before
    assert arrived == {"card": "411111XXXXXX1111", "tenant": "acme"}
    assert again == {"card": "XXXXXXXXXXXX1111", "merchant_ref": "m1", "tenant": "acme"}
    assert carrier["baggage"] == "card=xXXXXXXXXXXXX1111"


def test_problem_details_keep_the_options_configure_handed_them() -> None:
    """A problem+json body is masked with the options configure() handed the tracing pillar,
    after the process default went back to last4."""
    from otelfin.instrument import problem

    with configured_for_test(**HANDED):
        scrub.configure(None)
        status, body = problem(otelfin.OtelfinError("PAY-012", f"card {VISA}"), f"/cards/{VISA}")
    assert status == 402
    assert body["detail"] == "card 411111XXXXXX1111"
    assert body["instance"] == "/cards/411111XXXXXX1111"
