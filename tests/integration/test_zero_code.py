"""Zero-code: `opentelemetry-instrument` with otelfin as distro/configurator gives configure()."""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from pathlib import Path

from otelfin.logging import validate_file
from tests.integration._procs import (
    BIN,
    Proc,
    clean_env,
    free_port,
    get,
    json_lines,
    read_spans,
    wait_http,
    zero_code,
)

RISK = """
import logging
import os

from flask import Flask


class Declined(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.error_code = code


class RiskService:
    def check(self, card, amount):
        if amount > 100:
            raise Declined("PAY-012", f"Insufficient balance on card {card}")
        return "approved"


app = Flask(__name__)
service = RiskService()


@app.route("/check/<int:amount>")
def check(amount):
    try:
        return service.check("4111 1111 1111 1111", amount)
    except Declined as exc:
        logging.getLogger("risk").warning("declined: %s", exc)
        return "declined", 402
"""

SERVE = """
import os
from werkzeug.serving import make_server
from risk import app

make_server("127.0.0.1", int(os.environ["PORT"]), app).serve_forever()
"""

CARD = "4111 1111 1111 1111"


def test_flask_app_under_opentelemetry_instrument(tmp_path: Path) -> None:
    """No otelfin line in the app: JSON masked logs, server+method spans, RED metrics, flush."""
    (tmp_path / "risk.py").write_text(textwrap.dedent(RISK))
    (tmp_path / "serve.py").write_text(textwrap.dedent(SERVE))
    port, metrics_port = free_port(), free_port()
    spans_file = tmp_path / "spans.jsonl"
    proc = zero_code(
        ["serve.py"],
        tmp_path,
        "risk_service",
        OTELFIN_METHODS_INCLUDE="risk:RiskService.check,not a valid entry",
        OTELFIN_SPANS_FILE=str(spans_file),
        OTELFIN_METRICS_PORT=str(metrics_port),
        OTELFIN_METRICS_ADDR="127.0.0.1",
        PORT=str(port),
        PYTHONPATH=str(tmp_path),
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/check/1", proc)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert get(f"{base}/check/5", {"traceparent": parent}) == (200, "approved")
    assert get(f"{base}/check/500")[0] == 402
    status, exposition = get(f"http://127.0.0.1:{metrics_port}/metrics")
    proc.signal(signal.SIGTERM)
    code = proc.wait()
    assert code == -signal.SIGTERM, proc.stderr[-3000:]

    # Logs: every stdout line is an otelfin JSON line (werkzeug's own included), masked.
    out = proc.stdout
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and len(json_lines(out)) == len(lines), out[-3000:]
    (tmp_path / "logs.jsonl").write_text(out)
    assert validate_file(str(tmp_path / "logs.jsonl")).bad_lines == 0
    assert CARD not in out and "4111111111111111" not in out
    records = json_lines(out)
    assert {r["service_name"] for r in records} == {"risk-service"}
    declined = [r for r in records if r["event"].startswith("declined")]
    assert declined and "XXXXXXXXXXXX1111" in declined[0]["event"]
    assert any("not a valid entry" in r["event"] for r in records)  # bad entry reported
    assert not [r for r in records if r["logger"] == "otelfin" and "failed" in r["event"]]

    # Spans: Flask SERVER spans continue the caller's trace; the listed method is traced.
    text = spans_file.read_text()
    assert CARD not in text
    spans = read_spans(spans_file)
    server = [s for s in spans if s["kind"] == 2]
    method = [s for s in spans if s["name"] == "RiskService.check"]
    assert len(method) == 3 and len(server) == 3
    assert any(s["traceId"] == "0af7651916cd43dd8448eb211c80319c" for s in server)
    by_id = {s["spanId"]: s for s in spans}
    assert all(by_id[m["parentSpanId"]]["kind"] == 2 for m in method)
    # PAY-012 is a decline (severity warning): the span carries the code, never status ERROR.
    failed = next(m for m in method if m.get("events"))
    span_attrs = {a["key"]: a["value"].get("stringValue") for a in failed["attributes"]}
    assert span_attrs["otelfin.error_code"] == "PAY-012"
    assert span_attrs["otelfin.outcome"] == "declined" and failed["status"]["code"] != 2
    (event,) = failed["events"]
    attrs = {a["key"]: a["value"]["stringValue"] for a in event["attributes"]}
    assert "XXXXXXXXXXXX1111" in attrs["exception.message"]
    assert "exception.stacktrace" not in attrs  # a registered decline is not a crash

    # RED metrics for the method (an internal function: its own series) with its decline.
    assert status == 200
    assert 'operation="RiskService.check"' in exposition
    assert 'operation="RiskService.check",outcome="declined"' in exposition
    # The handler answered 402 itself: the request takes the method's code for its decline.
    assert 'otelfin_request_declines_total{channel="",error_code="PAY-012"' in exposition
    assert 'service="risk_service"' in exposition


def test_bad_setting_is_one_line_and_the_app_still_runs(tmp_path: Path) -> None:
    """A wrong OTELFIN_* value under zero-code: one clear stderr line, the program's own result
    (the setting runs at its default: test_zero_code_fail_closed checks the masking)."""
    script = tmp_path / "job.py"
    script.write_text("print(json.dumps({'result': 42}))\n".join(["import json\n", ""]))
    proc = zero_code([str(script)], tmp_path, "job", OTELFIN_PAN_MASK="everything")
    assert proc.wait() == 0
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"result": 42}
    assert "otelfin: zero-code set-up with defaults for bad settings" in proc.stderr
    assert "OTELFIN_PAN_MASK" in proc.stderr and "Traceback" not in proc.stderr


def test_distro_and_configurator_entry_points_are_otelfin() -> None:
    """opentelemetry-instrument can find otelfin as distro and configurator by name."""
    from importlib.metadata import entry_points

    from otelfin._zerocode import OtelfinConfigurator, OtelfinDistro

    (distro,) = [e for e in entry_points(group="opentelemetry_distro") if e.name == "otelfin"]
    (conf,) = [e for e in entry_points(group="opentelemetry_configurator") if e.name == "otelfin"]
    assert distro.load() is OtelfinDistro and conf.load() is OtelfinConfigurator


JOB = """
import os
import sys

class Ledger:
    def post(self, amount):
        return amount * 2

def settle(amount):
    return Ledger().post(amount) + 1

if __name__ == "__main__":
    print("settled", settle(20))
"""


def _run_job(tmp_path: Path, argv: list[str], include: str) -> tuple[str, list[str]]:
    spans_file = tmp_path / f"spans-{len(list(tmp_path.iterdir()))}.jsonl"
    proc = zero_code(
        argv,
        tmp_path,
        "settlement",
        OTELFIN_METHODS_INCLUDE=include,
        OTELFIN_SPANS_FILE=str(spans_file),
        OTELFIN_SPAN_PROCESSOR="simple",
        PYTHONPATH=str(tmp_path),
    )
    assert proc.wait() == 0, proc.stderr[-3000:]
    return proc.stdout, sorted(s["name"] for s in read_spans(spans_file))


def test_include_entries_for_a_script(tmp_path: Path) -> None:
    """`python job.py`: entries by file name or __main__ trace functions defined later."""
    (tmp_path / "job.py").write_text(textwrap.dedent(JOB))
    out, names = _run_job(tmp_path, ["job.py"], "job:settle,__main__:Ledger.post")
    assert "settled 41" in out
    assert names == ["Ledger.post", "settle"]


def test_include_entries_for_python_dash_m(tmp_path: Path) -> None:
    """`python -m pkg.job`: the module's own name works though it runs as __main__."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "job.py").write_text(textwrap.dedent(JOB))
    out, names = _run_job(tmp_path, ["-m", "pkg.job"], "pkg.job:*")
    assert "settled 41" in out
    assert names == ["Ledger.post", "settle"]


def test_configure_at_the_top_of_a_script_traces_later_definitions(tmp_path: Path) -> None:
    """configure(methods_include="__main__:...") before the defs: they are traced anyway."""
    script = "import otelfin\notelfin.configure('settlement', methods_include='__main__:settle')\n"
    (tmp_path / "job.py").write_text(script + textwrap.dedent(JOB))
    spans_file = tmp_path / "spans.jsonl"
    env = clean_env(OTELFIN_SPANS_FILE=str(spans_file), OTELFIN_SPAN_PROCESSOR="simple")
    proc = Proc([sys.executable, "job.py"], tmp_path, env)
    assert proc.wait() == 0, proc.stderr[-3000:]
    assert "settled 41" in proc.stdout
    assert [s["name"] for s in read_spans(spans_file)] == ["settle"]


FASTAPI_APP = """
import logging

from fastapi import FastAPI

app = FastAPI()


@app.get("/payments/{pid}")
def payment(pid: str, card: str = ""):
    logging.getLogger("payments").info("looked up %s", card)
    return {"pid": pid}
"""


def test_uvicorn_fastapi_under_opentelemetry_instrument(tmp_path: Path) -> None:
    """`opentelemetry-instrument uvicorn app:app`: uvicorn's own lines are otelfin JSON too."""
    (tmp_path / "api.py").write_text(textwrap.dedent(FASTAPI_APP))
    port = free_port()
    spans_file = tmp_path / "spans.jsonl"
    env = clean_env(
        OTEL_PYTHON_DISTRO="otelfin",
        OTEL_PYTHON_CONFIGURATOR="otelfin",
        OTEL_SERVICE_NAME="payments_api",
        OTELFIN_SPANS_FILE=str(spans_file),
        PYTHONPATH=str(tmp_path),
    )
    argv = [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), "api:app"]
    proc = Proc([*argv, "--port", str(port), "--lifespan", "off"], tmp_path, env)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/payments/0", proc)
    assert get(f"{base}/payments/7?card={CARD.replace(' ', '')}")[0] == 200
    proc.signal(signal.SIGTERM)
    assert proc.wait() == -signal.SIGTERM
    out = proc.stdout
    assert "4111111111111111" not in out + proc.stderr
    records = json_lines(out)
    access = [
        r for r in records if r.get("logger") == "uvicorn.access" and "/payments/7" in r["event"]
    ]
    assert len(access) == 1, out[-3000:]
    assert "XXXXXXXXXXXX1111" in access[0]["event"] and len(access[0]["trace_id"]) == 32
    app_line = next(
        r for r in records if r.get("logger") == "payments" and "XXXXXXXXXXXX1111" in r["event"]
    )
    assert app_line["trace_id"] == access[0]["trace_id"]
    server = [s for s in read_spans(spans_file) if s["kind"] == 2]
    assert any(s["traceId"] == access[0]["trace_id"] for s in server)
