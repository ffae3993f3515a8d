"""FastAPI under uvicorn, Flask and Django under gunicorn: real processes on 127.0.0.1.

Each app is instrumented by ``configure()`` alone (plus the one problem-details line) and driven
over HTTP. Spans come out of the server process through the JSONL exporter with the simple
processor, RED metrics from its ``/metrics`` port, log lines from its stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration._procs import (
    free_port,
    read_spans,
    span_attributes,
    stop_server,
    wait_listening,
)
from tests.integration._settle import settled_metrics

ROOT = Path(__file__).resolve().parents[2]
PAN_DIGITS = "4111111111111111"
#: payment id -> status the app answers with (see webapps.outcome)
REQUESTS = {1: 200, 2: 200, 402: 402, 503: 503, 500: 500}


@dataclass
class Served:
    """A finished run: what the client saw and what the server process wrote."""

    responses: dict[int, httpx.Response]
    spans: list[dict[str, object]]
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    logs: list[dict[str, object]]


def _status(span: dict[str, object]) -> str:
    """The response status on a server span (either semantic-conventions generation)."""
    attributes = span_attributes(span)
    return str(attributes.get("http.response.status_code", attributes.get("http.status_code")))


def _server_spans(run: Served) -> list[dict[str, object]]:
    return [s for s in run.spans if s["kind"] in (2, "SPAN_KIND_SERVER")]


def _serve(command: list[str], tmp_path: Path, what: str) -> Served:
    """Start the server, send :data:`REQUESTS`, scrape metrics, stop it with SIGTERM."""
    port, metrics_port = free_port(), free_port()
    spans_file = tmp_path / "spans.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTELFIN_SPANS_FILE": str(spans_file),
        "OTELFIN_SPAN_PROCESSOR": "simple",
        "OTELFIN_METRICS_PORT": str(metrics_port),
        "OTEL_TRACES_EXPORTER": "",
        "PORT": str(port),
    }
    argv = [a.replace("{port}", str(port)) for a in command]
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_listening(port, process, what)
        wait_listening(metrics_port, process, f"{what} metrics")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            responses = {pid: client.post(f"/payments/{pid}") for pid in REQUESTS}
        # Under uvicorn the SERVER span ends, and the request is counted, after the response
        # went out: a single scrape right after the last response may miss that request.
        scrape = settled_metrics(f"http://127.0.0.1:{metrics_port}/metrics", len(REQUESTS))
    finally:
        out, err = stop_server(process)
    metrics = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    }
    logs = []
    for line in out.decode().splitlines():
        if line.startswith("{"):
            logs.append(json.loads(line))
    assert {pid: r.status_code for pid, r in responses.items()} == REQUESTS, err.decode()[-3000:]
    return Served(responses, read_spans(spans_file), metrics, logs)


def _count(run: Served, name: str, **labels: str) -> float:
    """Sum of samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in run.metrics.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def _check(run: Served, operation: str, service: str) -> None:
    """The assertions every framework must pass (see the module docstring)."""
    servers = _server_spans(run)
    # Exactly one SERVER span per request, each in its own trace, named by the route template.
    assert len(servers) == len(REQUESTS), [s["name"] for s in servers]
    assert len({s["traceId"] for s in servers}) == len(REQUESTS)
    assert {s["name"] for s in servers} == {operation}
    assert all(span_attributes(s)["http.route"] == operation.split(" ", 1)[1] for s in servers)

    # The RED metrics: operation is the template, never a raw path; 5xx counts as an error,
    # the 402 decline (PAY-012, severity warning) as declined, not as an error.
    operations = {
        dict(labels).get("operation")
        for (name, labels) in run.metrics
        if name.startswith("otelfin_request")
    }
    assert operations == {operation}, operations
    base = {"service": service, "operation": operation}
    assert _count(run, "otelfin_requests_total", outcome="ok", **base) == 2
    assert _count(run, "otelfin_requests_total", outcome="declined", **base) == 1
    assert _count(run, "otelfin_requests_total", outcome="error", **base) == 2
    assert _count(run, "otelfin_request_errors_total", error_code="DB-003", **base) == 1
    assert _count(run, "otelfin_request_errors_total", error_code="PAY-012", **base) == 0
    assert _count(run, "otelfin_request_declines_total", error_code="PAY-012", **base) == 1
    assert _count(run, "otelfin_request_errors_total", **base) == 2  # DB-003 and the crash

    # The same code on span, metric, log line and problem+json response.
    for pid, code, status, title, outcome in (
        (402, "PAY-012", 402, "Insufficient balance", "declined"),
        (503, "DB-003", 503, None, "error"),
    ):
        response = run.responses[pid]
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["code"] == code and body["status"] == status
        assert body["type"] == f"urn:otelfin:error:{code}"
        assert body["instance"] == f"/payments/{pid}"
        if title is not None:
            assert body["title"] == title
        (span,) = [s for s in servers if s["traceId"] == body["trace_id"]]
        attributes = span_attributes(span)
        assert attributes["otelfin.error_code"] == code
        assert attributes["error.type"] == code
        assert attributes["otelfin.outcome"] == outcome
        is_error = span["status"].get("code") in (2, "STATUS_CODE_ERROR")  # type: ignore[union-attr]
        assert is_error is (outcome == "error")  # a decline is never status ERROR
        lines = [
            line
            for line in run.logs
            if line.get("event") == "http_request_failed" and line.get("error_code") == code
        ]
        assert len(lines) == 1, run.logs
        assert lines[0]["trace_id"] == body["trace_id"]
    decline = run.responses[402].json()
    assert PAN_DIGITS not in json.dumps(decline) and "1111" in decline["detail"]
    crash = [s for s in servers if _status(s) == "500"]
    assert len(crash) == 1 and crash[0]["status"]["code"] in (2, "STATUS_CODE_ERROR")  # type: ignore[index]
    assert span_attributes(crash[0])["otelfin.outcome"] == "error"
    assert {span_attributes(s)["otelfin.outcome"] for s in servers if _status(s) == "200"} == {"ok"}
    # One code for the crash on the span, the metric and the log line: the catalogue's code for
    # unhandled exceptions, never "unclassified" on one and SYS-001 on another.
    assert span_attributes(crash[0])["otelfin.error_code"] == "SYS-001"
    assert _count(run, "otelfin_request_errors_total", error_code="SYS-001", **base) == 1
    assert _count(run, "otelfin_request_errors_total", error_code="unclassified", **base) == 0
    # The server's or framework's crash line (uvicorn "Exception in ASGI application", Flask
    # "Exception on ...", Django "Internal Server Error: ...") carries the crash's trace and the
    # packaged code for unhandled exceptions; no error line is left without a code.
    crash_lines = [line for line in run.logs if line.get("error_code") == "SYS-001"]
    assert crash_lines, [line.get("event") for line in run.logs]
    assert {line.get("trace_id") for line in crash_lines} == {crash[0]["traceId"]}
    assert all("RuntimeError" in str(line.get("exception")) for line in crash_lines), crash_lines
    assert all(
        line.get("error_code") for line in run.logs if line["level"] in ("error", "critical")
    )


def test_fastapi_under_uvicorn(tmp_path: Path) -> None:
    """FastAPI + uvicorn: templates, one SERVER span (FastAPI's own stands down), codes, 5xx."""
    command = [
        sys.executable, "-m", "uvicorn", "tests.integration.webapps.fastapi_app:app",
        "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning",
    ]  # fmt: skip
    run = _serve(command, tmp_path, "uvicorn")
    _check(run, "POST /payments/{pid}", "payments-api")


def _gunicorn(app: str) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:{port}",
        "--log-level", "warning", app,
    ]  # fmt: skip


def test_flask_under_gunicorn(tmp_path: Path) -> None:
    """Flask app made before configure(), gunicorn: templates, one SERVER span, codes, 5xx."""
    run = _serve(_gunicorn("tests.integration.webapps.flask_app:app"), tmp_path, "gunicorn")
    _check(run, "POST /payments/<pid>", "risk-service")


def test_django_under_gunicorn(tmp_path: Path) -> None:
    """Django (configure() in settings), gunicorn: templates, one SERVER span, codes, 5xx."""
    run = _serve(
        _gunicorn("tests.integration.webapps.django_app:application"), tmp_path, "gunicorn"
    )
    _check(run, "POST payments/<int:pid>", "ledger-admin")
    # Django's own line for the 503 response, logged after the request's span ended: that
    # span's trace and code.
    (line,) = [x for x in run.logs if "Service Unavailable" in str(x.get("event"))]
    assert line["logger"] == "django.request" and line["error_code"] == "DB-003"
    assert line["trace_id"] == run.responses[503].json()["trace_id"]
