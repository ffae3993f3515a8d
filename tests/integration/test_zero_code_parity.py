"""Zero-code is configure(): one FastAPI app, run both ways under real uvicorn, compared.

The same application module runs twice on 127.0.0.1: once as ``uvicorn app:app`` with one
``otelfin.configure()`` line in it, once as ``opentelemetry-instrument uvicorn app:app`` with no
otelfin line at all. The same requests are sent to each (every request under its own trace id),
then the two runs are compared signal by signal:

* spans: the names of the spans of each request's trace (ASGI's ``http send``/``http receive``
  internal spans would show up here);
* metrics: every series of ``/metrics`` by name and label set (bucket bounds included, values not);
* logs: every stdout line by logger, level, event (digits blanked: ports, pids) and field names.

A failure prints the difference, side by side, for the signal that differs.
"""

from __future__ import annotations

import re
import signal
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration._procs import (
    BIN,
    Proc,
    clean_env,
    free_port,
    get,
    json_lines,
    read_spans,
    wait_http,
)
from tests.integration._settle import settled_metrics

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

APP = """
import logging
import os

from fastapi import FastAPI, HTTPException

if os.environ.get("PARITY_MODE") == "code":
    import otelfin

    otelfin.configure("payments-api")

app = FastAPI()
log = logging.getLogger("payments")


@app.get("/payments/{pid}")
async def payment(pid: str, card: str = ""):
    log.info("looked up %s for card %s", pid, card)
    return {"pid": pid}


@app.get("/declines/{pid}")
def decline(pid: str):
    log.warning("declined %s", pid)
    raise HTTPException(status_code=402, detail="insufficient balance")


@app.get("/crash/{pid}")
def crash(pid: str):
    raise RuntimeError("ledger down for card 4111111111111111")
"""

CARD = "4111111111111111"
# Each request under a trace id of its own, so its spans can be told apart in either run.
REQUESTS = (
    ("/payments/7?card=" + CARD, 200),
    ("/payments/8", 200),
    ("/declines/9", 402),
    ("/crash/3", 500),
    ("/nowhere", 404),
)


def _trace_id(i: int) -> str:
    return f"{i + 1:032x}"


def _run(tmp_path: Path, mode: str) -> dict[str, Any]:
    """Serve the app one way, send :data:`REQUESTS`, stop it; what each signal showed."""
    work = tmp_path / mode
    work.mkdir()
    (work / "api.py").write_text(textwrap.dedent(APP))
    port, metrics_port = free_port(), free_port()
    spans_file = work / "spans.jsonl"
    env = clean_env(
        PARITY_MODE=mode,
        OTELFIN_SPANS_FILE=str(spans_file),
        OTELFIN_METRICS_PORT=str(metrics_port),
        OTELFIN_METRICS_ADDR="127.0.0.1",
        PYTHONPATH=str(work),
    )
    argv = [str(BIN / "uvicorn"), "api:app", "--port", str(port), "--lifespan", "off"]
    if mode == "zero-code":
        env.update(
            OTEL_PYTHON_DISTRO="otelfin",
            OTEL_PYTHON_CONFIGURATOR="otelfin",
            OTEL_SERVICE_NAME="payments-api",
        )
        argv = [str(BIN / "opentelemetry-instrument"), *argv]
    proc = Proc(argv, work, env)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"http://127.0.0.1:{metrics_port}/metrics", proc)
    wait_http(f"{base}/payments/0", proc)  # untraced warm-up is excluded below by trace id
    for i, (path, status) in enumerate(REQUESTS):
        parent = f"00-{_trace_id(i)}-{i + 1:016x}-01"
        assert get(base + path, {"traceparent": parent})[0] == status, (mode, path)
    exposition = settled_metrics(f"http://127.0.0.1:{metrics_port}/metrics", len(REQUESTS) + 1)
    proc.signal(signal.SIGTERM)
    proc.wait()
    out = proc.stdout
    assert CARD not in out + proc.stderr + spans_file.read_text(), f"{mode}: an unmasked card"
    return {
        "spans": _span_names(read_spans(spans_file)),
        "metrics": _series(exposition),
        "logs": _log_shapes(out),
        "raw_logs": out,
    }


def _span_names(spans: list[dict[str, Any]]) -> dict[str, list[str]]:
    by_trace: dict[str, list[str]] = {}
    for span in spans:
        by_trace.setdefault(span["traceId"], []).append(span["name"])
    return {path: sorted(by_trace.get(_trace_id(i), [])) for i, (path, _) in enumerate(REQUESTS)}


def _series(exposition: str) -> set[str]:
    found = set()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found.add(f"{sample.name}{{{labels}}}")
    return found


_DIGITS = re.compile(r"\d+")


def _log_shapes(out: str) -> Counter[str]:
    shapes: Counter[str] = Counter()
    for record in json_lines(out):
        event = _DIGITS.sub("#", str(record.get("event", "")))
        fields = ",".join(sorted(record))
        shapes[f"{record.get('logger', '-')} {record.get('level')} {event!r} [{fields}]"] += 1
    return shapes


def _diff(name: str, code: Any, zero: Any) -> str:
    if isinstance(code, dict):
        rows = [
            f"  {key}:\n    configure(): {code.get(key)}\n    zero-code:   {zero.get(key)}"
            for key in sorted(set(code) | set(zero))
            if code.get(key) != zero.get(key)
        ]
        return f"{name} differ per request:\n" + "\n".join(rows)
    if isinstance(code, Counter):
        only_code, only_zero = code - zero, zero - code
    else:
        only_code, only_zero = set(code) - set(zero), set(zero) - set(code)
    return (
        f"{name} differ:\n  only with configure():\n"
        + "".join(f"    {item}\n" for item in sorted(only_code))
        + "  only under zero-code:\n"
        + "".join(f"    {item}\n" for item in sorted(only_zero))
    )


def test_zero_code_gives_what_configure_gives(tmp_path: Path) -> None:
    """Same app, `uvicorn` + configure() vs `opentelemetry-instrument uvicorn`: same signals."""
    code = _run(tmp_path, "code")
    zero = _run(tmp_path, "zero-code")
    # The runs did something worth comparing: a server span per request, RED series, JSON logs.
    assert all(code["spans"].values()), code["spans"]
    assert any(s.startswith("otelfin_request_duration_seconds_bucket") for s in code["metrics"])
    assert any("payments" in shape for shape in code["logs"]), code["raw_logs"][-2000:]
    assert any("SYS-001" in line for line in code["raw_logs"].splitlines()), "no crash line"
    problems = [
        _diff(name, code[name], zero[name])
        for name in ("spans", "metrics", "logs")
        if code[name] != zero[name]
    ]
    assert not problems, "\n".join(problems)
