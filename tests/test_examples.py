"""The examples a newcomer runs first (`make demo`) keep working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_tours_all_pillars(tmp_path: Path) -> None:
    """quickstart.py traces, meters, logs masked lines and validates them clean."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"QUICKSTART_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "== 1. traces: 7 spans in 3 traces" in out
    assert 'error_code="PAY-012"' in out and 'error_code="RISK-001"' in out
    # Both are business declines (severity warning), counted apart from errors.
    assert "otelfin_request_errors_total{" not in out
    assert out.count("otelfin_request_declines_total{") == 2
    assert "6 lines, 0 bad" in out
    logs = [json.loads(line) for line in (tmp_path / "logs.jsonl").read_text().splitlines()]
    cards = [line["card"] for line in logs if "card" in line]
    assert cards == ["XXXXXXXXXXXX1111", "XXXXXXXXXXXX0004", "XXXXXXXXXXXX1881"]
    received = [line for line in logs if line["event"] == "payment_received"]
    assert all(len(line["trace_id"]) == 32 for line in received)
    assert "4111 1111 1111 1111" not in (tmp_path / "spans.jsonl").read_text()
