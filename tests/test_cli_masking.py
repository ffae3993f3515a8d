"""Whatever a command quotes from its input (a span name, a label line, a file name, a catalogue
value), a card number in it reaches the terminal masked, on stdout and stderr, text and JSON."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from otelfin.cli import main

PAN = "4111111111111111"


def _spans_file(tmp_path: Path) -> Path:
    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": f"GET /cards/{PAN}",
        "kind": 2,
        "startTimeUnixNano": "1000000000",
        "endTimeUnixNano": "1100000000",
        "status": {},
        "attributes": [{"key": "otelfin.error_code", "value": {"stringValue": f"PAY {PAN}"}}],
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": f"svc {PAN}"}}]}
    line = {
        "resourceSpans": [
            {"resource": resource, "scopeSpans": [{"scope": {"name": "x"}, "spans": [span]}]}
        ]
    }
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    return path


def _raw_file(tmp_path: Path) -> Path:
    path = tmp_path / "raw.txt"
    path.write_text(f'{{"card":"{PAN}","x":1}}\n', encoding="utf-8")
    return path


def _catalogue(tmp_path: Path) -> Path:
    path = tmp_path / "cat.yaml"
    path.write_text(f'codes:\n  PAY-999:\n    message: "x"\n    severity: bogus {PAN}\n')
    return path


@pytest.mark.parametrize(
    "command",
    [
        lambda t: ["p99", "report", "--file", str(_raw_file(t))],
        lambda t: ["buckets", "suggest", "--file", str(_raw_file(t))],
        lambda t: ["traces", "show", str(_spans_file(t))],
        lambda t: ["traces", "show", str(_spans_file(t)), "--format", "json"],
        lambda t: ["traces", "why", str(_spans_file(t)), "--by", "span"],
        lambda t: ["traces", "why", str(_spans_file(t)), "--by", "span", "--format", "json"],
        lambda t: ["codes", "lint", str(_catalogue(t))],
        lambda t: ["traces", "show", str(t / f"missing-{PAN}.jsonl")],
        lambda t: ["p99", "report", "--file", "x", f"--no-such-flag={PAN}"],
    ],
    ids=[
        "p99-file-error",
        "buckets-file-error",
        "traces-show",
        "traces-show-json",
        "traces-why",
        "traces-why-json",
        "codes-lint",
        "file-name",
        "usage-error",
    ],
)
def test_no_command_prints_a_card_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: object
) -> None:
    argv = command(tmp_path)  # type: ignore[operator]
    with contextlib.suppress(SystemExit):  # argparse's usage error exits 2 after printing
        main(argv)
    out, err = capsys.readouterr()
    assert out or err  # the command said something
    assert PAN not in out and PAN not in err
    assert "1111" in out + err or "[REDACTED]" in out + err  # quoted, masked


def test_masking_keeps_ids_and_hashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Trace and span ids, timestamps and durations pass through the masked streams intact."""
    main(["traces", "show", str(_spans_file(tmp_path)), "--format", "json"])
    out = capsys.readouterr().out
    assert "0af7651916cd43dd8448eb211c80319c" in out and "b7ad6b7169203331" in out
