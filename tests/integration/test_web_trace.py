"""A FastAPI API (uvicorn) calling a Flask service (gunicorn): one trace, by configure() alone."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tests.integration._procs import (
    free_port,
    read_spans,
    span_attributes,
    start_server,
    stop_server,
    wait_listening,
)


def test_fastapi_to_flask_is_one_trace(tmp_path: Path) -> None:
    """checkout (FastAPI) -> httpx -> risk (Flask): SERVER, CLIENT, SERVER in one trace."""
    risk_port, api_port = free_port(), free_port()
    risk_spans, api_spans = tmp_path / "risk.jsonl", tmp_path / "api.jsonl"
    risk = start_server(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{risk_port}",
         "tests.integration.webapps.flask_app:app"],
        risk_spans,
    )  # fmt: skip
    api = start_server(
        [sys.executable, "-m", "uvicorn", "tests.integration.webapps.checkout_app:app",
         "--host", "127.0.0.1", "--port", str(api_port), "--log-level", "warning"],
        api_spans,
        RISK_URL=f"http://127.0.0.1:{risk_port}",
    )  # fmt: skip
    try:
        wait_listening(risk_port, risk, "gunicorn")
        wait_listening(api_port, api, "uvicorn")
        answers = [httpx.post(f"http://127.0.0.1:{api_port}/checkout/{pid}") for pid in (1, 402)]
    finally:
        stop_server(api)
        stop_server(risk)
    assert [a.json()["risk_status"] for a in answers] == [200, 402]

    spans = read_spans(api_spans) + read_spans(risk_spans)
    by_id = {s["spanId"]: s for s in spans}
    risk_servers = [s for s in read_spans(risk_spans) if s["kind"] in (2, "SPAN_KIND_SERVER")]
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
    declined = next(s for s in risk_servers if span_attributes(s).get("otelfin.error_code"))
    assert span_attributes(declined)["otelfin.error_code"] == "PAY-012"
    assert len({s["traceId"] for s in risk_servers}) == 2
