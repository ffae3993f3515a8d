"""The first snippets a newcomer pastes (the tracing tour, own structlog set-up) do what the
docs say. Every other example runs in tests/test_docs_examples.py."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import structlog

import otelfin
from otelfin.logging import validate_file
from otelfin.testing import configured_for_test

ROOT = Path(__file__).resolve().parents[1]


def _snippet(heading: str, page: str = "docs/guides/tracing.md") -> str:
    text = (ROOT / page).read_text()
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_quick_start_prints_logs_result_and_spans(tmp_path: Path) -> None:
    """The tracing tour, run as written, shows masked JSON logs, the result and both spans."""
    (tmp_path / "quick.py").write_text(_snippet("## A tour in one script"))
    result = subprocess.run(
        [sys.executable, "quick.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    logs = [json.loads(line) for line in out.splitlines() if line.startswith('{"timestamp"')]
    received = [r for r in logs if r["event"] == "payment_received"]
    assert [r["card"] for r in received] == ["XXXXXXXXXXXX1111", "XXXXXXXXXXXX0004"]
    assert all(len(r["trace_id"]) == 32 for r in received)
    assert "approved" in out.splitlines()
    assert out.count('"name": "process_payment"') == 2
    assert '"otelfin.error_code": "PAY-012"' in out
    assert "4111 1111 1111 1111" not in out


def test_own_structlog_setup_writes_one_line_per_event(tmp_path: Path) -> None:
    """The logging guide's structlog.configure(...) set-up: one JSON line per event."""
    out = io.BytesIO()
    try:
        with configured_for_test("payment-gateway", stdlib_bridge=False):
            structlog.configure(
                processors=otelfin.logging.processors(),
                logger_factory=structlog.BytesLoggerFactory(out),
            )
            log = structlog.get_logger()
            log.info("payment_authorised", card="4111 1111 1111 1111")
            log.warning("payment_declined", error_code="PAY-012")
    finally:
        structlog.reset_defaults()
    text = out.getvalue().decode()
    assert text.count("\n") == 2 and "\n\n" not in text
    path = tmp_path / "own.jsonl"
    path.write_text(text)
    report = validate_file(str(path))
    assert report.lines == 2 and report.bad_lines == 0, report.violations


def test_otelfin_logger_still_writes_one_line_per_event() -> None:
    """otelfin's own sink ends each line once, now that the renderer leaves that to it."""
    stream = io.BytesIO()
    with configured_for_test("payment-gateway", log_stream=stream, stdlib_bridge=False):
        otelfin.get_logger().info("one")
        otelfin.get_logger().info("two")
    assert [json.loads(line)["event"] for line in stream.getvalue().split(b"\n") if line] == [
        "one",
        "two",
    ]
    assert stream.getvalue().endswith(b"}\n") and b"\n\n" not in stream.getvalue()
