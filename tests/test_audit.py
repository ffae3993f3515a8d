"""The audit trail: records, masking, the hash chain, and `otelfin audit verify` on files
edited, deleted, inserted, reordered, truncated and forged."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from opentelemetry.sdk.trace import TracerProvider

import otelfin
from otelfin import audit
from otelfin.cli import main
from otelfin.scrub import fingerprint
from otelfin.tools.audit import record_problems, verify_path

KEY = "audit-key-one"
CARD = "4111 1111 1111 1111"


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Path]:
    """A configured service with a keyed audit trail; shut down (stop record) afterwards."""
    path = tmp_path / "audit.jsonl"
    otelfin.configure(
        "payment-gateway",
        audit_file=str(path),
        audit_key=KEY,
        pan_fingerprint_key="fp-key",
        log_stream=io.StringIO(),
    )
    yield path
    otelfin.shutdown()


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def closed_file(tmp_path: Path, n: int = 4, key: str | None = KEY) -> Path:
    """A finished trail: start, ``n`` records, stop."""
    path = tmp_path / "closed.jsonl"
    otelfin.configure("svc", audit_file=str(path), audit_key=key, log_stream=io.StringIO())
    for i in range(n):
        audit.record("card_data.read", actor=f"user{i}", outcome="success", resource=f"p:{i}")
    otelfin.shutdown()
    return path


def verify(path: Path, *extra: str, key: str | None = KEY) -> tuple[int, str]:
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        if key is not None:
            key_file = path.parent / "key"
            key_file.write_text(key + "\n")
            code = main(["audit", "verify", str(path), "--key-file", str(key_file), *extra])
        else:
            code = main(["audit", "verify", str(path), *extra])
    return code, out.getvalue()


# --- records -----------------------------------------------------------------------------------


def test_a_record_has_the_pci_fields_masked_details_and_the_span(trail: Path) -> None:
    """PCI 10.2.2 fields, UTC time, service, trace/span ids of the current span, details
    masked and fingerprinted like logs, secrets redacted."""
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("refund") as span:
        written = audit.record(
            "card_data.read",
            actor="alice@ops",
            outcome="success",
            resource="payment:pay-123",
            origin="10.0.0.7",
            card=CARD,
            password="hunter2",
            nested={"pan_list": ["x"], "note": f"card {CARD}"},
        )
        ctx = span.get_span_context()
    rec = lines(trail)[1]
    assert rec == written
    assert rec["event"] == "card_data.read" and rec["actor"] == "alice@ops"
    assert rec["outcome"] == "success" and rec["resource"] == "payment:pay-123"
    assert rec["origin"] == "10.0.0.7" and rec["service"] == "payment-gateway"
    assert str(rec["timestamp"]).endswith("+00:00")
    assert rec["trace_id"] == format(ctx.trace_id, "032x")
    assert rec["span_id"] == format(ctx.span_id, "016x")
    token = fingerprint(CARD)
    details = rec["details"]
    assert isinstance(details, dict)
    assert details["card"] == f"XXXXXXXXXXXX1111 {token}"
    assert details["password"] == "[REDACTED]"
    assert details["nested"]["note"] == f"card XXXXXXXXXXXX1111 {token}"
    assert "4111111111111111" not in trail.read_text() and "hunter2" not in trail.read_text()


def test_start_and_stop_records_and_a_verified_chain(tmp_path: Path) -> None:
    """configure() writes audit.start, shutdown() audit.stop; the chain verifies closed."""
    path = closed_file(tmp_path, n=2)
    events = [r["event"] for r in lines(path)]
    assert events == ["audit.start", "card_data.read", "card_data.read", "audit.stop"]
    assert [r["seq"] for r in lines(path)] == [0, 1, 2, 3]
    assert verify(path, "--require-closed") == (
        0,
        f"{path}: intact, 4 records, chain hmac-sha256, closed\n",
    )


def test_a_reopened_trail_continues_the_chain(tmp_path: Path) -> None:
    """A second run on the same file continues seq and prev: one chain, still verifiable."""
    path = closed_file(tmp_path, n=1)
    otelfin.configure("svc", audit_file=str(path), audit_key=KEY, log_stream=io.StringIO())
    audit.record("login", actor="bob", outcome="failure")
    otelfin.shutdown()
    assert [r["seq"] for r in lines(path)] == list(range(6))
    assert verify(path, "--require-closed")[0] == 0


def test_no_trail_configured_raises() -> None:
    """Without audit_file a record is not silently dropped: AuditError."""
    with pytest.raises(audit.AuditError, match="audit_file"):
        audit.record("login", actor="bob", outcome="success")


def test_a_failed_write_raises_to_the_caller(trail: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk-full write raises AuditError; the chain is not advanced by the lost record."""
    import os

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", full)
        with pytest.raises(audit.AuditError, match="No space"):
            audit.record("login", actor="bob", outcome="success")
    audit.record("login", actor="bob", outcome="success")
    otelfin.shutdown()
    assert verify(trail, "--require-closed")[0] == 0


def test_an_unwritable_audit_file_is_a_configuration_error() -> None:
    """configure() with an audit file that refuses writes (/dev/full) raises ValueError."""
    with pytest.raises(ValueError, match="audit"):
        otelfin.configure("svc", audit_file="/dev/full", log_stream=io.StringIO())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"outcome": "ok", "actor": "a"},
        {"outcome": "success", "actor": ""},
        {"outcome": "success", "actor": "a", "amount": float("nan")},
        {"outcome": "success", "actor": "a", "obj": object()},
    ],
)
def test_bad_records_are_value_errors(trail: Path, kwargs: dict[str, object]) -> None:
    """A bad outcome, an empty actor or a non-JSON detail is a ValueError, nothing written."""
    before = trail.read_bytes()
    with pytest.raises(ValueError):
        audit.record("login", **kwargs)  # type: ignore[arg-type]
    assert trail.read_bytes() == before


def test_records_match_the_shipped_schema(tmp_path: Path) -> None:
    """Every written record validates against audit.schema.json, and the hand-written check
    agrees with jsonschema on broken records."""
    from otelfin.tools.audit import audit_schema

    schema = audit_schema()
    path = closed_file(tmp_path, n=2)
    for rec in lines(path):
        jsonschema.validate(rec, schema)
        assert record_problems(rec) == []
    good = lines(path)[1]
    for broken in (
        {**good, "outcome": "maybe"},
        {**good, "seq": -1},
        {**good, "prev": "xyz"},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "actor"},
        {k: v for k, v in good.items() if k != "key_id"},
        {**good, "timestamp": "yesterday"},
    ):
        assert record_problems(broken) != []
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


# --- five ways to edit a file, and forgeries ---------------------------------------------------


def _rewrite(path: Path, new_lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in new_lines), "utf-8")


def test_edited_record_is_named(tmp_path: Path) -> None:
    """Changing one field of record 3 (keeping its hash) breaks the chain at line 3."""
    path = closed_file(tmp_path)
    raw = path.read_text().splitlines()
    raw[2] = raw[2].replace('"outcome":"success"', '"outcome":"failure"')
    _rewrite(path, raw)
    code, out = verify(path)
    assert code == 1 and out.startswith(f"{path}:3: hash does not match")


def test_deleted_record_is_named(tmp_path: Path) -> None:
    """Removing record 3 breaks the chain at the record that followed it (now line 3)."""
    path = closed_file(tmp_path)
    raw = path.read_text().splitlines()
    del raw[2]
    _rewrite(path, raw)
    code, out = verify(path)
    assert code == 1 and f"{path}:3: seq 3 where 2 was expected" in out


def test_inserted_record_is_named(tmp_path: Path) -> None:
    """A copy of record 2 inserted after it breaks the chain at line 3."""
    path = closed_file(tmp_path)
    raw = path.read_text().splitlines()
    raw.insert(2, raw[1])
    _rewrite(path, raw)
    code, out = verify(path)
    assert code == 1 and out.startswith(f"{path}:3: seq 1 where 2 was expected")


def test_reordered_records_are_named(tmp_path: Path) -> None:
    """Swapping records 2 and 3 breaks the chain at line 2."""
    path = closed_file(tmp_path)
    raw = path.read_text().splitlines()
    raw[1], raw[2] = raw[2], raw[1]
    _rewrite(path, raw)
    code, out = verify(path)
    assert code == 1 and out.startswith(f"{path}:2: seq 2 where 1 was expected")


def test_truncated_file_needs_require_closed(tmp_path: Path) -> None:
    """Dropping the last records at a line boundary is only seen with --require-closed (the
    line after the last is named); a cut in the middle of a line is always seen."""
    path = closed_file(tmp_path)
    raw = path.read_text().splitlines()
    _rewrite(path, raw[:-2])
    assert verify(path)[0] == 0
    code, out = verify(path, "--require-closed")
    assert code == 1 and out.startswith(f"{path}:{len(raw) - 1}: the last record")
    path.write_text("\n".join(raw)[:-20])
    code, out = verify(path)
    assert code == 1 and f"{path}:{len(raw)}: incomplete last line" in out


def test_removed_beginning_and_reformatted_lines_are_named(tmp_path: Path) -> None:
    """Deleting the start record, or re-spacing/reordering a line's keys, is an edit."""
    path = closed_file(tmp_path)
    raw = path.read_text().splitlines()
    _rewrite(path, raw[1:])
    assert verify(path)[1].startswith(f"{path}:1: the first record has seq 1")
    parsed = json.loads(raw[2])
    respaced = json.dumps(parsed)  # same content, blanks after separators
    reordered = json.dumps(dict(reversed(list(parsed.items()))), separators=(",", ":"))
    for edited in (respaced, reordered, raw[2][:-1] + ',"actor":"mallory"}'):
        _rewrite(path, [*raw[:2], edited, *raw[3:]])
        code, out = verify(path)
        assert code == 1 and out.startswith(f"{path}:3:"), out


def _reforge(records: list[dict[str, object]], key: bytes | None, chain: str) -> list[str]:
    """Recompute a whole chain the way a forger would, after editing it."""
    prev = audit.GENESIS
    out = []
    for rec in records:
        rec = dict(rec)
        rec["chain"] = chain
        if key is None:
            rec.pop("key_id", None)
        else:
            rec["key_id"] = audit.key_id(key)
        rec["prev"] = prev
        rec.pop("hash", None)
        rec["hash"] = audit.chain_hash(rec, key)
        ordered = {k: rec[k] for k in audit.FIELDS if k in rec}
        out.append(audit.serialise(ordered).decode())
        prev = str(rec["hash"])
    return out


def test_a_forged_chain_without_the_key_is_caught(tmp_path: Path) -> None:
    """An edit with the whole chain recomputed, as plain SHA-256 or as HMAC under a guessed
    key, fails verification with the real key; the right key verifies."""
    path = closed_file(tmp_path)
    records = lines(path)
    records[2]["outcome"] = "failure"
    _rewrite(path, _reforge(records, None, "sha256"))
    code, out = verify(path)
    assert code == 1 and out.startswith(f"{path}:1: not keyed")
    _rewrite(path, _reforge(records, b"guessed", "hmac-sha256"))
    code, out = verify(path)
    assert code == 1 and out.startswith(f"{path}:1: made with another key")
    # The forger copies the real key_id too: the HMAC itself fails.
    forged = [json.loads(line) for line in _reforge(records, b"guessed", "hmac-sha256")]
    for rec in forged:
        rec["key_id"] = audit.key_id(KEY.encode())
    _rewrite(path, [audit.serialise(r).decode() for r in forged])
    code, out = verify(path)
    assert code == 1 and out.startswith(f"{path}:1: hash does not match")
    _rewrite(path, _reforge(records, KEY.encode(), "hmac-sha256"))
    assert verify(path)[0] == 0  # the key holder can rewrite history: a documented limit


def test_a_plain_chain_is_forgeable_a_documented_limit(tmp_path: Path) -> None:
    """Without audit_key the chain detects accidents, not forgers: a recomputed plain chain
    verifies (SECURITY.md says so)."""
    path = closed_file(tmp_path, key=None)
    assert verify(path, key=None)[0] == 0
    records = lines(path)
    records[1]["actor"] = "mallory"
    raw = path.read_text().splitlines()
    raw[1] = raw[1].replace('"actor":"user0"', '"actor":"mallory"')
    _rewrite(path, raw)
    assert verify(path, key=None)[0] == 1
    _rewrite(path, _reforge(records, None, "sha256"))
    assert verify(path, key=None)[0] == 0


def test_keyed_chain_without_key_and_unreadable_input_exit_2(tmp_path: Path) -> None:
    """A keyed chain cannot be checked without its key; a missing file is unreadable: 2."""
    path = closed_file(tmp_path)
    code, out = verify(path, key=None)
    assert code == 2 and "keyed" in out
    assert verify(tmp_path / "missing.jsonl")[0] == 2
    assert verify(tmp_path, key=None)[0] == 2  # a directory


def test_verify_json_output_and_library(tmp_path: Path) -> None:
    """--format json carries the result; verify_path gives the same answer."""
    path = closed_file(tmp_path)
    code, out = verify(path, "--format", "json")
    assert code == 0 and json.loads(out)["records"] == 6
    result = verify_path(str(path), key=KEY.encode(), require_closed=True)
    assert result.ok and result.closed and result.chain == "hmac-sha256"


def test_sha256_is_over_the_canonical_form() -> None:
    """The hash covers sorted-key compact JSON without the hash field (the documented form)."""
    rec = {"seq": 0, "b": "é", "a": [1, 2], "hash": "x"}
    expected = hashlib.sha256('{"a":[1,2],"b":"é","seq":0}'.encode()).hexdigest()
    assert audit.chain_hash(rec, None) == expected


# --- logs validate on audit files --------------------------------------------------------------


def test_logs_validate_checks_audit_files(tmp_path: Path) -> None:
    """`logs validate` recognises an audit file (or --audit) and checks the audit schema and
    card numbers; a log file passed with --audit fails it."""
    path = closed_file(tmp_path, n=1)
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        assert main(["logs", "validate", str(path)]) == 0
        assert main(["logs", "validate", "--audit", str(path)]) == 0
    raw = path.read_text().splitlines()
    raw[1] = (
        raw[1]
        .replace('"resource":"p:0"', '"resource":"4111111111111111"')
        .replace('"outcome":"success"', '"outcome":"maybe"')
    )
    _rewrite(path, raw)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["logs", "validate", str(path)]) == 1
    text = out.getvalue()
    assert f"{path}:2:" in text and "outcome" in text and "unmasked card number" in text


FORK = """
import io, os, sys
import otelfin
from otelfin import audit

otelfin.configure("svc", audit_file=sys.argv[1], log_stream=io.StringIO())
audit.record("parent.before", actor="p", outcome="success")
pid = os.fork()
if pid == 0:
    try:
        audit.record("child.work", actor="c", outcome="success")
        code = 0
    except audit.AuditError as exc:
        print("child:", exc)
        code = 3
    otelfin.shutdown()
    os._exit(code)
_, status = os.waitpid(pid, 0)
audit.record("parent.after", actor="p", outcome="success")
otelfin.shutdown()
print("child exit", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.parametrize("template", ["audit-{pid}.jsonl", "audit.jsonl"])
def test_forked_children_keep_their_own_chain(tmp_path: Path, template: str) -> None:
    """With {pid} a forked child writes its own closed chain and the parent's stays intact;
    without it the child's record raises AuditError instead of forking the chain."""
    import subprocess
    import sys

    script = tmp_path / "fork.py"
    script.write_text(FORK)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / template)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    files = sorted(tmp_path.glob("audit*.jsonl"))
    for path in files:
        assert verify(path, "--require-closed", key=None)[0] == 0, path.read_text()
    if "{pid}" in template:
        assert "child exit 0" in done.stdout and len(files) == 2
        events = sorted(e for p in files for e in (r["event"] for r in lines(p)))
        assert events.count("audit.start") == 2 and "child.work" in events
    else:
        assert "child exit 3" in done.stdout and "{pid}" in done.stdout and len(files) == 1
        assert [r["event"] for r in lines(files[0])] == [
            "audit.start",
            "parent.before",
            "parent.after",
            "audit.stop",
        ]


def test_a_new_key_on_an_old_file_is_refused(tmp_path: Path) -> None:
    """Continuing a chain under another key (or none) would make it unverifiable: ValueError
    at configure(), and record() then says why there is no trail."""
    path = closed_file(tmp_path, n=1)
    with pytest.raises(ValueError, match="another audit key"):
        otelfin.configure(
            "svc", audit_file=str(path), audit_key="rotated", log_stream=io.StringIO()
        )
    with pytest.raises(audit.AuditError, match="another audit key"):
        audit.record("login", actor="bob", outcome="success")
    assert verify(path, "--require-closed")[0] == 0  # the old file is untouched


def test_zero_code_fallback_without_a_trail_names_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under fallbacks an unopenable audit file is a noted problem; record() raises with it."""
    from otelfin import _config

    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("OTELFIN_AUDIT_FILE", str(blocker / "audit.jsonl"))
    _, problems = _config.configure_with_fallbacks("svc", log_stream=io.StringIO())
    assert any("audit_file" in p for p in problems), problems
    with pytest.raises(audit.AuditError, match="cannot be opened"):
        audit.record("login", actor="bob", outcome="success")
