"""Tail sampling with real uvicorn services at 1% head sampling (issue 18).

gateway (uvicorn, FastAPI) --httpx--> acquirer (uvicorn, FastAPI), both configured by the
environment alone: ``OTEL_TRACES_SAMPLER=parentbased_traceidratio``, ``..._ARG=0.01``,
``OTELFIN_KEEP_TRACES=error,declined,slow``.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.integration._procs import (
    free_port,
    read_spans,
    span_attributes,
    start_server,
    stop_server,
    wait_listening,
)

REQUESTS = 1000
KEEP_ENV = {
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.01",
    "OTELFIN_KEEP_TRACES": "error,declined,slow",
    # 1 s, not the default 0.25 s: on a loaded test machine an ok request can take 0.3 s.
    "OTELFIN_METRICS_SLO": "1.0",
    "OTELFIN_SPAN_PROCESSOR": "batch",
}


def _uvicorn(app: str, port: int) -> list[str]:
    # Keep-alive well past the run: with uvicorn's 5 s default, a loaded machine lets a pooled
    # connection idle out just as a client reuses it (httpx.ReadError, seen in a full run).
    return [sys.executable, "-m", "uvicorn", f"tests.integration.webapps.{app}:app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--timeout-keep-alive", "300"]  # fmt: skip


async def _drive(base: str, path: str, pids: range, concurrency: int) -> dict[int, int]:
    limit = asyncio.Semaphore(concurrency)
    # No keep-alive: a request that fails with an unhandled exception (pid % 20 == 2) ends in
    # uvicorn closing its connection after the 500 is sent, and a pooled connection reused in
    # that instant fails with httpx.ReadError (1 run in 3, even on a quiet machine).
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=no_reuse) as client:

        async def one(pid: int) -> tuple[int, int]:
            async with limit:
                return pid, (await client.post(f"{path}/{pid}")).status_code

        return dict(await asyncio.gather(*(one(pid) for pid in pids)))


def _scrape(port: int) -> list[Any]:
    text = httpx.get(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=10,
    ).text
    return list(text_string_to_metric_families(text))


def _by_trace(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        out[str(span["traceId"])].append(span)
    return out


def _server(trace: list[dict[str, Any]]) -> dict[str, Any]:
    (server,) = [s for s in trace if s["kind"] == 2]
    return server


def _seconds(span: dict[str, Any]) -> float:
    return (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e9


def _pid(trace: list[dict[str, Any]]) -> int | None:
    for span in trace:
        if span["kind"] == 2 and str(span["name"]).startswith("POST /pay"):
            attributes = span_attributes(span)
            target = attributes.get("url.path") or attributes.get("http.target")
            if isinstance(target, str):
                return int(target.rsplit("/", 1)[1])
    return None


def test_keep_rules_export_every_decline_error_and_slow_request_whole(tmp_path: Path) -> None:
    """1,000 requests at 1% head sampling: each decline, 5xx and slow trace whole, ok ones
    near 1%, every request counted, exemplars naming exported traces; the acquirer keeps only
    what it saw itself (its own declines) plus the head-sampled share."""
    acq_port, gw_port, metrics_port = free_port(), free_port(), free_port()
    gw_file, acq_file = tmp_path / "gateway.jsonl", tmp_path / "acquirer.jsonl"
    acquirer = start_server(_uvicorn("tail_acquirer_app", acq_port), acq_file, **KEEP_ENV)
    gateway = start_server(
        _uvicorn("tail_app", gw_port),
        gw_file,
        ACQUIRER_URL=f"http://127.0.0.1:{acq_port}",
        OTELFIN_METRICS_PORT=str(metrics_port),
        **KEEP_ENV,
    )
    try:
        wait_listening(acq_port, acquirer, "acquirer")
        wait_listening(gw_port, gateway, "gateway")
        statuses = asyncio.run(
            _drive(f"http://127.0.0.1:{gw_port}", "/pay", range(REQUESTS), concurrency=25)
        )
        families = _scrape(metrics_port)
    finally:
        stop_server(gateway)
        stop_server(acquirer)

    expected_status = {1: 402, 2: 500}
    for pid, status in statuses.items():
        assert status == expected_status.get(pid % 20, 200), (pid, status)

    gateway_traces = _by_trace(read_spans(gw_file))
    by_pid = {_pid(t): (tid, t) for tid, t in gateway_traces.items()}
    assert None not in by_pid, "every exported gateway trace has its server span"
    whole = {"POST /pay/{pid}", "risk.score", "POST", "ledger.post", "SELECT"}
    declined_names = {"POST /pay/{pid}", "risk.score", "POST"}
    reasons = {1: "declined", 2: "error", 3: "slow"}
    for pid in range(REQUESTS):
        reason = reasons.get(pid % 20)
        if reason is None:
            continue
        assert pid in by_pid, f"{reason} payment {pid} was not exported"
        _, spans = by_pid[pid]
        names = {str(s["name"]).split(" ")[0] if s["kind"] == 3 else s["name"] for s in spans}
        assert {n for n in names if not str(n).startswith("http ")} == (
            declined_names if reason == "declined" else whole
        ), (pid, names)
        kept_by = {span_attributes(s).get("otelfin.kept_by") for s in spans}
        assert kept_by in ({reason}, {"sampled"}), (pid, kept_by)
    sampled_ok = 0
    for pid, (_, spans) in by_pid.items():
        if pid is None or pid % 20 in reasons:
            continue
        (kept_by,) = {span_attributes(s).get("otelfin.kept_by") for s in spans}
        if kept_by == "sampled":
            sampled_ok += 1
        else:  # an ok payment the loaded machine made slower than the SLO: kept for that
            assert kept_by == "slow" and _seconds(_server(spans)) > 1.0, (pid, kept_by)
    assert sampled_ok <= 30, sampled_ok  # binomial(850, 0.01): mean 8.5, sd 2.9

    # Metrics count every request, exported or not.
    counts: dict[str, float] = defaultdict(float)
    exemplar_ids: list[tuple[float, str]] = []
    for family in families:
        if family.name != "otelfin_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels["operation"] == "POST /pay/{pid}":
                counts[sample.labels["outcome"]] += sample.value
            if sample.exemplar is not None:
                exemplar_ids.append((sample.exemplar.value, sample.exemplar.labels["trace_id"]))
    assert sum(counts.values()) == REQUESTS, counts
    # Exemplars resolve: each names a trace the gateway exported; slow ones name slow traces.
    assert exemplar_ids, "no exemplars on the request histogram"
    for observed, trace_id in exemplar_ids:
        assert trace_id in gateway_traces, (observed, trace_id)
    slow_exemplars = {
        (span_attributes(s).get("otelfin.kept_by"), span_attributes(s).get("otelfin.outcome"))
        for observed, trace_id in exemplar_ids
        if observed > 1.0
        for s in gateway_traces[trace_id]
        if s["kind"] == 2
    }
    assert slow_exemplars, "the slow buckets have exemplars"
    assert {kept for kept, _ in slow_exemplars} <= {"slow", "error", "declined", "sampled"}
    # Not only the 1% head-sampled traces: exemplars name the traces kept late.
    kept_late = {
        span_attributes(s).get("otelfin.kept_by")
        for _, trace_id in exemplar_ids
        for s in gateway_traces[trace_id]
    } - {"sampled"}
    assert kept_late, "no exemplar names a trace kept by the keep rules"

    # Downstream: the acquirer cannot know that the gateway keeps a trace late. It exports its
    # part of the traces it declined itself and of the head-sampled ones (and of any it found
    # slow itself); never its part of a trace the gateway kept for the gateway's own error or
    # slowness.
    acquirer_traces = _by_trace(read_spans(acq_file))
    sampled = {
        tid
        for tid, spans in gateway_traces.items()
        if {span_attributes(s).get("otelfin.kept_by") for s in spans} == {"sampled"}
    }
    declined = {by_pid[pid][0] for pid in range(REQUESTS) if pid % 20 == 1}
    assert declined <= set(acquirer_traces)
    for tid, spans in acquirer_traces.items():
        (kept_by,) = {span_attributes(s).get("otelfin.kept_by") for s in spans}
        expected = "sampled" if tid in sampled else "declined" if tid in declined else "slow"
        assert kept_by == expected, (tid, kept_by)
        if kept_by == "slow":
            assert _seconds(_server(spans)) > 1.0
    late = {by_pid[pid][0] for pid in range(REQUESTS) if pid % 20 in (2, 3)} - sampled
    assert late and not late & {
        tid for tid, spans in acquirer_traces.items() if _seconds(_server(spans)) <= 1.0
    }


def test_a_flood_of_slow_requests_stays_within_the_buffer(tmp_path: Path) -> None:
    """200 slow requests at once against a 60-span buffer: every request answered, the buffer
    bounded, every internal span either exported or counted as dropped (none lost silently)."""
    gw_port, metrics_port = free_port(), free_port()
    gw_file = tmp_path / "gateway.jsonl"
    gateway = start_server(
        _uvicorn("tail_app", gw_port),
        gw_file,
        OTELFIN_METRICS_PORT=str(metrics_port),
        OTELFIN_KEEP_TRACES_MAX_SPANS="60",
        **{**KEEP_ENV, "OTEL_TRACES_SAMPLER": "always_off"},
    )
    try:
        wait_listening(gw_port, gateway, "gateway")
        statuses = asyncio.run(
            _drive(f"http://127.0.0.1:{gw_port}", "/flood", range(200), concurrency=200)
        )
        families = _scrape(metrics_port)
    finally:
        stop_server(gateway)
    assert set(statuses.values()) == {200}
    dropped = {
        s.labels["reason"]: s.value
        for f in families
        if f.name == "otelfin_spans_dropped"
        for s in f.samples
        if s.name == "otelfin_spans_dropped_total"
    }
    spans = read_spans(gw_file)
    steps = [s for s in spans if s["name"] == "flood.step"]
    roots = [s for s in spans if s["kind"] == 2]
    assert len(roots) == 200  # every request was slow: every root kept
    assert {span_attributes(s).get("otelfin.kept_by") for s in roots} == {"slow"}
    assert dropped.get("tail_buffer_full", 0) > 0, dropped
    assert len(steps) + dropped["tail_buffer_full"] == 200 * 5, (len(steps), dropped)
    incomplete = [s for s in roots if span_attributes(s).get("otelfin.tail.dropped_spans")]
    assert incomplete, "kept traces that lost spans say so"
