"""End to end, as a CI job runs it: an app's stdout piped into ``otelfin logs validate -``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_APP = """
import logging, sys
import otelfin
from opentelemetry import trace

otelfin.configure(service_name="payment-gateway", error_code_policy=sys.argv[1])
log = otelfin.get_logger(channel="web")
with trace.get_tracer("app").start_as_current_span("pay"):
    log.info("payment_authorised", card="4111 1111 1111 1111", password="hunter2")
    log.error("payment_declined", error_code="PAY-012")
    log.error("payment_failed", error_code="PAY-999")
    try:
        raise otelfin.OtelfinError("DB-003", "deadlock on card 4111111111111111")
    except otelfin.OtelfinError:
        log.exception("ledger_failed")
logging.getLogger("vendor").warning("retry %s", "4111-1111-1111-1111")
if len(sys.argv) > 2:
    print('{"timestamp":"2026-11-25T07:30:41Z","level":"info","service_name":"legacy",'
          '"event":"raw print of 4111111111111111"}')
otelfin.shutdown()
"""


def _run(tmp_path: Path, *app_args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    app = tmp_path / "app.py"
    app.write_text(_APP)
    produced = subprocess.run(
        [sys.executable, str(app), *app_args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    validated = subprocess.run(
        [sys.executable, "-m", "otelfin.cli", "logs", "validate", "-"],
        input=produced.stdout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return validated, produced.stdout


def test_app_output_passes_validation(tmp_path: Path) -> None:
    """Everything the app writes (drop policy) validates clean and holds no card number."""
    validated, output = _run(tmp_path, "drop")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "4111111111111111" not in output and "hunter2" not in output
    assert "4111 1111" not in output and "4111-1111" not in output
    assert "checked 5 lines" in validated.stderr  # 4 events + the drop warning


def test_tag_policy_and_raw_leak_are_caught(tmp_path: Path) -> None:
    """A tagged unregistered code and a line printed around the logger fail the job."""
    validated, _ = _run(tmp_path, "tag", "leak")
    assert validated.returncode == 1
    report = validated.stdout
    # line 3 is otelfin's one warning about the tagged event, written just before it
    assert "-:4: error_code PAY-999 is not in the catalogue" in report
    assert "unmasked card number (ending 1111)" in report
