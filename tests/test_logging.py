"""The logging pipeline: JSON shape, trace correlation, catalogue policies, masking, bridge."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import jsonschema
import orjson
import pytest
import structlog
from opentelemetry import trace
from prometheus_client import CollectorRegistry

import otelfin
from otelfin import _internal
from otelfin.catalogue import default_catalogue
from otelfin.logging import (
    OtelfinHandler,
    UnregisteredErrorCodeError,
    capture_logs,
    processors,
    schema,
)
from otelfin.testing import configured_for_test
from otelfin.tools.logs._validate import make_line_checker

VISA = "4111111111111111"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")


def _sample(registry: CollectorRegistry, code: str) -> float:
    value = registry.get_sample_value("otelfin_unregistered_error_codes_total", {"code": code})
    return value or 0.0


def test_writes_json_to_stdout_before_configure(capsys: pytest.CaptureFixture[str]) -> None:
    """get_logger() works before configure(): one JSON object per line on stdout."""
    otelfin.get_logger(request_id="r-1").info("started", port=8080)
    line = capsys.readouterr().out.strip()
    record = json.loads(line)
    assert list(record)[:4] == ["timestamp", "level", "service_name", "event"]
    assert record["event"] == "started" and record["level"] == "info"
    assert record["request_id"] == "r-1" and record["port"] == 8080
    assert record["service_name"] == "unknown-service"
    assert TIMESTAMP.fullmatch(record["timestamp"])


def test_logger_made_before_configure_follows_it(capsys: pytest.CaptureFixture[str]) -> None:
    """A module-level logger picks up the service name and level of a later configure()."""
    log = otelfin.get_logger()
    log.debug("hidden")
    with configured_for_test("payment-gateway", log_level="debug"):
        log.debug("shown")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"event"' in x]
    assert [r["event"] for r in lines if r.get("logger") is None] == ["shown"]
    assert lines[-1]["service_name"] == "payment-gateway"


def test_trace_ids_of_the_active_span() -> None:
    """Inside a span the line carries its trace_id/span_id; outside it carries none."""
    with configured_for_test("payment-gateway"), capture_logs() as logs:
        log = otelfin.get_logger()
        tracer = trace.get_tracer("t")
        with tracer.start_as_current_span("pay") as span:
            log.info("inside")
        log.info("outside")
    ctx = span.get_span_context()
    assert logs[0]["trace_id"] == format(ctx.trace_id, "032x")
    assert logs[0]["span_id"] == format(ctx.span_id, "016x")
    assert "trace_id" not in logs[1] and "span_id" not in logs[1]


def test_masks_card_numbers_at_any_depth_and_redacts_secrets() -> None:
    """Card numbers in messages, nested values and numbers are masked; secrets redacted."""
    with configured_for_test("payment-gateway"), capture_logs() as logs:
        otelfin.get_logger(api_key="k-123").info(
            f"charging card {VISA}",
            card={"pan_text": f"4111-1111-1111-{VISA[-4:]}", "history": [(int(VISA),)]},
            password="hunter2",
            order_id="4111111111111112",  # Luhn-invalid: kept
        )
    line = logs.lines[0].decode()
    assert VISA not in line and "4111-1111" not in line and "hunter2" not in line
    record = logs[0]
    assert record["event"] == "charging card XXXXXXXXXXXX1111"
    assert record["card"]["history"] == [["XXXXXXXXXXXX1111"]]
    assert record["api_key"] == "[REDACTED]" and record["password"] == "[REDACTED]"
    assert record["order_id"] == "4111111111111112"


def test_first6last4_mask_from_config() -> None:
    """configure(pan_mask='first6last4') keeps the BIN on log lines."""
    with configured_for_test("payment-gateway", pan_mask="first6last4"), capture_logs() as logs:
        otelfin.get_logger().info("paid", note=f"card {VISA}")
    assert logs[0]["note"] == "card 411111XXXXXX1111"


def test_drop_policy_counts_and_warns_once_per_code() -> None:
    """Policy drop: the event is not written, the counter counts, one warning per code."""
    registry = CollectorRegistry()
    with (
        configured_for_test("payment-gateway", error_code_policy="drop", metrics_registry=registry),
        capture_logs() as logs,
    ):
        log = otelfin.get_logger()
        log.error("declined", error_code="PAY-999")
        log.error("declined again", error_code="PAY-999")
        log.error("no code at all")
        log.error("fine", error_code="PAY-012")
    events = [r["event"] for r in logs]
    assert "declined" not in events and "no code at all" not in events and "fine" in events
    warnings = [r for r in logs if r.get("logger") == "otelfin"]
    assert len(warnings) == 2  # one for PAY-999, one for the missing code
    assert "PAY-999" in warnings[0]["event"]
    assert _sample(registry, "PAY-999") == 2
    assert _sample(registry, "missing") == 1
    assert len(logs.violations) == 3


def test_tag_policy_keeps_and_marks() -> None:
    """Policy tag: the event is written with catalogue_violation explaining the problem."""
    registry = CollectorRegistry()
    with (
        configured_for_test("payment-gateway", error_code_policy="tag", metrics_registry=registry),
        capture_logs() as logs,
    ):
        otelfin.get_logger().error("declined", error_code="PAY-999")
    (event,) = [r for r in logs if r["event"] == "declined"]
    assert event["error_code"] == "PAY-999"
    assert "PAY-999" in event["catalogue_violation"]
    assert _sample(registry, "PAY-999") == 1


def test_raise_policy_raises_for_unknown_and_missing_codes() -> None:
    """Policy raise: an unregistered or missing code raises from the log call (for tests)."""
    with configured_for_test("payment-gateway", error_code_policy="raise"), capture_logs():
        log = otelfin.get_logger()
        with pytest.raises(UnregisteredErrorCodeError, match="PAY-999"):
            log.error("declined", error_code="PAY-999")
        with pytest.raises(UnregisteredErrorCodeError, match="missing"):
            log.critical("broken")
        log.warning("a warning needs no code")


def test_code_label_cardinality_is_bounded() -> None:
    """Only DOMAIN-NNN codes become label values, up to the budget; the rest fold."""
    registry = CollectorRegistry()
    with (
        configured_for_test(
            "payment-gateway",
            error_code_policy="tag",
            metrics_registry=registry,
            max_error_code_labels=2,
        ),
        capture_logs(),
    ):
        log = otelfin.get_logger()
        for code in ("PAY-901", "PAY-902", "PAY-903", "PAY-904", f"card {VISA}"):
            log.error("x", error_code=code)
    assert _sample(registry, "PAY-901") == 1 and _sample(registry, "PAY-902") == 1
    assert _sample(registry, "other") == 2
    assert _sample(registry, "malformed") == 1
    samples = [s.labels.get("code", "") for m in registry.collect() for s in m.samples]
    assert not any(VISA in label for label in samples)


def test_enrich_adds_catalogue_fields() -> None:
    """enrich_logs=True adds the registered code's message, retryable and http_status."""
    with configured_for_test("payment-gateway", enrich_logs=True), capture_logs() as logs:
        otelfin.get_logger().warning("declined", error_code="PAY-012")
    assert logs[0]["error_message"] == "Insufficient balance"
    assert logs[0]["retryable"] is False
    assert logs[0]["http_status"] == 402


def test_exception_carries_its_code_and_is_scrubbed() -> None:
    """log.exception() takes error_code from an OtelfinError and masks the traceback."""
    with configured_for_test("payment-gateway"), capture_logs() as logs:
        try:
            raise otelfin.OtelfinError("PAY-012", f"card {VISA} declined")
        except otelfin.OtelfinError:
            otelfin.get_logger().exception("declined")
    assert logs[0]["error_code"] == "PAY-012" and logs[0]["level"] == "error"
    assert "OtelfinError" in logs[0]["exception"] and VISA not in logs[0]["exception"]


def test_stdlib_records_use_the_same_chain() -> None:
    """A third-party stdlib record becomes the same JSON: masked, trace ids, extra fields."""
    with configured_for_test("payment-gateway"), capture_logs() as logs:
        with trace.get_tracer("t").start_as_current_span("call") as span:
            logging.getLogger("vendor.sdk").info("sent %s", f"card {VISA}", extra={"attempt": 2})
        logging.getLogger("vendor.sdk").error("boom", extra={"error_code": "NET-001"})
    assert logs[0]["event"] == "sent card XXXXXXXXXXXX1111"
    assert logs[0]["logger"] == "vendor.sdk" and logs[0]["attempt"] == 2
    assert logs[0]["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert logs[1]["level"] == "error" and logs[1]["error_code"] == "NET-001"


def test_reconfigure_does_not_stack_handlers() -> None:
    """configure() twice keeps one stdlib bridge handler and writes each line once."""
    with configured_for_test("payment-gateway"):
        otelfin.configure("payment-gateway", log_level="debug")
        otelfin.configure("payment-gateway", log_level="info")
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, OtelfinHandler)]
        assert len(handlers) == 1
        with capture_logs() as logs:
            logging.getLogger("x").warning("once")
        assert len(logs) == 1
    assert not [h for h in logging.getLogger().handlers if isinstance(h, OtelfinHandler)]


def test_log_file_and_switching(tmp_path: Path) -> None:
    """log_file= appends lines to the file; reconfiguring moves output to the new file."""
    first, second = tmp_path / "a" / "app.jsonl", tmp_path / "b.jsonl"
    with configured_for_test("payment-gateway", log_file=str(first), stdlib_bridge=False):
        otelfin.get_logger().info("one")
        otelfin.configure("payment-gateway", log_file=str(second), stdlib_bridge=False)
        otelfin.get_logger().info("two")
    assert [json.loads(x)["event"] for x in first.read_text().splitlines()] == ["one"]
    assert [json.loads(x)["event"] for x in second.read_text().splitlines()] == ["two"]


def test_log_stream_option() -> None:
    """A text or binary stream given as log_stream receives the lines."""
    text, binary = io.StringIO(), io.BytesIO()
    with configured_for_test("payment-gateway", log_stream=text, stdlib_bridge=False):
        otelfin.get_logger().info("to text")
        otelfin.configure("payment-gateway", log_stream=binary, stdlib_bridge=False)
        otelfin.get_logger().info("to bytes")
    assert json.loads(text.getvalue())["event"] == "to text"
    assert json.loads(binary.getvalue())["event"] == "to bytes"


def test_processors_for_own_structlog_config() -> None:
    """processors() drops into a team's own structlog setup and renders the same line."""
    out = io.BytesIO()
    log = structlog.wrap_logger(
        structlog.BytesLogger(out), processors=processors(service_name="ledger")
    )
    log.info("posted", pan=VISA, amount="1.00")
    record = orjson.loads(out.getvalue())
    assert record["service_name"] == "ledger" and record["pan"] == "[REDACTED]"
    assert record["level"] == "info" and TIMESTAMP.fullmatch(record["timestamp"])


def test_lines_match_the_schema_and_the_validator() -> None:
    """Every line the pipeline writes passes the shipped JSON Schema and the validator."""
    validator = jsonschema.Draft7Validator(schema())
    check = make_line_checker(frozenset(default_catalogue()))
    with configured_for_test("payment-gateway"), capture_logs() as logs:
        log = otelfin.get_logger(card=VISA)
        with trace.get_tracer("t").start_as_current_span("s"):
            log.error("declined", error_code="PAY-012", ref=f"x {VISA} y")
        log.info("plain", values=[1, 2.5, None, {"k": VISA}])
        logging.getLogger("lib").warning("careful %s", VISA)
    assert len(logs.lines) == 3
    for line in logs.lines:
        validator.validate(orjson.loads(line))
        assert check(line.rstrip(b"\n")) is None


def test_unserialisable_values_never_break_the_caller() -> None:
    """Odd values render as scrubbed text; a value whose str() raises still gets its line."""

    class Card:
        def __str__(self) -> str:
            return f"Card({VISA})"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    with configured_for_test("payment-gateway"), capture_logs() as logs:
        log = otelfin.get_logger()
        log.info("odd", card=Card(), big=2**80, raw=b"bytes")
        log.info("broken", value=Broken())
    assert logs[0]["card"] == "Card(XXXXXXXXXXXX1111)" and logs[0]["big"] == 2**80
    assert logs[0]["raw"] == "bytes"
    assert logs[1]["event"] == "broken" and logs[1]["value"] == "<unprintable Broken>"
    assert not _internal.internal_error_counts()


def test_span_scrubber_installed_by_configure() -> None:
    """configure() puts the scrubber in front of the exporter: spans leave masked."""
    with configured_for_test("payment-gateway") as exporter:

        @otelfin.traced()
        def pay(card: str) -> None:
            trace.get_current_span().set_attribute("password", "hunter2")
            raise ValueError(f"card {card} declined")

        with pytest.raises(ValueError, match=VISA):
            pay(VISA)  # the caller's exception is untouched
        (span,) = exporter.get_finished_spans()
    dumped = span.to_json()
    assert VISA not in dumped and "hunter2" not in dumped
    assert "XXXXXXXXXXXX1111" in dumped


def test_application_processors_see_scrubbed_spans() -> None:
    """On a reused application provider, the app's own exporter only gets masked spans."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otelfin.scrub import scrubbed_as_they_end
    from otelfin.testing import reset_tracer_provider

    reset_tracer_provider()
    provider = TracerProvider()
    app_exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(app_exporter))  # before otelfin
    trace.set_tracer_provider(provider)
    ours = InMemorySpanExporter()
    otelfin.configure("payment-gateway", span_exporter=ours, span_processor="simple")
    with provider.get_tracer("app").start_as_current_span(f"card {VISA}") as span:
        span.set_attribute("note", f"pan {VISA}")
        span.set_attribute("token", "secret-token")
        span.add_event("checked", {"card": "4111 1111 1111 1111"})
    (seen,) = app_exporter.get_finished_spans()
    assert VISA not in seen.to_json() and "secret-token" not in seen.to_json()
    assert seen.name == "card XXXXXXXXXXXX1111"
    assert seen.attributes is not None and seen.attributes["token"] == "[REDACTED]"
    assert seen.events[0].attributes == {"card": "XXXXXXXXXXXX1111"}
    assert VISA not in ours.get_finished_spans()[0].to_json()
    assert scrubbed_as_they_end()  # scrubbed once, as it ended; not again on export
    otelfin.shutdown()
    assert not scrubbed_as_they_end()
    provider.shutdown()


@pytest.mark.otelfin_internal_errors
def test_broken_output_never_breaks_the_caller() -> None:
    """A log stream that fails on write is contained: the call returns, the failure counted."""
    stream = io.StringIO()
    stream.close()
    with configured_for_test("payment-gateway", log_stream=stream, stdlib_bridge=False):
        otelfin.get_logger().info("lost")
    assert _internal.internal_error_counts().get("logging.emit") == 1


def test_own_provider_scrubs_at_export_time() -> None:
    """On a provider otelfin created, scrubbing stays in the exporter, off the request path."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otelfin.scrub import scrubbed_as_they_end
    from otelfin.testing import reset_tracer_provider

    reset_tracer_provider()
    ours = InMemorySpanExporter()
    otelfin.configure("payment-gateway", span_exporter=ours, span_processor="simple")
    assert not scrubbed_as_they_end()
    with trace.get_tracer("t").start_as_current_span("pay") as span:
        span.set_attribute("note", f"pan {VISA}")
    assert VISA not in ours.get_finished_spans()[0].to_json()
    otelfin.shutdown()


def test_stdlib_error_code_for_library_errors() -> None:
    """stdlib_error_code= gives codeless library errors a code instead of dropping them."""
    with (
        configured_for_test("payment-gateway", stdlib_error_code="NET-002"),
        capture_logs() as logs,
    ):
        logging.getLogger("vendor").error("connection reset")
        logging.getLogger("vendor").error("bad", extra={"error_code": "DB-001"})
    assert [(r["event"], r["error_code"]) for r in logs] == [
        ("connection reset", "NET-002"),
        ("bad", "DB-001"),
    ]
    with pytest.raises(ValueError, match="NOPE-001"):
        otelfin.configure("payment-gateway", stdlib_error_code="NOPE-001")


def test_non_text_events_become_text() -> None:
    """log.info() without an event, or with a number, still writes a string event."""
    with configured_for_test("payment-gateway"), capture_logs() as logs:
        log = otelfin.get_logger()
        log.info()
        log.info(4111111111111111)
        log.info("paid %s of %s", 1, 2)
    assert [r["event"] for r in logs] == ["", "XXXXXXXXXXXX1111", "paid 1 of 2"]


def test_contextvars_fields_on_every_line() -> None:
    """Fields bound with structlog.contextvars appear (scrubbed) on otelfin and stdlib lines."""
    from structlog.contextvars import bind_contextvars, clear_contextvars

    with configured_for_test("payment-gateway"), capture_logs() as logs:
        bind_contextvars(request_id="req-7", card_hint=VISA)
        try:
            otelfin.get_logger().info("one")
            logging.getLogger("lib").info("two")
        finally:
            clear_contextvars()
    assert [(r["request_id"], r["card_hint"]) for r in logs] == [
        ("req-7", "XXXXXXXXXXXX1111"),
        ("req-7", "XXXXXXXXXXXX1111"),
    ]


def test_unwritable_log_file_is_a_configuration_error(tmp_path: Path) -> None:
    """A log_file that cannot be opened fails configure() with ValueError naming it."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ValueError, match="not-a-dir"):
        otelfin.configure("payment-gateway", log_file=str(blocker / "app.jsonl"))
