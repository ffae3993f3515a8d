"""Bounded shutdown and exit against broken collectors (real sockets), measured in subprocesses.

Each case runs an application in a fresh interpreter that ends 3,000 spans (several export
batches) with the default batch processor, then either calls ``shutdown(timeout_millis=1000)``
or just returns. The parent measures the shutdown call and the time from the application's
last line to the process's exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from otelfin._lifecycle import FLUSH_TIMEOUT_S
from tests._collectors import HangingCollector, Http500Collector, closed_port

_APP = """
import json, os, sys, time
import otelfin
from opentelemetry import trace

call_shutdown = sys.argv[1] == "1"
if len(sys.argv) > 2:
    otelfin.configure("payment-gateway", spans_file=sys.argv[2])
else:
    otelfin.configure("payment-gateway", traces_exporter="otlp")
tracer = trace.get_tracer("app")
for i in range(3000):
    with tracer.start_as_current_span("charge"):
        pass
time.sleep(0.3)  # the first batch is on its way
took = None
if call_shutdown:
    start = time.monotonic()
    otelfin.shutdown(timeout_millis=1000)
    took = time.monotonic() - start
print(json.dumps({"shutdown": took}), flush=True)
"""

# Slack on a shared 2-core machine (load 10 while measured): thread start-up for the call,
# interpreter teardown (0.6-2.6 s measured) for the exit.
_SLACK = 1.0
_EXIT_SLACK = 2.5


@contextmanager
def _collector(kind: str) -> Iterator[str]:
    if kind == "closed":
        yield f"http://127.0.0.1:{closed_port()}/v1/traces"
    elif kind == "hanging":
        with HangingCollector() as hanging:
            yield hanging.endpoint
    else:
        with Http500Collector() as failing:
            yield failing.endpoint


def _run(tmp_path: Path, args: list[str], endpoint: str | None) -> tuple[float | None, float]:
    """(seconds in shutdown(), seconds from the app's last line to its exit)."""
    app = tmp_path / "app.py"
    app.write_text(_APP)
    env = dict(os.environ)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    if endpoint is not None:
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
    env["OTELFIN_LOG_FILE"] = str(tmp_path / "logs.jsonl")
    with subprocess.Popen(
        [sys.executable, str(app), *args], stdout=subprocess.PIPE, env=env, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            printed = time.monotonic()
            proc.wait(timeout=60)
            exited = time.monotonic()
        finally:
            if proc.poll() is None:
                proc.kill()
    took = json.loads(line)["shutdown"]
    return took, exited - printed


@pytest.mark.parametrize("kind", ["closed", "hanging", "http500"])
def test_shutdown_honours_its_timeout_with_otlp(tmp_path: Path, kind: str) -> None:
    """shutdown(timeout_millis=1000) returns within ~1 s: closed port, hanging, 500."""
    with _collector(kind) as endpoint:
        took, exit_after = _run(tmp_path, ["1"], endpoint)
    assert took is not None and took < 1.0 + _SLACK, took
    assert exit_after < _EXIT_SLACK, exit_after


@pytest.mark.parametrize("kind", ["closed", "hanging", "http500"])
def test_exit_without_shutdown_is_bounded_with_otlp(tmp_path: Path, kind: str) -> None:
    """A process that never calls shutdown() exits within FLUSH_TIMEOUT_S (+ slack)."""
    with _collector(kind) as endpoint:
        took, exit_after = _run(tmp_path, ["0"], endpoint)
    assert took is None
    assert exit_after < FLUSH_TIMEOUT_S + _EXIT_SLACK, exit_after


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
@pytest.mark.parametrize("call_shutdown", ["1", "0"])
def test_jsonl_exporter_blocked_on_a_fifo_is_bounded(tmp_path: Path, call_shutdown: str) -> None:
    """A spans_file that blocks (a FIFO nobody reads) cannot hold shutdown or exit."""
    fifo = tmp_path / "spans.fifo"
    os.mkfifo(fifo)
    took, exit_after = _run(tmp_path, [call_shutdown, str(fifo)], None)
    if call_shutdown == "1":
        assert took is not None and took < 1.0 + _SLACK, took
    bound = 0.0 if call_shutdown == "1" else FLUSH_TIMEOUT_S
    assert exit_after < bound + _EXIT_SLACK, exit_after
