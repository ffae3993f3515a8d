"""gunicorn -w 2: one clear warning without PROMETHEUS_MULTIPROC_DIR; the recipe counts all."""

from __future__ import annotations

import re
import signal
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.integration._procs import Proc, clean_env, free_port, get, json_lines, wait_http

APP = """
import os
import time
import otelfin

otelfin.configure("multi-worker", metrics_port=int(os.environ["METRICS_PORT"]),
                  metrics_addr="127.0.0.1")

@otelfin.traced(name="authorise")
def authorise():
    time.sleep(0.05)  # a busy worker makes the other one accept the next connection
    return str(os.getpid()).encode()

def app(environ, start_response):
    body = authorise() if environ["PATH_INFO"] == "/pay" else b"ready"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""

# The docs' recipe (guides/operations.md): the directory comes from the environment, is
# emptied when the master starts, and a dead worker's live files are released.
CONF = """
import os

def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        os.remove(os.path.join(directory, name))

def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
"""


def _serve(tmp_path: Path, **env: str) -> tuple[Proc, str, str]:
    (tmp_path / "wsgi_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "gunicorn.conf.py").write_text(textwrap.dedent(CONF) if env else "")
    port, metrics_port = free_port(), free_port()
    proc = Proc(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "-c",
            "gunicorn.conf.py",
            "wsgi_app:app",
        ],
        tmp_path,
        clean_env(METRICS_PORT=str(metrics_port), **env),
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/", proc)
    return proc, base, f"http://127.0.0.1:{metrics_port}/metrics"


def _drive(base: str, count: int) -> set[str]:
    """``count`` requests, four at a time (so both sync workers take some)."""
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: get(f"{base}/pay"), range(count)))
    assert all(status == 200 for status, _ in results)
    return {body for _, body in results}


def _wait_both_workers(proc: Proc, marker: str) -> None:
    deadline = time.monotonic() + 20
    while proc.stderr.count(marker) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)


def test_without_multiproc_dir_one_clear_warning(tmp_path: Path) -> None:
    """The second worker says what to do (PROMETHEUS_MULTIPROC_DIR) instead of a bind error."""
    proc, base, _ = _serve(tmp_path)
    _wait_both_workers(proc, "Booting worker")
    _drive(base, 4)
    time.sleep(1.0)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    records = json_lines(proc.stdout)
    warnings = [r for r in records if "PROMETHEUS_MULTIPROC_DIR" in r["event"]]
    assert len(warnings) == 1, proc.stdout[-3000:]
    assert warnings[0]["level"] == "warning" and "gunicorn -w N" in warnings[0]["event"]
    assert "Address already in use" not in proc.stdout + proc.stderr


def test_multiprocess_recipe_counts_every_request(tmp_path: Path) -> None:
    """PROMETHEUS_MULTIPROC_DIR + the child_exit hook: /metrics holds both workers' requests."""
    directory = tmp_path / "prom"
    directory.mkdir()
    proc, base, metrics_url = _serve(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(directory))
    _wait_both_workers(proc, "Booting worker")
    pids: set[str] = set()
    sent = 0
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:
        pids |= _drive(base, 20)
        sent += 20
    status, exposition = get(metrics_url)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert status == 200 and len(pids) == 2
    match = re.search(
        r'^otelfin_request_duration_seconds_count\{[^}]*operation="authorise"[^}]*\} (\S+)$',
        exposition,
        re.M,
    )
    assert match, exposition[-2000:]
    assert float(match.group(1)) == sent
    assert "PROMETHEUS_MULTIPROC_DIR" not in proc.stdout  # no warning: the recipe is working
