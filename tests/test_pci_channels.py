"""Keyed card fingerprints in every channel: one card, one token - in logs (structlog and the
stdlib bridge), span attributes, exception messages on spans, URLs, baggage, metric labels,
audit records and the validator's and filter's output; another key, another token."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from pathlib import Path

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

import otelfin
from otelfin import audit
from otelfin.cli import main
from otelfin.scrub import fingerprint

CARD = "4111 1111 1111 1111"
SHAPES = ["4111111111111111", "4111-1111-1111-1111", CARD, "\uff14111111111111111"]
TOKEN = re.compile(r"fp_[0-9a-f]{16}")


def _every_channel(key: str, tmp_path: Path) -> dict[str, str]:
    """Send the card through every channel under ``key``; the text each channel produced."""
    spans = InMemorySpanExporter()
    registry = CollectorRegistry()
    logs = io.StringIO()
    audit_file = tmp_path / f"audit-{key}.jsonl"
    otelfin.configure(
        "svc",
        span_exporter=spans,
        span_processor="simple",
        pan_fingerprint_key=key,
        log_stream=logs,
        metrics_registry=registry,
        metrics_labels=["channel"],
        audit_file=str(audit_file),
    )

    @otelfin.traced(attributes={"channel": "channel"})
    def pay(channel: str) -> int:
        return 1

    pay(SHAPES[1])
    otelfin.get_logger().info("authorised", card=SHAPES[0], note=f"card {SHAPES[2]}")
    logging.getLogger("lib").warning("card %s declined", SHAPES[3])
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=baggage.set_baggage("card", CARD))
    tracer = trace.get_tracer("t")
    with contextlib.suppress(ValueError), tracer.start_as_current_span("refund") as span:
        span.set_attribute("url.full", f"https://h/cards/{SHAPES[0]}?ref={SHAPES[1]}")
        raise ValueError(f"declined {CARD}")
    audit.record("card_data.read", actor="alice", outcome="success", card=CARD)
    finished = spans.get_finished_spans()
    refund = next(s for s in finished if s.name == "refund")
    paid = next(s for s in finished if "channel" in (s.attributes or {}))
    out = {
        "log": logs.getvalue().splitlines()[0],
        "stdlib": next(line for line in logs.getvalue().splitlines() if '"lib"' in line),
        "span attribute": str(dict(paid.attributes or {})["channel"]),
        "url": str(dict(refund.attributes or {})["url.full"]),
        "exception message": str(dict(refund.events[0].attributes or {})["exception.message"]),
        "baggage": carrier["baggage"],
        "metric label": next(
            line for line in generate_latest(registry).decode().splitlines() if "fp_" in line
        ),
        "audit": audit_file.read_text().splitlines()[1],
    }
    otelfin.shutdown()
    return out


def test_one_card_one_token_in_every_channel_two_keys_two_tokens(tmp_path: Path) -> None:
    """Every channel carries fingerprint()'s token for the card (every shape of it), and no
    raw card number; under a second key every channel carries the second key's token."""
    tokens = {}
    for key in ("key-one", "key-two"):
        seen = _every_channel(key, tmp_path)
        token = fingerprint(CARD, key=key)
        assert token is not None
        for channel, text in seen.items():
            assert set(TOKEN.findall(text)) == {token}, (key, channel, text)
            assert "4111111111111111" not in text and "4111 1111" not in text, (channel, text)
        log = json.loads(seen["log"])
        assert log["card"] == f"XXXXXXXXXXXX1111 {token}"
        tokens[key] = token
    assert tokens["key-one"] != tokens["key-two"]


def test_no_key_no_token_anywhere(tmp_path: Path) -> None:
    """Without a key no channel carries a token (never a plain hash)."""
    logs = io.StringIO()
    otelfin.configure("svc", log_stream=logs)
    otelfin.get_logger().info("authorised", card=CARD)
    logging.getLogger("lib").warning("card %s", CARD)
    otelfin.shutdown()
    assert "fp_" not in logs.getvalue() and "XXXXXXXXXXXX1111" in logs.getvalue()


def _cli(*argv: str) -> tuple[int, str]:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    out.flush()
    return code, raw.getvalue().decode("utf-8")


def test_validator_and_filter_name_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`logs validate` reports a leaked card with its token (from OTELFIN_PAN_FINGERPRINT_KEY),
    and `logs filter` dead-letters the line masked, with the same token."""
    line = json.dumps(
        {
            "timestamp": "2026-11-25T10:47:13.123456+00:00",
            "level": "info",
            "service_name": "svc",
            "event": f"leaked {CARD}",
        }
    )
    path = tmp_path / "logs.jsonl"
    path.write_text(line + "\n")
    monkeypatch.setenv("OTELFIN_PAN_FINGERPRINT_KEY", "key-one")
    token = fingerprint(CARD, key="key-one")
    code, out = _cli("logs", "validate", str(path))
    assert code == 1 and f"ending 1111 {token}" in out, out
    dead = tmp_path / "dead.jsonl"
    code, _ = _cli("logs", "filter", str(path), "--dead-letter", str(dead))
    assert code == 1
    text = dead.read_text()
    assert token in text and "4111 1111" not in text
    monkeypatch.setenv("OTELFIN_PAN_FINGERPRINT_KEY_FILE", str(tmp_path / "missing"))
    monkeypatch.delenv("OTELFIN_PAN_FINGERPRINT_KEY")
    assert _cli("logs", "validate", str(path))[0] == 2


def test_key_file_gives_the_same_tokens(tmp_path: Path) -> None:
    """pan_fingerprint_key_file (first line) is the same key as pan_fingerprint_key."""
    key_file = tmp_path / "fp.key"
    key_file.write_text("key-one\n# comment\n")
    logs = io.StringIO()
    otelfin.configure("svc", pan_fingerprint_key_file=str(key_file), log_stream=logs)
    otelfin.get_logger().info("x", card=CARD)
    otelfin.shutdown()
    assert fingerprint(CARD, key="key-one") in logs.getvalue()


def test_an_all_decimal_span_id_is_not_a_leak() -> None:
    """A line's span_id whose 16 hex digits happen to be decimal and card-shaped (about one
    in 60,000: it failed a demo run) is an id; the same digits anywhere else are a leak."""
    from otelfin.tools.logs import make_line_checker

    check = make_line_checker(None)
    line = (
        b'{"timestamp":"2026-11-25T10:47:13.123456+00:00","level":"info","service_name":"svc",'
        b'"event":"x","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"4111111111111111"}'
    )
    assert check(line) is None
    assert check(line.replace(b'"event":"x"', b'"event":"\\u0078"')) is None  # escaped path
    leaked = check(line.replace(b'"event":"x"', b'"event":"card 4111111111111111"'))
    assert leaked is not None and "unmasked card number" in leaked[0]
    elsewhere = check(line.replace(b'"event":"x"', b'"ref":"4111111111111111","event":"x"'))
    assert elsewhere is not None
