"""``otelfin logs validate`` and its core: every bad-line kind, formats, inputs, --jobs."""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import fastjsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otelfin.catalogue import default_catalogue
from otelfin.cli import main
from otelfin.logging import schema
from otelfin.tools.logs._validate import make_line_checker, validate_path

VISA = "4111111111111111"
CODES = frozenset(default_catalogue())
GOOD: dict[str, Any] = {
    "timestamp": "2026-11-25T07:30:41.123456+00:00",
    "level": "info",
    "service_name": "payment-gateway",
    "event": "payment_authorised",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "span_id": "00f067aa0ba902b7",
}


def line(**changes: Any) -> bytes:
    record = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in record.items() if v is not ...})


check = make_line_checker(CODES)


def reasons(raw: bytes) -> str:
    found = check(raw)
    return "; ".join(found) if found else ""


def test_good_lines_pass() -> None:
    """Well-formed lines (with or without span ids, Z offset, masked PAN) have no findings."""
    assert check(line()) is None
    assert check(line(trace_id=..., span_id=...)) is None
    assert check(line(timestamp="2026-11-25T07:30:41Z")) is None
    assert check(line(level="error", error_code="PAY-012")) is None
    assert check(line(card="XXXXXXXXXXXX1111", first6="411111XXXXXX1111")) is None
    assert check(line(order="4111111111111112", ref="ord-20261125-000042")) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"timestamp": "2026-11-25T07:30', "invalid JSON"),
        (b"\xff\xfe\x00garbage\x80", "invalid JSON"),
        (b"[" * 5000 + b"]" * 5000, "invalid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"", "empty line"),
        (b"   ", "empty line"),
        (line(timestamp=...), "missing timestamp"),
        (line(timestamp="2026-11-25T07:30:41"), "timestamp"),
        (line(timestamp="2026-13-25T07:30:41Z"), "timestamp"),
        (line(level="warn"), "level 'warn'"),
        (line(level=3), "level 3"),
        (line(service_name="Payment_Gateway"), "service_name"),
        (line(event=None), "event is not a string"),
        (line(trace_id="4BF92F3577B34DA6A3CE929D0E0E4736"), "trace_id"),
        (line(trace_id="0" * 32), "trace_id"),
        (line(trace_id="abc"), "trace_id"),
        (line(span_id="0" * 16), "span_id"),
        (line(span_id=...), "trace_id without span_id"),
        (line(trace_id=...), "span_id without trace_id"),
        (line(level="error"), "error line without error_code"),
        (line(level="critical"), "critical line without error_code"),
        (line(level="error", error_code="PAY-999"), "PAY-999 is not in the catalogue"),
        (line(error_code="pay_12"), "not of the form DOMAIN-NNN"),
        (line(error_code=["PAY-012"]), "not of the form DOMAIN-NNN"),
        (line(note=f"card {VISA}"), "unmasked card number (ending 1111)"),
        (line(note="4111 1111 1111 1111"), "unmasked card number"),
        (line(amount=int(VISA)), "unmasked card number"),
        (line(nested={"deep": [[{"x": VISA}]]}), "unmasked card number"),
        (line(**{VISA: "as a key"}), "unmasked card number"),
        (line(note=f"line\n{VISA}\tend"), "unmasked card number"),
        (line(note=f'"{VISA}"'), "unmasked card number"),
        (line(note=f"\\{VISA}"), "unmasked card number"),
    ],
)
def test_each_bad_line_kind(raw: bytes, expected: str) -> None:
    """Every kind of bad line is reported with a reason naming the problem."""
    assert expected in reasons(raw)


def test_unicode_escaped_digits_are_seen() -> None:
    """A card number spelled with \\u escapes is decoded and still caught."""
    raw = line(note="x").replace(b'"x"', b'"\\u0034111111111111111"')
    assert orjson.loads(raw)["note"] == VISA
    assert "unmasked card number" in reasons(raw)


def test_escape_next_to_digits_is_a_boundary_not_a_letter() -> None:
    """'\\n' before a PAN is a newline, not the letter n: the PAN is flagged, not excused."""
    raw = line(note=f"a\n{VISA}")
    assert b"\\n4111" in raw
    assert "unmasked card number" in reasons(raw)


def test_reasons_never_echo_card_numbers() -> None:
    """A reason quoting a bad value masks any card number in it."""
    text = reasons(line(level=f"x {VISA}", error_code=f"{VISA}"))
    assert VISA not in text and "XXXXXXXXXXXX1111" in text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_property_never_raises_on_bytes(raw: bytes) -> None:
    """Arbitrary bytes give a list of reasons or None, never an exception."""
    result = check(raw)
    assert result is None or all(isinstance(r, str) for r in result)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*GOOD, "error_code", "x"]), _json, max_size=8))
def test_property_never_raises_on_json(record: dict[str, Any]) -> None:
    """Any JSON object (odd types in every field) is judged without raising."""
    try:
        raw = json.dumps(record).encode()
    except ValueError:
        return
    result = check(raw)
    assert result is None or all(isinstance(r, str) for r in result)


_field_values = {
    "timestamp": st.sampled_from(
        [
            "2026-11-25T07:30:41.123456+00:00",
            "2026-11-25T07:30:41Z",
            "2026-11-25 07:30",
            5,
            "2026-02-31T07:30:41Z",
            "2024-02-29T07:30:41Z",
            "2100-02-29T07:30:41Z",
        ]
    ),
    "level": st.sampled_from(["info", "error", "warn", "critical", "INFO"]),
    "service_name": st.sampled_from(["payment-gateway", "ledger", "Ledger", "a--b", ""]),
    "event": st.sampled_from(["x", 1]),
    "trace_id": st.sampled_from([GOOD["trace_id"], "0" * 32, "ABC"]),
    "span_id": st.sampled_from([GOOD["span_id"], "0" * 16]),
    "error_code": st.sampled_from(["PAY-012", "pay-1", "PAYMENTS-001"]),
}


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional=_field_values))
def test_property_agrees_with_the_shipped_schema(record: dict[str, Any]) -> None:
    """Without catalogue and PAN checks, the fast checks accept exactly what the schema does."""
    validate = _compiled_schema()
    try:
        validate(record)
        schema_ok = True
    except fastjsonschema.JsonSchemaException:
        schema_ok = False
    assert (make_line_checker(None)(orjson.dumps(record)) is None) is schema_ok


_SCHEMA: Any = None


def _compiled_schema() -> Any:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = fastjsonschema.compile(schema())
    return _SCHEMA


@pytest.mark.parametrize(
    ("day", "real"),
    [
        ("2026-02-31", False),
        ("2026-02-29", False),
        ("2100-02-29", False),
        ("2026-04-31", False),
        ("2026-11-31", False),
        ("2026-02-28", True),
        ("2024-02-29", True),
        ("2000-02-29", True),
        ("2026-12-31", True),
    ],
)
def test_impossible_calendar_dates_are_rejected(day: str, real: bool) -> None:
    """A timestamp on a day the calendar does not have fails, in the validator and the schema."""
    import jsonschema

    raw = line(timestamp=f"{day}T07:30:41.5+00:00")
    assert (check(raw) is None) is real
    if not real:
        assert "is not ISO 8601 with an offset on a real date" in reasons(raw)
    record = orjson.loads(raw)
    for validator in (jsonschema.Draft7Validator, jsonschema.Draft202012Validator):
        assert validator(schema()).is_valid(record) is real, validator.__name__


def test_schema_pairs_trace_and_span_ids_under_draft_07_and_2020_12() -> None:
    """trace_id without span_id (and the reverse) fails a 2020-12 validator as it does draft-07."""
    import jsonschema

    only_trace = orjson.loads(line(span_id=...))
    only_span = orjson.loads(line(trace_id=...))
    for validator in (jsonschema.Draft7Validator, jsonschema.Draft202012Validator):
        checker = validator(schema())
        assert checker.is_valid(orjson.loads(line())), validator.__name__
        assert not checker.is_valid(only_trace), validator.__name__
        assert not checker.is_valid(only_span), validator.__name__
    assert check(line(span_id=...)) is not None and check(line(trace_id=...)) is not None


# --- the command ----------------------------------------------------------------------------


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_cli_clean_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A clean file exits 0 and the summary counts its lines."""
    path = _write(tmp_path / "ok.jsonl", [line(), line(level="error", error_code="DB-003")])
    assert main(["logs", "validate", str(path)]) == 0
    assert "checked 2 lines" in capsys.readouterr().err


def test_cli_reports_file_line_reason_and_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad lines are reported as file:line: reason, validation continues, exit 1."""
    big = b'{"x":"' + b"a" * (10 << 20) + b'"}'
    path = _write(
        tmp_path / "bad.jsonl",
        [line(), b'{"trunc', b"\x00\x01\xff", big, b"[" * 5000, line(note=VISA), line()],
    )
    assert main(["logs", "validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [o.split(":")[1] for o in out] == ["2", "3", "4", "5", "6"]
    assert out[2].endswith(f"line longer than {1 << 20} bytes (not checked further)")
    assert all(o.startswith(f"{path}:") for o in out)


def test_cli_custom_catalogue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--catalogue adds a service's codes; --no-catalogue skips membership."""
    catalogue = tmp_path / "codes.yaml"
    catalogue.write_text("codes:\n  SHOP-001:\n    message: Out of stock\n    severity: error\n")
    path = _write(tmp_path / "l.jsonl", [line(level="error", error_code="SHOP-001")])
    assert main(["logs", "validate", str(path)]) == 1
    assert main(["logs", "validate", "--catalogue", str(catalogue), str(path)]) == 0
    assert main(["logs", "validate", "--no-catalogue", str(path)]) == 0
    capsys.readouterr()


def test_cli_usage_and_input_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file, a bad catalogue or a bad option value exits 2."""
    assert main(["logs", "validate", str(tmp_path / "missing.jsonl")]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("codes: [")
    path = _write(tmp_path / "l.jsonl", [line()])
    assert main(["logs", "validate", "--catalogue", str(bad), str(path)]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["logs", "validate", "--max-errors", "0", str(path)])
    assert exc.value.code == 2
    capsys.readouterr()


def test_cli_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """json, github and junit output carry the same findings in their own shape."""
    path = _write(tmp_path / "f.jsonl", [line(), line(level="warn"), line(note=VISA)])
    assert main(["logs", "validate", "--format", "json", str(path)]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False and payload["bad_lines"] == 2
    assert [v["line"] for v in payload["violations"]] == [2, 3]

    assert main(["logs", "validate", "--format", "github", str(path)]) == 1
    gh = capsys.readouterr().out.splitlines()
    assert gh[0].startswith(f"::error file={path},line=2,")

    assert main(["logs", "validate", "--format", "junit", str(path)]) == 1
    root = ElementTree.fromstring(capsys.readouterr().out)
    failure = root.find("./testsuite/testcase/failure")
    assert failure is not None and "2 bad lines of 3" in failure.attrib["message"]


def test_cli_max_errors_stops_early(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--max-errors N reports N bad lines and says it stopped."""
    path = _write(tmp_path / "m.jsonl", [b"{"] * 50)
    assert main(["logs", "validate", "--max-errors", "3", str(path)]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3
    assert "stopped after --max-errors 3" in captured.err


def test_cli_gzip_and_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .gz file is read transparently; '-' reads stdin (gzip there too)."""
    payload = b"\n".join([line(), line(level="warn")]) + b"\n"
    gz = tmp_path / "l.jsonl.gz"
    gz.write_bytes(gzip.compress(payload))
    assert main(["logs", "validate", str(gz)]) == 1
    assert capsys.readouterr().out.startswith(f"{gz}:2: level")
    for data in (payload, gzip.compress(payload)):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        assert main(["logs", "validate", "-"]) == 1
        assert capsys.readouterr().out.startswith("-:2: level")


def test_cli_corrupt_gzip_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A gzip stream cut short is an input error (exit 2) after the lines it did hold."""
    data = gzip.compress(b"\n".join([line()] * 2000) + b"\n")
    gz = tmp_path / "cut.jsonl.gz"
    gz.write_bytes(data[: len(data) // 2])
    assert main(["logs", "validate", str(gz)]) == 2
    assert "cannot read after line" in capsys.readouterr().err


def test_jobs_split_matches_single_process(tmp_path: Path) -> None:
    """Chunks processed by worker processes give the same findings and line numbers."""
    lines = []
    for i in range(6000):
        if i % 997 == 0:
            lines.append(line(level="warn", n=i))
        elif i % 1499 == 0:
            lines.append(b'{"x"')
        else:
            lines.append(line(n=i))
    path = _write(tmp_path / "big.jsonl", lines)
    single = validate_path(str(path), CODES)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        split = validate_path(str(path), CODES, jobs=2, pool=pool, min_chunk_bytes=50_000)
    assert split.lines == single.lines == 6000
    assert [(v.line, v.reason) for v in split.violations] == [
        (v.line, v.reason) for v in single.violations
    ]
    assert len(single.violations) == 11


def test_streaming_keeps_memory_flat(tmp_path: Path) -> None:
    """With keep=0 every bad line goes to the callback and none is held in the report."""
    path = _write(tmp_path / "s.jsonl", [b"{"] * 5000 + [line()])
    seen: list[int] = []
    report = validate_path(str(path), CODES, keep=0, on_violation=lambda v: seen.append(v.line))
    assert report.bad_lines == 5000 and report.violations == [] and report.lines == 5001
    assert seen == list(range(1, 5001))


def test_cli_jobs_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--jobs 2 gives the same output as one process (small files are not split)."""
    path = _write(tmp_path / "j.jsonl", [line(), line(level="warn"), line()])
    assert main(["logs", "validate", "--jobs", "2", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:2: level 'warn' is not one of debug, info, warning, error, critical"
    ]


def test_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    """CRLF line ends are accepted and a last line without a newline is still checked."""
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(line() + b"\r\n" + line() + b"\r\n" + line(level="warn"))
    report = validate_path(str(path), CODES)
    assert report.lines == 3
    assert [v.line for v in report.violations] == [3]


_pan_text = st.text(alphabet='0123456789 -x\n\t"\\é/', max_size=40) | st.sampled_from(
    [VISA, f"x{VISA}", "4111 1111 1111 1111", f"\n{VISA}", f'"{VISA}"', f"\\{VISA}"]
)
_values = st.recursive(
    _pan_text | st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_pan_text, children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_pan_text, _values, max_size=4), _pan_text)
def test_property_validator_never_flags_scrubbed_output(fields: dict[str, Any], event: str) -> None:
    """Whatever goes through the scrubbing chain, the validator finds no card number in it."""
    from otelfin.logging import processors

    event_dict = {**fields, "event": event}
    rendered = event_dict
    for proc in processors(service_name="payment-gateway", catalogue_check=lambda *a: a[2]):
        rendered = proc(None, "info", rendered)
    raw = rendered.rstrip(b"\n")
    assert not [r for r in (check(raw) or []) if "card number" in r]


def test_validate_file_api(tmp_path: Path) -> None:
    """otelfin.logging.validate_file() checks a file against the live catalogue."""
    from otelfin.logging import validate_file

    path = _write(tmp_path / "api.jsonl", [line(), line(level="error", error_code="PAY-999")])
    report = validate_file(str(path))
    assert report.lines == 2 and report.bad_lines == 1
    assert str(report.violations[0]) == f"{path}:2: error_code PAY-999 is not in the catalogue"


def test_cli_summary_counts_agree_with_their_nouns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line in one file reads "checked 1 line in 1 file", not "1 lines in 1 file(s)"."""
    path = _write(tmp_path / "one.jsonl", [line()])
    assert main(["logs", "validate", str(path)]) == 0
    assert "checked 1 line in 1 file: 0 bad" in capsys.readouterr().err


def test_empty_input_is_a_finding_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI job pointed at an empty log file does not pass on nothing: exit 1 with the
    reason, exit 0 only with --allow-empty; a file with one good line still passes."""
    from otelfin.cli import main

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["logs", "validate", str(empty)]) == 1
    assert "no log line to check" in capsys.readouterr().err
    assert main(["logs", "validate", "--allow-empty", str(empty)]) == 0
    good = tmp_path / "good.jsonl"
    line = {
        "timestamp": "2026-12-07T15:00:00.000+00:00",
        "level": "info",
        "service_name": "payments",
        "event": "payment_authorised",
    }
    good.write_text(json.dumps(line) + "\n")
    assert main(["logs", "validate", str(empty), str(good)]) == 0
