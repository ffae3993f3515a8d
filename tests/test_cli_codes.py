"""`otelfin codes lint|list` through the real console script and in-process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from otelfin.cli import main


def test_lint_clean_file_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """A clean file gives exit 0 and no findings on stdout."""
    path = Path(__file__).parents[1] / "otelfin" / "errorcodes.yaml"
    assert main(["codes", "lint", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "0 problems in 1 file"  # not "1 file(s)"


def test_lint_findings_exit_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Findings print as file:line: reason, exit 1; --format json gives the same as data."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("codes:\n  PAY-1:\n    message: x\n  PAY-002:\n    severity: loud\n")
    assert main(["codes", "lint", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{bad}:2: bad code format 'PAY-1' (expected DOMAIN-NNN, e.g. PAY-012)"
    assert any(line.startswith(f"{bad}:5: PAY-002: unknown severity") for line in out)
    assert main(["codes", "lint", "--format", "json", str(bad)]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert {r["line"] for r in rows} >= {2, 5}


def test_list_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """codes list merges a service file and renders text, json and markdown."""
    extra = tmp_path / "svc.yaml"
    extra.write_text("codes:\n  WALLET-001: {message: Wallet locked, severity: error}\n")
    assert main(["codes", "list", "--catalogue", str(extra), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    codes = {r["code"] for r in rows}
    assert {"WALLET-001", "PAY-012"} <= codes
    assert main(["codes", "list", "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("| code | message |")
    assert "| PAY-012 | Insufficient balance | warning | no | 402 |" in md


def test_list_bad_catalogue_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken catalogue given to list is an input error (exit 2) naming file:line."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("codes:\n  PAY-001:\n    message: 'unterminated\n")
    assert main(["codes", "list", "--catalogue", str(bad)]) == 2
    assert f"{bad}:3: malformed YAML" in capsys.readouterr().err


def test_usage_errors_exit_two() -> None:
    """A missing argument or unknown command exits 2 (argparse), not 1."""
    with pytest.raises(SystemExit) as info:
        main(["codes", "lint"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    assert main([]) == 2


def test_console_script_installed() -> None:
    """The `otelfin` console script runs and shows help for each command."""
    exe = shutil.which("otelfin", path=str(Path(sys.executable).parent))
    assert exe, "the otelfin console script is not installed in this environment"
    result = subprocess.run([exe, "codes", "lint", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "file:line" in result.stdout
