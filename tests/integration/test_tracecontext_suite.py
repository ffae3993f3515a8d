"""The W3C Trace Context test suite against examples/tracecontext_service.py: 41/41.

The suite is not vendored (it is W3C's code, and CI has no internet to fetch it). To run it:

    git clone https://github.com/w3c/trace-context /tmp/trace-context
    python -m venv /tmp/tc-venv && /tmp/tc-venv/bin/pip install aiohttp
    TRACECONTEXT_SUITE_DIR=/tmp/trace-context/test TRACECONTEXT_PYTHON=/tmp/tc-venv/bin/python \\
        .venv/bin/python -m pytest tests/integration/test_tracecontext_suite.py

``TRACECONTEXT_PYTHON`` is the interpreter that runs the harness (it needs aiohttp); it defaults
to the one running pytest. Without ``TRACECONTEXT_SUITE_DIR`` the test is skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration._procs import free_port

ROOT = Path(__file__).resolve().parents[2]
HOW = (
    "set TRACECONTEXT_SUITE_DIR to the test/ directory of a w3c/trace-context checkout "
    "(and TRACECONTEXT_PYTHON to a Python with aiohttp); see this file's docstring"
)


def _wait_for(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"tracecontext service did not listen on {port}")


def test_w3c_trace_context_suite_passes_all_41() -> None:
    """All 41 tests of the W3C harness pass with STRICT_LEVEL=2 SPEC_LEVEL=2."""
    suite = os.environ.get("TRACECONTEXT_SUITE_DIR")
    if not suite:
        pytest.skip(f"W3C Trace Context suite not available: {HOW}")
    harness = Path(suite) / "test.py"
    if not harness.is_file():
        pytest.skip(f"{harness} does not exist: {HOW}")
    python = os.environ.get("TRACECONTEXT_PYTHON", sys.executable)
    if subprocess.run([python, "-c", "import aiohttp"], capture_output=True).returncode:
        pytest.skip(f"{python} cannot import aiohttp, which the harness needs: {HOW}")

    port = free_port()
    service = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "tracecontext_service.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
    )
    try:
        _wait_for(port)
        env = {
            **os.environ,
            "STRICT_LEVEL": "2",
            "SPEC_LEVEL": "2",
            "HARNESS_PORT": str(free_port()),
        }
        result = subprocess.run(
            [python, "test.py", f"http://127.0.0.1:{port}/test"],
            cwd=suite,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        service.terminate()
        service.wait(timeout=10)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Ran 41 tests" in output, output[-4000:]
    assert "\nOK" in output, output[-4000:]
