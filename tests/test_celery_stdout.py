"""otelfin's stdout sink under Celery's stdout redirection (worker_redirect_stdouts)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("celery")

_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import otelfin
    from celery.utils.log import LoggingProxy

    otelfin.configure("worker-svc", traces_exporter="none")
    # What a Celery worker does at start with worker_redirect_stdouts (the default).
    sys.stdout = LoggingProxy(logging.getLogger("celery.redirected"), logging.WARNING)
    otelfin.get_logger().info("task_started", task="settle")
    logging.getLogger("app").warning("plain stdlib line")
    print("a print from the task")
    otelfin.shutdown()
    sys.__stdout__.write("done\\n")
    """
)


def test_log_lines_under_celery_stdout_proxy_do_not_hang() -> None:
    """With sys.stdout swapped for Celery's LoggingProxy, otelfin's lines go to the real
    stdout once each instead of looping back through the proxy (the worker hung before)."""
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events.count("task_started") == 1, result.stdout
    assert "plain stdlib line" in events, result.stdout
    assert result.stdout.rstrip().endswith("done")
