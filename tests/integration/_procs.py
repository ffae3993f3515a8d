"""Real server processes for tests: start on a free 127.0.0.1 port, drive, stop by signal."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without OTEL_*/OTELFIN_* settings, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTELFIN_", "PROMETHEUS"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """A child process whose output goes to files (no pipe to fill up and block it)."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: dict[str, str]) -> None:
        self.out_path = cwd / f"proc-{time.monotonic_ns()}.out"
        self.err_path = cwd / f"proc-{time.monotonic_ns()}.err"
        self._out = open(self.out_path, "wb")  # noqa: SIM115 - closed in wait()
        self._err = open(self.err_path, "wb")  # noqa: SIM115 - closed in wait()
        self.popen = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=self._out, stderr=self._err
        )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        """The exit status (negative: killed by that signal); kills it after ``timeout``."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"process did not end within {timeout}s\n{self.stderr[-3000:]}")
        finally:
            self._out.close()
            self._err.close()
        return code

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.wait()


def zero_code(argv: Sequence[str], cwd: Path, service: str, **env: str) -> Proc:
    """``opentelemetry-instrument python ARGV`` with otelfin as distro and configurator, in a
    clean environment (:func:`clean_env`) plus ``env``."""
    return Proc(
        [str(BIN / "opentelemetry-instrument"), sys.executable, *argv],
        cwd,
        clean_env(
            OTEL_PYTHON_DISTRO="otelfin",
            OTEL_PYTHON_CONFIGURATOR="otelfin",
            OTEL_SERVICE_NAME=service,
            **env,
        ),
    )


def wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    """Until 127.0.0.1:port accepts connections (no request is made: it would be counted), or
    fail with ``what``'s stderr when it exits or does not listen within 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"{what} exited {process.returncode}: {err.decode()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail(f"{what} did not listen on 127.0.0.1:{port}")


def wait_http(url: str, proc: Proc, timeout: float = 30) -> None:
    """Poll ``url`` until it answers (any status) or fail with the process's stderr."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            pytest.fail(f"server exited with {proc.popen.returncode}:\n{proc.stderr[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    proc.stop()
    pytest.fail(f"{url} did not answer within {timeout}s:\n{proc.stderr[-3000:]}")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET ``url``; (status, body) also for 4xx/5xx."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def read_spans(path: Path) -> list[dict[str, Any]]:
    """Every span in an otelfin OTLP/JSON lines file (missing file: none)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                out.extend(ss["spans"])
    return out


def span_attributes(span: dict[str, Any]) -> dict[str, Any]:
    """An OTLP/JSON span's attributes as a plain dict (each value unwrapped)."""
    out: dict[str, Any] = {}
    for item in span.get("attributes", []):
        (value,) = item["value"].values()
        out[item["key"]] = value
    return out


def start_server(argv: list[str], spans_file: Path, **env: str) -> subprocess.Popen[bytes]:
    """A server process run from the repository root, its spans written to ``spans_file`` as
    they end (no other span exporter), stderr kept for :func:`stop_server`."""
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


def stop_server(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """SIGTERM, then (after 20 s) SIGKILL; the process's (stdout, stderr)."""
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return out or b"", err or b""


def json_lines(text: str) -> list[dict[str, Any]]:
    """The lines of ``text`` that are JSON objects, parsed."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out
