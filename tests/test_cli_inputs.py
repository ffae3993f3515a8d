"""Bad input to the CLI: exit 2 with a one-line message on stderr, never a traceback."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from otelfin.cli import main

_BINARY = bytes(range(128, 256)) * 4


def test_buckets_suggest_binary_samples_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A samples file that is not UTF-8 text is an input error (exit 2), not a traceback."""
    path = tmp_path / "lat.bin"
    path.write_bytes(_BINARY)
    assert main(["buckets", "suggest", "--samples", str(path), "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"cannot read {path}: not UTF-8 text" in captured.err


def test_p99_report_binary_stdin_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Non-UTF-8 bytes on stdin for --file - are an input error (exit 2)."""
    stdin = io.TextIOWrapper(io.BytesIO(_BINARY), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["p99", "report", "--file", "-", "--by", "channel"]) == 2
    assert "cannot read -: not UTF-8 text" in capsys.readouterr().err


def test_p99_report_scrape_not_a_url_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """--scrape with something that is not a URL is exit 2 with 'cannot scrape'."""
    assert main(["p99", "report", "--scrape", "localhost-metrics", "--by", "channel"]) == 2
    assert "--scrape takes an http:// or https:// URL" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_codes_lint_unreadable_file_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """codes lint on a file it cannot read exits 2 (input error), not 1 (findings)."""
    path = tmp_path / "codes.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(_BINARY)
    assert main(["codes", "lint", "--format", "json", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{path}:1: cannot read" in captured.err


@pytest.mark.parametrize("slo", ["-3", "0", "inf", "nan"])
def test_dashboards_build_bad_slo_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], slo: str
) -> None:
    """dashboards build refuses an SLO that is not a positive finite number and writes nothing."""
    out = tmp_path / "dash"
    assert main(["dashboards", "build", "--slo", slo, "--output-dir", str(out)]) == 2
    assert f"--slo={slo!r} must be a positive" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--metric", "bad name{"],
        ["--by", "service,bad-label"],
        ["--slo", "inf"],
    ],
)
def test_rules_build_bad_names_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """rules build refuses names and SLOs that would write rules promtool rejects; no file."""
    out = tmp_path / "rules.yml"
    assert main(["rules", "build", *argv, "-o", str(out)]) == 2
    assert "otelfin: error:" in capsys.readouterr().err
    assert not out.exists()


def test_dashboards_build_bad_metric_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dashboards build refuses a --metric that is not a Prometheus metric name."""
    out = tmp_path / "dash"
    assert main(["dashboards", "build", "--metric", "a-b", "--output-dir", str(out)]) == 2
    assert "not a Prometheus metric name" in capsys.readouterr().err
    assert not out.exists()


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_logs_validate_closed_stdout_is_not_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logs validate ... | head` stops quietly with 141 (SIGPIPE), never 0 nor 'cannot read'."""
    path = tmp_path / "app.jsonl"
    path.write_text('{"level": "info"}\n' * 5)
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    assert main(["logs", "validate", "--no-catalogue", str(path)]) == 141
    assert "cannot read" not in capsys.readouterr().err


def test_p99_report_names_a_by_label_no_series_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--by with a label no series carries says so, instead of one silent empty-valued row."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    histogram = Histogram("otelfin_request_duration_seconds", "d", ["channel"], registry=registry)
    for i in range(100):
        histogram.labels("web" if i % 2 else "pos").observe(0.01 * (i % 10))
    path = tmp_path / "metrics.txt"
    path.write_bytes(generate_latest(registry))
    assert main(["p99", "report", "--file", str(path), "--by", "chanel", "--format", "json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any("label 'chanel'" in note and "channel" in note for note in notes)


def test_logs_validate_binary_line_says_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line of non-UTF-8 bytes is reported as such, not as a 'surrogates' JSON error."""
    path = tmp_path / "app.jsonl"
    path.write_bytes(b'{"event": "ok\xff"}\n')
    assert main(["logs", "validate", "--no-catalogue", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:1: invalid JSON: not UTF-8 text (byte 13 of the line)" in out


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "soon"])
def test_p99_report_bad_timeout_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], timeout: str
) -> None:
    """--timeout must be a positive number of seconds (0 gave 'Operation now in progress')."""
    with pytest.raises(SystemExit) as exit_info:
        main(["p99", "report", "--scrape", "http://127.0.0.1:9/metrics", "--by", "channel",
              "--timeout", timeout])  # fmt: skip
    assert exit_info.value.code == 2
    assert "expected a positive number of seconds" in capsys.readouterr().err


def test_buckets_suggest_all_zero_samples_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Samples whose P99 is 0 are an input error (exit 2), not an IndexError traceback."""
    path = tmp_path / "lat.txt"
    path.write_text("0\n" * 500)
    assert main(["buckets", "suggest", "--samples", str(path)]) == 2
    assert "P99 of the samples is 0 s" in capsys.readouterr().err


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    "samples",
    [
        ["0.1"] * 500,  # no sampling noise: the window ratio is infinite
        ["0"] * 494 + [str(0.1 * i) for i in range(1, 7)],  # a held-out half with P99 0
    ],
)
def test_buckets_suggest_json_has_no_infinity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], samples: list[str]
) -> None:
    """--format json stays strict JSON (null, not Infinity) on degenerate latencies."""
    import random

    random.Random(6).shuffle(samples)
    path = tmp_path / "lat.txt"
    path.write_text("\n".join(samples))
    assert main(["buckets", "suggest", "--samples", str(path), "--format", "json"]) == 0
    data = _strict_json(capsys.readouterr().out)
    assert isinstance(data, dict) and data["buckets"]
