"""One configuration for library and CLI: flags default from the settings' variables."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from otelfin import _settings
from otelfin.cli import build_parser, main

CATALOGUE = """
version: 1
codes:
  ACME-001:
    message: Acme widget jammed
    severity: error
    retryable: false
"""


def _log(tmp_path: Path) -> Path:
    record = {
        "timestamp": "2026-01-01T00:00:00.000000+00:00",
        "level": "error",
        "service_name": "acme",
        "event": "jammed",
        "error_code": "ACME-001",
    }
    path = tmp_path / "logs.jsonl"
    path.write_bytes(orjson.dumps(record) + b"\n")
    return path


def test_catalogue_variable_registers_codes_for_logs_validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OTELFIN_CATALOGUE set: `logs validate` knows its codes without --catalogue."""
    (tmp_path / "acme.yaml").write_text(CATALOGUE)
    logs = _log(tmp_path)
    assert main(["logs", "validate", str(logs)]) == 1  # not registered in the packaged one
    monkeypatch.setenv("OTELFIN_CATALOGUE", str(tmp_path / "acme.yaml"))
    capsys.readouterr()
    assert main(["logs", "validate", str(logs)]) == 0, capsys.readouterr().out
    assert main(["logs", "filter", str(logs)]) == 0
    assert main(["codes", "list"]) == 0
    assert "ACME-001" in capsys.readouterr().out


def test_catalogue_flag_wins_over_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--catalogue given: the variable's file is not read (a missing one does not matter)."""
    (tmp_path / "acme.yaml").write_text(CATALOGUE)
    monkeypatch.setenv("OTELFIN_CATALOGUE", str(tmp_path / "missing.yaml"))
    logs = _log(tmp_path)
    assert main(["logs", "validate", "--catalogue", str(tmp_path / "acme.yaml"), str(logs)]) == 0
    assert main(["logs", "validate", str(logs)]) == 2  # the variable's file is read, and missing


def test_console_script_reads_the_catalogue_variable(tmp_path: Path) -> None:
    """The installed `otelfin` command, in a fresh process, with only the variable set."""
    (tmp_path / "acme.yaml").write_text(CATALOGUE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTELFIN_"))}
    env["OTELFIN_CATALOGUE"] = str(tmp_path / "acme.yaml")
    command = [
        str(Path(sys.executable).parent / "otelfin"),
        "logs",
        "validate",
        str(_log(tmp_path)),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checked 1 line in 1 file: 0 bad" in done.stderr


def test_slo_and_buckets_variables_reach_rules_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTELFIN_METRICS_SLO and OTELFIN_METRICS_BUCKETS are the defaults of rules build."""
    monkeypatch.setenv("OTELFIN_METRICS_SLO", "0.3")
    out = tmp_path / "rules.yaml"
    assert main(["rules", "build", "-o", str(out)]) == 0
    assert 'le="0.3"' in out.read_text()
    # The SLO must be a bucket bound: with buckets that lack it, rules build refuses.
    monkeypatch.setenv("OTELFIN_METRICS_BUCKETS", "0.1,0.25,0.5")
    assert main(["rules", "build", "-o", str(out)]) == 2
    assert main(["rules", "build", "--slo", "0.25", "-o", str(out)]) == 0
    assert 'le="0.25"' in out.read_text()


def test_bad_variable_value_is_exit_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad value in the environment is the same error as in configure(), exit 2."""
    monkeypatch.setenv("OTELFIN_METRICS_SLO", "fast")
    assert main(["rules", "build"]) == 2
    assert "OTELFIN_METRICS_SLO='fast' must be a number" in capsys.readouterr().err


def test_spans_file_variable_is_the_default_file_of_traces_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OTELFIN_SPANS_FILE (where configure() writes spans) is what `traces show` reads."""
    import otelfin

    spans = tmp_path / "spans.jsonl"
    otelfin.configure("acme", spans_file=str(spans), span_processor="simple")

    @otelfin.traced(name="acme.pay")
    def pay() -> None:
        return None

    pay()
    otelfin.shutdown()
    assert main(["traces", "show"]) == 2
    assert "OTELFIN_SPANS_FILE" in capsys.readouterr().err
    monkeypatch.setenv("OTELFIN_SPANS_FILE", str(spans))
    assert main(["traces", "show"]) == 0
    assert "acme.pay" in capsys.readouterr().out


def test_p99_report_by_defaults_to_operation_and_the_label_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--by left out: operation plus OTELFIN_METRICS_LABELS (the RED labels configured)."""
    from otelfin.cli._env import fill_from_settings

    parser = build_parser()
    args = parser.parse_args(["p99", "report", "--scrape", "http://127.0.0.1:9/metrics"])
    assert fill_from_settings(args) is None and args.by == "operation,channel"
    monkeypatch.setenv("OTELFIN_METRICS_LABELS", "channel,region")
    args = parser.parse_args(["p99", "report", "--scrape", "http://127.0.0.1:9/metrics"])
    assert fill_from_settings(args) is None and args.by == "operation,channel,region"


def _setting_flags(parser: argparse.ArgumentParser) -> list[tuple[str, str, str]]:
    """(command, flag, help) of every flag tied to a setting, in every subcommand."""
    found = []
    for action in parser._actions:  # argparse has no public walk of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_setting_flags(sub))
    table = parser.get_default("_otelfin_settings") or {}
    for action in parser._actions:
        if action.dest in table:
            flag = action.option_strings[0] if action.option_strings else action.dest
            found.append((parser.prog, f"{flag}:{table[action.dest][0]}", action.help or ""))
    return found


def test_every_setting_flag_says_which_variable_it_defaults_from() -> None:
    """Each flag tied to a settings row names the row's variable in its --help."""
    flags = _setting_flags(build_parser())
    progs = {prog for prog, _, _ in flags}
    assert {
        "otelfin logs validate",
        "otelfin logs filter",
        "otelfin codes list",
        "otelfin rules build",
        "otelfin dashboards build",
        "otelfin buckets suggest",
        "otelfin p99 report",
        "otelfin traces show",
        "otelfin traces why",
    } <= progs
    for prog, flag, text in flags:
        setting = flag.split(":")[1]
        env = _settings.by_name(setting).env
        assert f"(default: ${env}, else " in text, (prog, flag, text)
