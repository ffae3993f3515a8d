"""A FastAPI API (uvicorn) calling a Flask service (gunicorn): one trace, by configure() alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.integration.test_web_frameworks import (
    ROOT,
    _attributes,
    _free_port,
    _spans,
    _wait_for,
)


def _start(argv: list[str], spans_file: Path, **env: str) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTELFIN_SPANS_FILE": str(spans_file),
        "OTELFIN_SPAN_PROCESSOR": "simple",
        "OTEL_TRACES_EXPORTER": "",
        **env,
    }
    return subprocess.Popen(
        argv, cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def test_fastapi_to_flask_is_one_trace(tmp_path: Path) -> None:
    """checkout (FastAPI) -> httpx -> risk (Flask): SERVER, CLIENT, SERVER in one trace."""
    risk_port, api_port = _free_port(), _free_port()
    risk_spans, api_spans = tmp_path / "risk.jsonl", tmp_path / "api.jsonl"
    risk = _start(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{risk_port}",
         "tests.integration.webapps.flask_app:app"],
        risk_spans,
    )  # fmt: skip
    api = _start(
        [sys.executable, "-m", "uvicorn", "tests.integration.webapps.checkout_app:app",
         "--host", "127.0.0.1", "--port", str(api_port), "--log-level", "warning"],
        api_spans,
        RISK_URL=f"http://127.0.0.1:{risk_port}",
    )  # fmt: skip
    try:
        _wait_for(risk_port, risk, "gunicorn")
        _wait_for(api_port, api, "uvicorn")
        answers = [httpx.post(f"http://127.0.0.1:{api_port}/checkout/{pid}") for pid in (1, 402)]
    finally:
        _stop(api)
        _stop(risk)
    assert [a.json()["risk_status"] for a in answers] == [200, 402]

    spans = _spans(api_spans) + _spans(risk_spans)
    by_id = {s["spanId"]: s for s in spans}
    risk_servers = [s for s in _spans(risk_spans) if s["kind"] in (2, "SPAN_KIND_SERVER")]
    assert [s["name"] for s in risk_servers] == ["POST /payments/<pid>"] * 2
    for server in risk_servers:
        client = by_id[server["parentSpanId"]]
        assert client["kind"] in (3, "SPAN_KIND_CLIENT")
        api_server = client
        while api_server["kind"] not in (2, "SPAN_KIND_SERVER"):
            api_server = by_id[api_server["parentSpanId"]]
        assert api_server["name"] == "POST /checkout/{pid}"
        assert "parentSpanId" not in api_server or not api_server["parentSpanId"]
        assert {server["traceId"], client["traceId"], api_server["traceId"]} == {
            api_server["traceId"]
        }
    declined = next(s for s in risk_servers if _attributes(s).get("otelfin.error_code"))
    assert _attributes(declined)["otelfin.error_code"] == "PAY-012"
    assert len({s["traceId"] for s in risk_servers}) == 2
