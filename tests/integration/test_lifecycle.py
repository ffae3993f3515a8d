"""Spans survive SIGTERM/SIGINT in real servers and loops; the process ends as the host made it."""

from __future__ import annotations

import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration._procs import Proc, clean_env, free_port, get, read_spans, wait_http

ASGI_APP = """
import os
import otelfin

if os.environ.get("WITH_OTELFIN") == "1":
    otelfin.configure("lifecycle-uvicorn")

@otelfin.traced(name="handle", attributes={"app.path": "path"})
def handle(path):
    return path.encode()

async def app(scope, receive, send):
    body = handle(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""

WSGI_APP = """
import os
import otelfin

otelfin.configure("lifecycle-gunicorn")

@otelfin.traced(name="handle", attributes={"app.path": "path"})
def handle(path):
    return f"{os.getpid()} {path}".encode()

def app(environ, start_response):
    body = handle(environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""

LOOP = """
import os
import signal
import sys
import time
import otelfin

if os.environ.get("HOST_HANDLER") == "1":
    stop = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
else:
    stop = ()
otelfin.configure("lifecycle-consumer", handle_signals=os.environ.get("HANDLE") != "0")

@otelfin.traced(name="process", kind="consumer")
def process(i):
    return i

i = 0
while not stop:
    process(i)
    print(i, flush=True)
    i += 1
    time.sleep(0.02)
sys.exit(3)
"""

# Batched spans sit in the queue for a minute: only a flush on the way out exports them.
BATCHED = {"OTEL_BSP_SCHEDULE_DELAY": "60000", "OTELFIN_SPAN_PROCESSOR": "batch"}


def _write(tmp_path: Path, name: str, source: str) -> None:
    (tmp_path / name).write_text(textwrap.dedent(source))


def _run_uvicorn(tmp_path: Path, signum: int, with_otelfin: bool) -> tuple[int, Path]:
    spans_file = tmp_path / f"spans-{signum}-{with_otelfin}.jsonl"
    port = free_port()
    env = clean_env(
        OTELFIN_SPANS_FILE=str(spans_file), WITH_OTELFIN="1" if with_otelfin else "0", **BATCHED
    )
    proc = Proc(
        [sys.executable, "-m", "uvicorn", "asgi_app:app", "--port", str(port), "--lifespan", "off"],
        tmp_path,
        env,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ready", proc)
    for n in range(5):
        assert get(f"{base}/pay/{n}")[0] == 200
    proc.signal(signum)
    return proc.wait(), spans_file


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_uvicorn_keeps_last_spans_and_exit_status(tmp_path: Path, signum: int) -> None:
    """uvicorn re-raises the signal (no atexit): every span is exported, same exit as without."""
    _write(tmp_path, "asgi_app.py", ASGI_APP)
    baseline, _ = _run_uvicorn(tmp_path, signum, with_otelfin=False)
    code, spans_file = _run_uvicorn(tmp_path, signum, with_otelfin=True)
    assert code == baseline
    if signum == signal.SIGTERM:
        assert code == -signal.SIGTERM  # died by the signal it re-raised
    paths = [a["value"]["stringValue"] for s in read_spans(spans_file) for a in s["attributes"]]
    assert sorted(p for p in paths if p.startswith("/pay/")) == [f"/pay/{n}" for n in range(5)]


def test_gunicorn_two_workers_keep_last_spans(tmp_path: Path) -> None:
    """gunicorn -w 2 stopped by SIGTERM: spans from both workers' requests reach the file."""
    _write(tmp_path, "wsgi_app.py", WSGI_APP)
    spans_file = tmp_path / "spans.jsonl"
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi_app:app"],
        tmp_path,
        clean_env(OTELFIN_SPANS_FILE=str(spans_file), **BATCHED),
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/ready", proc)
    pids = set()
    deadline = time.monotonic() + 20
    sent = 1
    while (len(pids) < 2 or sent < 12) and time.monotonic() < deadline:
        status, body = get(f"{base}/pay/{sent}")
        assert status == 200
        pids.add(body.split()[0])
        sent += 1
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0  # gunicorn's master exits 0 after a graceful stop
    spans = read_spans(spans_file)
    assert len(pids) == 2, "both workers served requests"
    paths = [a["value"]["stringValue"] for s in spans for a in s["attributes"]]
    assert sorted(p for p in paths if p.startswith("/pay/")) == sorted(
        f"/pay/{n}" for n in range(1, sent)
    )


def _run_loop(tmp_path: Path, **env: str) -> tuple[int, int, int]:
    _write(tmp_path, "consumer.py", LOOP)
    spans_file = tmp_path / f"spans-{time.monotonic_ns()}.jsonl"
    proc = Proc(
        [sys.executable, "consumer.py"],
        tmp_path,
        clean_env(OTELFIN_SPANS_FILE=str(spans_file), **BATCHED, **env),
    )
    deadline = time.monotonic() + 20
    while proc.stdout.count("\n") < 5:
        if time.monotonic() > deadline or proc.popen.poll() is not None:
            proc.stop()
            pytest.fail(f"consumer did not start:\n{proc.stderr[-3000:]}")
        time.sleep(0.05)
    proc.signal(signal.SIGTERM)
    code = proc.wait()
    return code, proc.stdout.count("\n"), len(read_spans(spans_file))


def test_plain_loop_killed_by_sigterm_keeps_spans(tmp_path: Path) -> None:
    """A loop with no handler still dies by SIGTERM, after its finished spans are exported."""
    code, processed, exported = _run_loop(tmp_path)
    assert code == -signal.SIGTERM
    assert processed <= exported <= processed + 1


def test_without_signal_handling_the_spans_are_lost(tmp_path: Path) -> None:
    """Control: handle_signals=False shows what the default disposition does to the queue."""
    code, processed, exported = _run_loop(tmp_path, HANDLE="0")
    assert code == -signal.SIGTERM
    assert processed >= 5 and exported == 0


def test_host_handler_is_kept_and_atexit_flushes(tmp_path: Path) -> None:
    """The application's own SIGTERM handler still decides (exit 3); spans flushed on exit."""
    code, processed, exported = _run_loop(tmp_path, HOST_HANDLER="1")
    assert code == 3
    assert processed <= exported <= processed + 1
