"""`otelfin logs filter`: valid lines pass unchanged, bad ones go to the dead letter (masked, with
reasons), counts go to a textfile-collector file, and no line is ever lost."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otelfin.cli import main
from otelfin.logging import filter_lines, validate_path

_PAN = "4111 1111 1111 1111"
_BASE = {
    "timestamp": "2026-11-25T07:30:41.123456+00:00",
    "level": "info",
    "service_name": "payment-gateway",
    "event": "payment_authorised",
}


def _good(i: int) -> bytes:
    return orjson.dumps({**_BASE, "order_id": f"ord-{i}", "amount": "9.99"})


def _bad(i: int, rng: random.Random) -> tuple[bytes, str]:
    """A bad line and the reason kind it must be dead-lettered for."""
    choice = rng.randrange(6)
    if choice == 0:
        return b'{"timestamp": "2026', "invalid_json"
    if choice == 1:
        return orjson.dumps({**_BASE, "level": "loud"}), "schema"
    if choice == 2:
        return orjson.dumps({**_BASE, "level": "error", "error_code": "NOPE-999"}), "error_code"
    if choice == 3:
        return orjson.dumps({**_BASE, "event": f"card {_PAN} declined {i}"}), "card_number"
    if choice == 4:
        return b"\xff\xfe not utf-8 " + str(i).encode(), "invalid_json"
    return b"", "invalid_json"


def _mixed(n: int, seed: int = 0) -> tuple[list[bytes], list[bytes], int]:
    rng = random.Random(seed)
    lines: list[bytes] = []
    good: list[bytes] = []
    bad = 0
    for i in range(n):
        if rng.random() < 0.8:
            line = _good(i)
            good.append(line)
        else:
            line, _ = _bad(i, rng)
            bad += 1
        lines.append(line)
    return lines, good, bad


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_large_mixed_input_loses_no_line(tmp_path: Path) -> None:
    """200k mixed lines: passed + dead-lettered = read; passed are the good lines, in order."""
    lines, good, bad = _mixed(200_000)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out, dead = io.BytesIO(), io.BytesIO()
    report = filter_lines([str(src)], out, dead, codes={"PAY-012"})
    assert report.error is None
    assert report.lines == len(lines) == report.passed + report.dead_lettered
    assert (report.passed, report.dead_lettered) == (len(good), bad)
    assert out.getvalue() == b"".join(line + b"\n" for line in good)
    records = [orjson.loads(line) for line in dead.getvalue().splitlines()]
    assert len(records) == bad
    numbers = [r["line_number"] for r in records]
    assert numbers == sorted(numbers) and len(set(numbers)) == bad
    for record in records:
        assert record["reasons"] and record["source"] == str(src)
        original = lines[record["line_number"] - 1]
        assert isinstance(record["line"], str)
        if _PAN.encode() not in original:
            assert record["line"] == original.decode("utf-8", "backslashreplace")
    assert _PAN not in dead.getvalue().decode()
    assert sum(report.reasons.values()) >= bad


def test_dead_letter_matches_validate(tmp_path: Path) -> None:
    """The lines filter dead-letters are exactly the lines validate flags, same reasons."""
    lines, _, _ = _mixed(3000, seed=4)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    dead = io.BytesIO()
    filter_lines([str(src)], io.BytesIO(), dead, codes={"PAY-012"})
    flagged = validate_path(str(src), {"PAY-012"})
    records = [orjson.loads(line) for line in dead.getvalue().splitlines()]
    assert [(r["line_number"], "; ".join(r["reasons"])) for r in records] == [
        (v.line, v.reason) for v in flagged.violations
    ]


def _run(
    args: list[str], stdin: bytes = b"", cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "otelfin.cli", "logs", "filter", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("OTELFIN_REQUIRE_INTEGRATION") == "1":
            pytest.fail("promtool is required (Debian package prometheus)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    return path


def test_cli_stdin_gzip_dead_letter_and_metrics_file(tmp_path: Path) -> None:
    """The real command on gzip stdin: exit 1, good lines on stdout, records and a metrics file
    that promtool accepts, with counts adding up to the lines read."""
    lines, good, bad = _mixed(20_000, seed=2)
    dead = tmp_path / "dead.jsonl"
    metrics = tmp_path / "otelfin_filter.prom"
    proc = _run(
        ["--dead-letter", str(dead), "--metrics-file", str(metrics)],
        stdin=gzip.compress(b"\n".join(lines) + b"\n"),
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == b"".join(line + b"\n" for line in good)
    assert len(_records(dead)) == bad
    assert b"Traceback" not in proc.stderr
    text = metrics.read_text()
    assert f'otelfin_logs_filter_lines_total{{result="passed"}} {len(good)}' in text
    assert f'otelfin_logs_filter_lines_total{{result="dead_lettered"}} {bad}' in text
    assert sorted(os.listdir(tmp_path)) == ["dead.jsonl", "otelfin_filter.prom"]  # no temp left
    check = subprocess.run(
        [_promtool(), "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_dead_letter_is_appended_across_runs(tmp_path: Path) -> None:
    """A restarted stage appends to the dead letter instead of truncating it."""
    dead = tmp_path / "dead.jsonl"
    for _ in range(2):
        assert main(["logs", "filter", "--dead-letter", str(dead), str(_write(tmp_path))]) == 1
    assert len(_records(dead)) == 2


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "one.jsonl"
    path.write_bytes(_good(1) + b"\nnot json\n")
    return path


def test_all_good_exits_0_and_nothing_dead_lettered(tmp_path: Path) -> None:
    """A clean input: exit 0 and an empty dead letter."""
    src = tmp_path / "ok.jsonl"
    src.write_bytes(b"\n".join(_good(i) for i in range(10)) + b"\n")
    dead = tmp_path / "dead.jsonl"
    proc = _run([str(src), "--dead-letter", str(dead)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(b"\n") == 10 and dead.read_bytes() == b""


@pytest.mark.parametrize(
    "argv",
    [
        ["{missing}"],
        ["-", "-"],
        ["--catalogue", "{bad_catalogue}", "{good}"],
        ["--dead-letter", "{directory}", "{good}"],
        ["--metrics-file", "{directory}/no/such/dir/m.prom", "{good}"],
        ["--metrics-interval", "0", "{good}"],
    ],
)
def test_usage_and_input_errors_exit_2(tmp_path: Path, argv: list[str]) -> None:
    """Missing input, stdin twice, a bad catalogue, an unwritable dead letter or metrics file:
    exit 2 with a one-line reason, no traceback."""
    good = tmp_path / "good.jsonl"
    good.write_bytes(_good(1) + b"\n")
    bad_catalogue = tmp_path / "codes.yaml"
    bad_catalogue.write_text("codes:\n  PAY-001: &a {message: x}\n  PAY-002: *a\n")
    names = {
        "missing": tmp_path / "missing.jsonl",
        "bad_catalogue": bad_catalogue,
        "good": good,
        "directory": tmp_path,
    }
    proc = _run([a.format(**names) for a in argv])
    assert proc.returncode == 2, proc.stderr
    assert b"otelfin logs filter: " in proc.stderr or b"error:" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_streams_each_line_as_it_arrives(tmp_path: Path) -> None:
    """A pipeline stage: a line written to stdin comes out on stdout before stdin closes."""
    with subprocess.Popen(
        [sys.executable, "-m", "otelfin.cli", "logs", "filter", "--no-catalogue"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(_good(7) + b"\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == _good(7) + b"\n"  # blocks until EOF if buffered
            proc.stdin.write(b"oops\n")
            proc.stdin.close()
            assert proc.wait(timeout=30) == 1
            assert b'"line":"oops"' in proc.stderr.read()  # default dead letter: stderr
        finally:
            proc.kill()


def test_too_long_line_is_dead_lettered_without_its_text(tmp_path: Path) -> None:
    """A line over --max-line-bytes is counted and dead-lettered ("line": null), not lost."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(_good(1) + b"\n" + b'{"x": "' + b"a" * 5000 + b'"}\n' + _good(2) + b"\n")
    dead = tmp_path / "dead.jsonl"
    status = main(
        ["logs", "filter", str(src), "--max-line-bytes", "1000", "--dead-letter", str(dead)]
    )
    assert status == 1
    (record,) = _records(dead)
    assert record["line"] is None and record["line_number"] == 2
    assert "line longer than 1000 bytes" in str(record["reasons"])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.binary(max_size=40)
        | st.sampled_from([_good(1), b"{}", b"[]", b"\r", _PAN.encode(), b"\x1f\x8b"]),
        max_size=30,
    )
)
def test_any_bytes_every_line_passed_or_dead_lettered(tmp_path: Path, parts: list[bytes]) -> None:
    """Any bytes: no exception, and passed + dead-lettered equals the lines read."""
    src = tmp_path / "fuzz.bin"
    src.write_bytes(b"\n".join(parts))
    out, dead = io.BytesIO(), io.BytesIO()
    report = filter_lines([str(src)], out, dead, codes=None)
    if report.error is None:
        assert report.lines == report.passed + report.dead_lettered
        assert out.getvalue().count(b"\n") == report.passed
        assert dead.getvalue().count(b"\n") == report.dead_lettered
        assert _PAN not in dead.getvalue().decode()
