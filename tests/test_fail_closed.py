"""Masking fails closed: a failed or partial set-up never leaves card numbers unmasked."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import otelfin
from otelfin import _config, scrub
from otelfin.scrub import find_pans

CARD = "4111 1111 1111 1111"


@pytest.fixture
def host_log() -> Iterator[io.StringIO]:
    """The application's own stdlib handler, writing plain text, as a host sets it up."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("host.app")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_invalid_pan_mask_in_code_raises_and_masking_stays(host_log: io.StringIO) -> None:
    """configure(pan_mask=...) with a bad value raises ValueError, and the application's own
    logging is masked with the default mask afterwards."""
    with pytest.raises(ValueError, match="pan_mask"):
        otelfin.configure("svc", pan_mask="everything")
    assert scrub.current_options().pan_mask == "last4"
    logging.getLogger("host.app").warning("card %s declined", CARD)
    logging.getLogger("host.app").warning(f"card {CARD} declined again")
    text = host_log.getvalue()
    assert find_pans(text) == [] and text.count("XXXXXXXXXXXX1111") == 2, text


def test_a_failed_reconfigure_keeps_the_mask_in_force() -> None:
    """A bad second configure() raises and leaves the first one's masking in place."""
    otelfin.configure("svc", pan_mask="first6last4", log_stream=io.StringIO())
    with pytest.raises(ValueError):
        otelfin.configure("svc", pan_mask="nothing")
    assert scrub.scrub_text(CARD) == "411111XXXXXX1111"


def test_fallbacks_take_defaults_and_name_every_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host_log: io.StringIO
) -> None:
    """configure_with_fallbacks (zero-code): bad values, a missing catalogue and an unknown
    exporter run at their defaults; each is named; masking is on with the default mask."""
    monkeypatch.setenv("OTELFIN_PAN_MASK", "everything")
    monkeypatch.setenv("OTELFIN_CATALOGUE", str(tmp_path / "missing.yaml"))
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "carrier-pigeon")
    monkeypatch.setenv("OTELFIN_LOG_LEVEL", "loud")
    config, problems = _config.configure_with_fallbacks("svc", log_stream=io.StringIO())
    joined = " | ".join(problems)
    for name in ("OTELFIN_PAN_MASK", "missing.yaml", "carrier-pigeon", "OTELFIN_LOG_LEVEL"):
        assert name in joined
    assert config.pan_mask == "last4" and config.traces_exporter == "none"
    assert scrub.current_options().pan_mask == "last4"
    logging.getLogger("host.app").warning("card %s", CARD)
    assert "XXXXXXXXXXXX1111" in host_log.getvalue() and find_pans(host_log.getvalue()) == []


def test_a_pillar_configuration_error_is_a_fallback_not_a_hole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host_log: io.StringIO
) -> None:
    """An unopenable log file (the logging pillar's ValueError) under fallbacks: noted, the
    other pillars installed, the host's records still masked as they are made."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("OTELFIN_LOG_FILE", str(blocker / "logs.jsonl"))
    _, problems = _config.configure_with_fallbacks("svc")
    assert any("log_file" in p for p in problems), problems
    logging.getLogger("host.app").warning("card %s", CARD)
    assert find_pans(host_log.getvalue()) == [] and "XXXXXXXXXXXX1111" in host_log.getvalue()


def test_a_bad_fingerprint_key_file_falls_back_without_fingerprints(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An unreadable key file: ValueError in code; under fallbacks masking stays, no token."""
    monkeypatch.setenv("OTELFIN_PAN_FINGERPRINT_KEY_FILE", str(tmp_path / "nokey"))
    with pytest.raises(ValueError, match="nokey"):
        otelfin.configure("svc", log_stream=io.StringIO())
    _, problems = _config.configure_with_fallbacks("svc", log_stream=io.StringIO())
    assert any("nokey" in p for p in problems)
    assert scrub.scrub_text(CARD) == "XXXXXXXXXXXX1111"


@pytest.mark.otelfin_internal_errors
def test_otelfins_own_failure_in_zero_code_keeps_masking(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], host_log: io.StringIO
) -> None:
    """A bug inside otelfin's set-up under zero-code: one stderr line saying masking stays,
    and the host's records are masked as they are made."""
    from otelfin._zerocode import OtelfinConfigurator

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tracing exploded 4111111111111111")

    monkeypatch.setattr(_config, "_setup_tracing", broken)
    OtelfinConfigurator()._configure()
    err = capsys.readouterr().err
    assert err.count("otelfin:") == 1 and "stay masked" in err and find_pans(err) == []
    logging.getLogger("host.app").warning("card %s", CARD)
    assert find_pans(host_log.getvalue()) == [] and "XXXXXXXXXXXX1111" in host_log.getvalue()


@pytest.mark.otelfin_internal_errors
def test_a_scrubber_failure_on_a_record_withholds_it(
    monkeypatch: pytest.MonkeyPatch, host_log: io.StringIO
) -> None:
    """An exception inside the scrubber while a record is made: the record is written without
    its arguments (withheld, counted), never raw."""
    from otelfin.logging import _stdlib

    _config.fail_closed()

    def broken(value: object, *a: object, **k: object) -> object:
        raise RuntimeError("scrubber bug")

    monkeypatch.setattr(_stdlib, "scrub_value", broken)
    logging.getLogger("host.app").warning("card %s", CARD)
    text = host_log.getvalue()
    assert find_pans(text) == [] and "withheld" in text, text


def test_a_bad_format_string_holding_a_card_is_masked_in_the_error_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A record whose format fails: logging's own error report quotes the message, masked."""
    _config.fail_closed()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("host.bad")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(f"card {CARD} %d", "not a number")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "Message:" in err and find_pans(err) == [] and "XXXXXXXXXXXX1111" in err


@pytest.mark.otelfin_internal_errors
@pytest.mark.parametrize("as_they_end", [True, False])
def test_a_scrubber_failure_on_a_span_withholds_its_content(
    monkeypatch: pytest.MonkeyPatch, as_they_end: bool
) -> None:
    """The span scrubber raising (as spans end, or at export): the span is exported with its
    identity and timing only, marked otelfin.scrub_failed, never with raw attributes."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otelfin.scrub import ScrubbingSpanExporter, ScrubbingSpanProcessor, _spans

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    if as_they_end:
        provider.add_span_processor(ScrubbingSpanProcessor())
        provider.add_span_processor(SimpleSpanProcessor(memory))
    else:
        provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory)))

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("scrubber bug")

    monkeypatch.setattr(_spans, "scrub_attributes", broken)
    with provider.get_tracer("t").start_as_current_span("pay") as span:
        span.set_attribute("card", CARD)
        span.add_event("declined", {"pan": CARD})
    (exported,) = memory.get_finished_spans()
    assert dict(exported.attributes or {}) == {"otelfin.scrub_failed": True}
    assert list(exported.events) == [] and exported.name == "pay"
    provider.shutdown()
