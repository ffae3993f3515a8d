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


def test_uvicorn_access_and_error_lines_are_json(tmp_path: Path) -> None:
    """uvicorn app:app with configure() inside: access lines JSON, masked, with trace ids."""
    (tmp_path / "asgi_app.py").write_text(textwrap.dedent(ASGI_APP))
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "uvicorn", "asgi_app:app", "--port", str(port), "--lifespan", "off"],
        tmp_path,
        clean_env(),
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ready", proc)
    assert get(f"{base}/pay?card={CARD}")[0] == 200
    proc.signal(signal.SIGTERM)
    proc.wait()
    _check(proc, tmp_path, "uvicorn.access")
    records = json_lines(proc.stdout)
    assert any(
        r.get("logger") == "uvicorn.error" and "Shutting down" in r["event"] for r in records
    )
    assert "Uvicorn running" not in proc.stderr.replace('"', "")  # not the plain handler


def test_gunicorn_access_and_error_lines_are_json(tmp_path: Path) -> None:
    """gunicorn --access-logfile - with configure() in the worker: JSON access lines, trace ids."""
    (tmp_path / "flask_app.py").write_text(textwrap.dedent(FLASK_APP))
    port = free_port()
    proc = Proc(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "--access-logfile",
            "-",
            "flask_app:app",
        ],
        tmp_path,
        clean_env(),
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ready", proc)
    assert get(f"{base}/pay?card={CARD}")[0] == 200
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
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
