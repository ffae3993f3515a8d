"""Every channel that leaves the process times every payload shape: no card number gets out.

Channels: structured logs, the stdlib bridge (server loggers included), span name /
attributes / events / status, baggage, tracestate, metric label values (long ones cut
after masking), URL attributes, and the CLI's validator output in all four formats.
"""

from __future__ import annotations

import contextlib
import io
import logging
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import orjson
import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, generate_latest

import otelfin
from otelfin import propagation, traced
from otelfin.cli import main
from otelfin.logging import capture_logs
from otelfin.scrub import find_pans

VISA = "4111111111111111"


def _wide(text: str, zero: int) -> str:
    return text.translate({ord(d): zero + int(d) for d in "0123456789"})


# One representative per shape class.
SHAPES = {
    "plain": VISA,
    "spaces": "4111 1111 1111 1111",
    "dots": "4111.1111.1111.1111",
    "underscores": "4111_1111_1111_1111",
    "repeated/mixed": "4111  1111-1111 / 1111",
    "no-break": "4111\u00a01111\u00a01111\u00a01111",
    "full-width": _wide(VISA, 0xFF10),
    "arabic-indic": _wide(VISA, 0x0660),
    "glued": f"ref{VISA}USD",
    "glued to a long word": f"{'Zz' * 150}{VISA}",
    "decimal": f"{VISA}.00",
    "percent-encoded": "4111%201111%201111%201111",
}
IDS = list(SHAPES)


def _leaks(text: str) -> list[tuple[int, int]]:
    """Card numbers in ``text``, read as it is and percent-decoded."""
    return find_pans(text) + find_pans(unquote(text))


def _span_json(span: Any) -> str:
    """The span's JSON without its own random ids: an id whose hex happens to hold 13+ decimal
    digits passing Luhn (about 1 span in 4,000) is an id, not a card number (a flake seen in
    a full run)."""
    text = span.to_json()
    text = text.replace(f"0x{span.context.trace_id:032x}", "0x<trace-id>")
    for value in (span.context.span_id, span.parent.span_id if span.parent else None):
        if value is not None:
            text = text.replace(f"0x{value:016x}", "0x<span-id>")
    return text


def _digits(text: str) -> str:
    return "".join(str(unicodedata.decimal(c)) for c in text if c.isdecimal())


@pytest.mark.parametrize("shape", IDS)
def test_structured_logs(shape: str, spans: InMemorySpanExporter) -> None:
    """A card number in a field, a nested value and the event text is masked on the line."""
    pan = SHAPES[shape]
    with capture_logs() as logs:
        otelfin.get_logger().info(f"paid with {pan}", note=pan, nested={"deep": [pan]})
    (line,) = logs.lines
    assert _leaks(line.decode()) == []
    assert logs.problems() == []


@pytest.mark.parametrize("propagate", [True, False], ids=["bridged", "own-handler-only"])
@pytest.mark.parametrize("logger_name", ["uvicorn.access", "gunicorn.error", "urllib3"])
@pytest.mark.parametrize("shape", IDS)
def test_stdlib_bridge_and_server_logs(
    shape: str, logger_name: str, propagate: bool, spans: InMemorySpanExporter
) -> None:
    """Library and server loggers (stdlib) get the same scrubber: through otelfin's bridge,
    and through their own handlers when, as uvicorn and gunicorn configure them, they do not
    propagate to the root logger."""
    pan = SHAPES[shape]
    log = logging.getLogger(logger_name)
    own = io.StringIO()
    handler = logging.StreamHandler(own)
    # An in-process uvicorn/gunicorn earlier in the session may have set these loggers' level,
    # filters or disabled flag (dictConfig does); start each case from a plain logger.
    saved = (log.propagate, log.level, log.disabled, log.filters[:], log.handlers[:])
    log.handlers, log.filters = [], []
    log.setLevel(logging.NOTSET)
    log.disabled = False
    log.addHandler(handler)
    log.propagate = propagate
    try:
        with capture_logs() as logs:
            log.warning('%s - "GET /pay?card=%s HTTP/1.1" 200', "127.0.0.1:5000", quote(pan))
            log.warning(f"declined {pan}")
            try:
                raise ValueError(f"bad card {pan}")
            except ValueError:
                log.warning("charge failed", exc_info=True)
    finally:
        log.propagate, level, log.disabled, log.filters, log.handlers = saved
        log.setLevel(level)
    written = own.getvalue()
    assert written.count("\n") >= 3 and "bad card" in written
    assert _leaks(written) == []
    mine = [line for line in logs if line.get("logger") == logger_name]
    assert len(mine) == (3 if propagate else 0)
    for line in logs.lines:
        assert _leaks(line.decode()) == []


@pytest.mark.parametrize("scrub_as_spans_end", [False, True], ids=["on-export", "on-ending"])
@pytest.mark.parametrize("shape", IDS)
def test_span_name_attributes_events_status(shape: str, scrub_as_spans_end: bool) -> None:
    """Name, attributes, event attributes, exception text and status are masked, both modes."""
    from otelfin.testing import configured_for_test

    pan = SHAPES[shape]
    with configured_for_test(scrub_all_spans=scrub_as_spans_end) as exporter:
        with trace.get_tracer("t").start_as_current_span(f"charge {pan}") as span:
            span.set_attribute("note", pan)
            span.set_attribute("amount_as_float", float(VISA))
            span.add_event("checked", {"card": pan})
            span.record_exception(ValueError(f"bad card {pan}"))
            span.set_status(Status(StatusCode.ERROR, f"declined {pan}"))
        (finished,) = exporter.get_finished_spans()
    assert _leaks(_span_json(finished)) == []
    assert "1111" in finished.name


@pytest.mark.parametrize("shape", IDS)
def test_url_attributes(shape: str, spans: InMemorySpanExporter) -> None:
    """http.url / url.full / http.target / url.query of any HTTP span are scrubbed."""
    pan = SHAPES[shape]
    enc = quote(pan)
    with trace.get_tracer("t").start_as_current_span("GET") as span:
        span.set_attribute("http.url", f"https://u:pw@api.example/pay?cvv=123&enc={enc}")
        span.set_attribute("url.full", f"https://api.example/cards/{enc}")
        span.set_attribute("http.target", f"/pay?token=abc&card={enc}")
        span.set_attribute("url.query", f"card={enc}&pin=1234")
    (finished,) = spans.get_finished_spans()
    attributes = dict(finished.attributes or {})
    for value in attributes.values():
        assert _leaks(str(value)) == []
    assert "123" not in attributes["http.url"] and "pw@" not in attributes["http.url"]
    assert "abc" not in attributes["http.target"]
    assert "1234" not in attributes["url.query"]


@pytest.mark.parametrize("shape", IDS)
def test_baggage(shape: str, spans: InMemorySpanExporter) -> None:
    """A card number in a baggage value never leaves on inject, nor survives extract."""
    pan = SHAPES[shape]
    ctx = baggage.set_baggage("note", pan)
    carrier: dict[str, str] = {}
    propagation.inject(carrier, context=ctx)
    assert _leaks(carrier.get("baggage", "")) == []
    extracted = propagation.extract({"baggage": f"note={quote(pan)},tenant=acme"})
    assert _leaks(str(baggage.get_all(extracted))) == []
    assert baggage.get_baggage("tenant", extracted) == "acme"


def _ascii_shape(pan: str) -> str:
    """The tracestate value alphabet is printable ASCII: non-ASCII shapes are encoded."""
    return pan if pan.isascii() else quote(pan)


@pytest.mark.parametrize("shape", IDS)
def test_tracestate(shape: str, spans: InMemorySpanExporter) -> None:
    """A tracestate member holding a card number is deleted on extract: never injected or
    exported; the other members travel on."""
    pan = _ascii_shape(SHAPES[shape]).replace(",", "").replace("=", "")
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    extracted = propagation.extract(
        {"traceparent": traceparent, "tracestate": f"vendor=a{pan},congo=t61rcWkgMzE"}
    )
    token = context.attach(extracted)
    try:
        with trace.get_tracer("t").start_as_current_span("child"):
            carrier: dict[str, str] = {}
            propagation.inject(carrier)
    finally:
        context.detach(token)
    state = carrier.get("tracestate", "")
    if len(pan) + 1 <= 256:
        assert "congo=t61rcWkgMzE" in state
    else:  # a member value over W3C's 256 characters makes the whole header invalid
        assert state == ""
    assert _leaks(state) == []
    (finished,) = spans.get_finished_spans()
    assert _leaks(_span_json(finished)) == []


def test_tracestate_set_by_the_application_is_cleaned_on_inject_and_export(
    spans: InMemorySpanExporter,
) -> None:
    """A tracestate the application built itself with a card number is not injected or
    exported either."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    state = TraceState([("vendor", VISA), ("congo", "ok")])
    parent = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1), state
    )
    ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    with trace.get_tracer("t").start_as_current_span("child", context=ctx):
        carrier: dict[str, str] = {}
        propagation.inject(carrier)
    assert carrier["tracestate"] == "congo=ok"
    (finished,) = spans.get_finished_spans()
    assert VISA not in finished.to_json()


@pytest.mark.parametrize("shape", IDS)
def test_metric_label_values(shape: str, prom_registry: CollectorRegistry) -> None:
    """A label value holding a card number is masked, also when it is cut to 100 characters
    (mask first: a cut would leave 13-15 digits, which Luhn completes)."""
    pan = SHAPES[shape]

    @traced(attributes={"payment.channel": "channel"})
    def pay(channel: str) -> str:
        return "ok"

    assert pay(pan) == "ok"
    assert pay("x" * 85 + pan) == "ok"
    exposition = generate_latest(prom_registry).decode()
    assert _leaks(exposition) == []
    assert VISA[:13] not in _digits(exposition)


@pytest.mark.otelfin_internal_errors
def test_internal_error_where_label_is_masked(prom_registry: CollectorRegistry) -> None:
    """The where label of otelfin_internal_errors_total never shows a card number."""
    from otelfin import _internal
    from otelfin.metrics._collectors import InternalErrorsCollector

    registry = CollectorRegistry()
    registry.register(InternalErrorsCollector())
    with contextlib.suppress(Exception):
        _internal.report(f"exporter.export[{VISA}]")
    try:
        assert VISA not in generate_latest(registry).decode()
    finally:
        _internal.reset()


_BAD_LINES = [
    ("error_code", lambda pan: {"error_code": f"x {pan}"}),
    ("timestamp", lambda pan: {"timestamp": f"{'9' * 30} {pan}"}),
    ("level", lambda pan: {"level": f"lvl {pan}"}),
    ("service_name", lambda pan: {"service_name": f"Svc {pan}"}),
    ("trace_id", lambda pan: {"trace_id": f"{pan}"}),
]


def _line(**fields: Any) -> bytes:
    base = {
        "timestamp": "2026-11-25T10:47:13.123+00:00",
        "level": "error",
        "service_name": "payment-gateway",
        "event": "payment_declined",
        "error_code": "PAY-012",
    }
    base.update(fields)
    return orjson.dumps(base)


@pytest.mark.parametrize("fmt", ["text", "json", "github", "junit"])
@pytest.mark.parametrize("shape", IDS)
def test_cli_validator_output(shape: str, fmt: str, tmp_path: Path) -> None:
    """otelfin logs validate flags every leaked card number (\\u-escaped and non-JSON lines
    too) and never prints more than the masked form, in every format."""
    pan = SHAPES[shape]
    lines = [_line(**make(pan)) for _, make in _BAD_LINES]
    lines.append(_line(note=pan))
    escaped = "".join(f"\\u{ord(c):04x}" for c in pan)
    lines.append(_line().replace(b'"event"', b'"note":"' + escaped.encode() + b'","event"'))
    lines.append(f"plain text line, card {pan}".encode())
    path = tmp_path / "app.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["logs", "validate", str(path), "--format", fmt])
    text = out.getvalue()
    assert code == 1
    assert _leaks(text) == [], text
    assert VISA[:13] not in _digits(text)
    if fmt == "text":
        flagged = [n for n in range(1, len(lines) + 1) if f"app.jsonl:{n}: " in text]
        assert f"app.jsonl:{len(lines) - 1}: unmasked card number" in text  # \\u escapes
        assert "unmasked card number" in text.split(f"app.jsonl:{len(lines)}: ", 1)[1]
        assert len(flagged) == len(lines)


def test_zero_code_opentelemetry_instrument(tmp_path: Path) -> None:
    """opentelemetry-instrument with the OTel distro's own exporter (no configure() call):
    spans of the include list reach the console exporter masked."""
    import os
    import shutil
    import subprocess
    import sys

    (tmp_path / "shop.py").write_text(
        "from opentelemetry import trace\n\n"
        "def charge(amount):\n"
        f"    trace.get_current_span().set_attribute('note', 'card {VISA}')\n"
        "    return amount\n"
    )
    (tmp_path / "app.py").write_text("import shop\nprint('result', shop.charge(5))\n")
    launcher = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    assert launcher is not None
    env = {
        **os.environ,
        "OTELFIN_METHODS_INCLUDE": "shop:charge",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "PYTHONPATH": str(tmp_path),
    }
    done = subprocess.run(
        [launcher, sys.executable, "app.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "result 5" in done.stdout
    assert '"name": "charge"' in done.stdout
    assert "XXXXXXXXXXXX1111" in done.stdout
    assert VISA not in done.stdout
