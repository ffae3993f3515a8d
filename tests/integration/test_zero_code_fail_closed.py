"""Zero-code fails closed: under `opentelemetry-instrument`, a bad setting or a failure inside
otelfin never leaves the application's logging writing card numbers (real subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otelfin.scrub import find_pans
from tests.integration._procs import Proc, json_lines, zero_code

APP = """
import logging
import sys

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(message)s")
log = logging.getLogger("app")
log.warning("card %s declined", "4111 1111 1111 1111")
log.warning("odd card 4222 2222 2222 2 and diners 3056 9309 0259 04")
log.info("password=hunter2 auth_code=A1B2C3")
print("result", 42)
"""


def _run(tmp_path: Path, source: str = APP, service: str = "fail-closed", **env: str) -> Proc:
    """``source`` as app.py under opentelemetry-instrument; it must exit 0."""
    (tmp_path / "app.py").write_text(source)
    proc = zero_code(["app.py"], tmp_path, service, **env)
    assert proc.wait() == 0, proc.stderr[-3000:]
    return proc


def _assert_masked(proc: Proc) -> None:
    out, err = proc.stdout, proc.stderr
    assert "result 42" in out
    for text in (out, err):
        assert find_pans(text) == [], text[-2000:]
        assert "hunter2" not in text
    both = out + err
    assert "XXXXXXXXXXXX1111" in both  # the default mask, never "no mask"
    assert "XXXXXXXXX2222" in both and "XXXXXXXXXX5904" in both
    assert "A1B2C3" in both  # an approval code is not a secret


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTELFIN_PAN_MASK": "everything"}, "OTELFIN_PAN_MASK"),
        ({"OTELFIN_CATALOGUE": "/nonexistent/errorcodes.yaml"}, "errorcodes.yaml"),
        ({"OTEL_TRACES_EXPORTER": "carrier-pigeon"}, "carrier-pigeon"),
        ({"OTELFIN_LOG_LEVEL": "loud", "OTELFIN_METRICS_SLO": "-1"}, "OTELFIN_METRICS_SLO"),
        ({"OTELFIN_LOG_FILE": "/proc/no-such-dir/logs.jsonl"}, "log_file"),
        ({"OTELFIN_PAN_FINGERPRINT_KEY_FILE": "/nonexistent/key"}, "/nonexistent/key"),
    ],
    ids=["pan-mask", "catalogue", "exporter", "two-bad-values", "log-file", "key-file"],
)
def test_a_bad_setting_falls_back_to_defaults_and_masks(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    """One stderr line naming the bad setting; the app's own logging masked (default mask)."""
    proc = _run(tmp_path, **env)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("otelfin:")]
    assert len(lines) == 1, proc.stderr
    assert named in lines[0] and "masking stays on" in lines[0]
    assert "Traceback" not in proc.stderr
    _assert_masked(proc)


HOSTILE = """
import logging
import sys

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(message)s")


class Evil(str):
    def isascii(self):
        raise RuntimeError("isascii exploded")

    def encode(self, *args, **kwargs):
        raise RuntimeError("encode exploded")


logging.getLogger("app").warning("card %s", Evil("4111 1111 1111 1111"))
logging.getLogger("app").warning("card %s again", "4111 1111 1111 1111")
print("result", 42)
"""


def test_an_exception_inside_otelfins_scrubber_withholds_not_leaks(tmp_path: Path) -> None:
    """A value that makes the scrubber itself raise (a str subclass whose methods fail): the
    record is written withheld, the failure reported once, the next record masked."""
    proc = _run(tmp_path, HOSTILE)
    out, err = proc.stdout, proc.stderr
    assert "result 42" in out
    assert find_pans(out) == [] and find_pans(err) == []
    assert (out + err).count("record_scrub failed") == 1
    assert "record withheld" in out and "card XXXXXXXXXXXX1111 again" in out


def test_good_settings_print_nothing(tmp_path: Path) -> None:
    """With valid settings there is no otelfin line on stderr, and lines are JSON, masked."""
    proc = _run(tmp_path)
    assert "otelfin:" not in proc.stderr
    _assert_masked(proc)
    lines = json_lines(proc.stdout)
    assert any(line.get("logger") == "app" for line in lines)
    assert json.dumps(lines).count("XXXXXXXXXXXX1111") >= 1


AUDITED = """
import otelfin

otelfin.audit.record(
    "card_data.read", actor="alice", outcome="success", card="4111 1111 1111 1111"
)
print("result", 42)
"""


def test_zero_code_audit_trail_opens_and_closes(tmp_path: Path) -> None:
    """Under opentelemetry-instrument with OTELFIN_AUDIT_FILE/KEY: start record at set-up, the
    app's record masked and fingerprinted, stop record at exit; the chain verifies closed."""
    from otelfin.scrub import fingerprint
    from otelfin.tools.audit import verify_path

    audit_file = tmp_path / "audit.jsonl"
    _run(
        tmp_path,
        AUDITED,
        "audited",
        OTELFIN_AUDIT_FILE=str(audit_file),
        OTELFIN_AUDIT_KEY="zero-code-key",
        OTELFIN_PAN_FINGERPRINT_KEY="fp-key",
    )
    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert [r["event"] for r in records] == ["audit.start", "card_data.read", "audit.stop"]
    token = fingerprint("4111111111111111", key="fp-key")
    assert records[1]["details"]["card"] == f"XXXXXXXXXXXX1111 {token}"
    result = verify_path(str(audit_file), key=b"zero-code-key", require_closed=True)
    assert result.ok and result.records == 3
