"""uvicorn's and gunicorn's own access and error lines come out as otelfin JSON, masked."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

from otelfin.logging import validate_file
from tests.integration._procs import Proc, clean_env, free_port, get, json_lines, wait_http

ASGI_APP = """
import otelfin
from otelfin.instrument.transports.asgi import middleware

otelfin.configure("edge-api")

async def raw(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

app = middleware(raw)
"""

FLASK_APP = """
import otelfin
from flask import Flask
from opentelemetry.instrumentation.flask import FlaskInstrumentor

otelfin.configure("risk-api")
app = Flask(__name__)
if not getattr(app, "_is_instrumented_by_opentelemetry", False):
    FlaskInstrumentor().instrument_app(app)

@app.route("/pay")
def pay():
    return "ok"
"""

CARD = "4111111111111111"


def _check(proc: Proc, tmp_path: Path, access_logger: str) -> None:
    out, err = proc.stdout, proc.stderr
    assert CARD not in out and CARD not in err
    records = json_lines(out)
    access = [r for r in records if r.get("logger") == access_logger and "/pay" in r["event"]]
    assert len(access) == 1, out[-3000:]
    line = access[0]
    assert "XXXXXXXXXXXX1111" in line["event"]
    assert len(line.get("trace_id", "")) == 32 and len(line.get("span_id", "")) == 16
    (tmp_path / "logs.jsonl").write_text("".join(f"{r}\n" for r in out.splitlines() if r.strip()))
    report = validate_file(str(tmp_path / "logs.jsonl"))
    assert report.bad_lines == 0, report.violations[:5]


def _pay_once(tmp_path: Path, source: str, module: str, server: list[str]) -> tuple[Proc, int]:
    """``source`` as ``module``.py served by ``python -m SERVER...`` (``{port}`` filled in) in
    a clean environment: one paid request, then SIGTERM; the process and its exit status."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    port = free_port()
    argv = [sys.executable, "-m", *(a.replace("{port}", str(port)) for a in server)]
    proc = Proc(argv, tmp_path, clean_env())
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ready", proc)
    assert get(f"{base}/pay?card={CARD}")[0] == 200
    proc.signal(signal.SIGTERM)
    return proc, proc.wait()


def test_uvicorn_access_and_error_lines_are_json(tmp_path: Path) -> None:
    """uvicorn app:app with configure() inside: access lines JSON, masked, with trace ids."""
    proc, _ = _pay_once(
        tmp_path,
        ASGI_APP,
        "asgi_app",
        ["uvicorn", "asgi_app:app", "--port", "{port}", "--lifespan", "off"],
    )
    _check(proc, tmp_path, "uvicorn.access")
    records = json_lines(proc.stdout)
    assert any(
        r.get("logger") == "uvicorn.error" and "Shutting down" in r["event"] for r in records
    )
    assert "Uvicorn running" not in proc.stderr.replace('"', "")  # not the plain handler


def test_gunicorn_access_and_error_lines_are_json(tmp_path: Path) -> None:
    """gunicorn --access-logfile - with configure() in the worker: JSON access lines, trace ids."""
    proc, code = _pay_once(
        tmp_path,
        FLASK_APP,
        "flask_app",
        ["gunicorn", "-w", "1", "-b", "127.0.0.1:{port}", "--access-logfile", "-", "flask_app:app"],
    )
    assert code == 0
    _check(proc, tmp_path, "gunicorn.access")
    records = json_lines(proc.stdout)
    assert any(
        r.get("logger") == "gunicorn.error" and "Worker exiting" in r["event"] for r in records
    )


def test_uvicorn_run_from_code_with_log_config_none(tmp_path: Path) -> None:
    """The documented line: uvicorn.run(app, log_config=None) after configure() gives JSON."""
    script = textwrap.dedent(ASGI_APP) + textwrap.dedent(
        """
        import os
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), lifespan="off",
                    log_config=None)
        """
    )
    (tmp_path / "serve.py").write_text(script)
    port = free_port()
    proc = Proc([sys.executable, "serve.py"], tmp_path, clean_env(PORT=str(port)))
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ready", proc)
    assert get(f"{base}/pay?card={CARD}")[0] == 200
    proc.signal(signal.SIGTERM)
    proc.wait()
    _check(proc, tmp_path, "uvicorn.access")


# --- crash lines: an unhandled exception's server line is first-class ----------------------

FASTAPI_CRASH = """
import otelfin
from fastapi import FastAPI

otelfin.configure("edge-api")
app = FastAPI()


@app.get("/crash/{pid}")
def crash(pid: str):
    raise RuntimeError("ledger exploded for card 4111111111111111")
"""

FLASK_CRASH = """
import otelfin
from flask import Flask

otelfin.configure("risk-api")
app = Flask(__name__)


@app.route("/crash/<pid>")
def crash(pid):
    raise RuntimeError("risk exploded for card 4111111111111111")
"""

WSGI_CRASH = """
import otelfin
from otelfin.instrument.transports.wsgi import middleware

otelfin.configure("settle-api")


def raw(environ, start_response):
    if environ["PATH_INFO"].startswith("/crash"):
        raise RuntimeError("settlement exploded for card 4111111111111111")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


app = middleware(raw)
"""

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _crash_line(out: str, logger: str, text: str) -> dict[str, object]:
    lines = [r for r in json_lines(out) if r.get("logger") == logger and text in r["event"]]
    assert len(lines) == 1, out[-4000:]
    return lines[0]


def _first_class(proc: Proc, tmp_path: Path, line: dict[str, object]) -> None:
    """The crash line: the request's trace, SYS-001, masked; every line passes validate."""
    assert line["trace_id"] == TRACE, line
    assert isinstance(line["span_id"], str) and len(line["span_id"]) == 16
    assert line["span_id"] != "00f067aa0ba902b7"  # the request's own span, not the caller's
    assert line["level"] == "error" and line["error_code"] == "SYS-001"
    assert "RuntimeError" in str(line["exception"])
    out = proc.stdout
    assert CARD not in out + proc.stderr
    assert "\x1b" not in out and "color_message" not in out
    (tmp_path / "logs.jsonl").write_text(out)
    report = validate_file(str(tmp_path / "logs.jsonl"))  # the default settings' catalogue
    assert report.bad_lines == 0, report.violations[:5]


def _traced_get(url: str) -> int:
    return get(url, {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})[0]


def test_uvicorn_crash_line_has_the_request_trace_and_a_code(tmp_path: Path) -> None:
    """uvicorn's "Exception in ASGI application": trace/span ids, SYS-001, valid, no ANSI."""
    (tmp_path / "crash_app.py").write_text(textwrap.dedent(FASTAPI_CRASH))
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "crash_app:app", "--port", str(port)]
    proc = Proc([*argv, "--lifespan", "off", "--use-colors"], tmp_path, clean_env())
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ready", proc)
    assert _traced_get(f"{base}/crash/7") == 500
    proc.signal(signal.SIGTERM)
    proc.wait()
    line = _crash_line(proc.stdout, "uvicorn.error", "Exception in ASGI application")
    _first_class(proc, tmp_path, line)
    assert any("Uvicorn running" in r["event"] for r in json_lines(proc.stdout))


def _gunicorn(tmp_path: Path, module: str, source: str) -> tuple[Proc, str]:
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}"]
    proc = Proc([*argv, f"{module}:app"], tmp_path, clean_env())
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ready", proc)
    return proc, base


def test_gunicorn_flask_crash_line_has_the_request_trace_and_a_code(tmp_path: Path) -> None:
    """Flask under gunicorn: "Exception on /crash/7 [GET]" is correlated, coded and valid."""
    proc, base = _gunicorn(tmp_path, "flask_crash", FLASK_CRASH)
    assert _traced_get(f"{base}/crash/7") == 500
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    _first_class(proc, tmp_path, _crash_line(proc.stdout, "flask_crash", "Exception on /crash/7"))


def test_gunicorn_wsgi_crash_line_has_the_request_trace_and_a_code(tmp_path: Path) -> None:
    """A bare WSGI app under gunicorn: "Error handling request" is correlated and coded."""
    proc, base = _gunicorn(tmp_path, "wsgi_crash", WSGI_CRASH)
    assert _traced_get(f"{base}/crash/7") == 500
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    line = _crash_line(proc.stdout, "gunicorn.error", "Error handling request")
    _first_class(proc, tmp_path, line)
