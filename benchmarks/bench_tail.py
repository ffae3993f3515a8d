"""Cost of tail sampling in the process (issue 18): CPU per request and buffer memory.

One "request" is a SERVER span with two internal spans and one CLIENT (database) span inside,
a few attributes each; 2% fail (5xx), 2% decline (402), 1% are slow (the server span ends
0.3 s after it started: timestamps, no sleep), the rest are ok. Spans go through otelfin's
real export pipeline (batch processor, scrubber, JSONL exporter to a file), metrics on. CPU is
``time.process_time()`` (every thread: the batch exporter's included) per request, flush
included. Variants, measured in the same run, rounds interleaved:

* ``100% sampling``        always_on, no keep rules: every span exported
* ``1% head``              parentbased_traceidratio 0.01, no keep rules
* ``1% head + keep rules`` the same sampler with ``keep_traces=error,declined,slow``: every
  span recorded, ~5% of traces exported whole, ~1% more by the head sampler

Memory: 10,000 undecided traces at once (their roots open, four finished spans each
waiting), measured with tracemalloc against the buffer's own estimate (which its
``keep_traces_max_bytes`` limit counts).

Prints medians with (min-max) and same-run ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

import otelfin
from otelfin import _config
from otelfin.testing import reset_tracer_provider

VARIANTS = {
    "100% sampling": ("parentbased_always_on", None),
    "1% head": ("parentbased_traceidratio", None),
    "1% head + keep rules": ("parentbased_traceidratio", "error,declined,slow"),
}


def _configure(
    sampler: str, keep: str | None, spans_file: Path, max_spans: int | None = None
) -> None:
    _config.reset()
    reset_tracer_provider()
    os.environ["OTEL_TRACES_SAMPLER"] = sampler
    os.environ["OTEL_TRACES_SAMPLER_ARG"] = "0.01"
    # A queue that never fills: at 100% the loop outruns the exporter, and spans the full
    # queue turned away would make that variant look cheaper than it is.
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = "1000000"
    otelfin.configure(
        "bench-tail",
        spans_file=str(spans_file),
        metrics_registry=CollectorRegistry(),
        stdlib_bridge=False,
        keep_traces=keep,
        keep_traces_max_spans=max_spans,
        keep_traces_max_bytes=None if max_spans is None else max_spans * 10_000,
    )


def _requests(n: int) -> None:
    tracer = trace.get_tracer("bench.tail")
    for i in range(n):
        start = time.time_ns()
        root = tracer.start_span(
            "POST /payments",
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "POST", "http.route": "/payments"},
            start_time=start,
        )
        with trace.use_span(root, end_on_exit=False):
            with tracer.start_as_current_span("risk.score", attributes={"payment.channel": "card"}):
                pass
            with (
                tracer.start_as_current_span("ledger.post"),
                tracer.start_as_current_span(
                    "INSERT ledger",
                    kind=SpanKind.CLIENT,
                    attributes={"db.system": "postgresql", "server.address": "ledger-db"},
                ),
            ):
                pass
        kind = i % 100
        if kind < 2:
            root.set_attribute("http.response.status_code", 503)
            root.set_status(StatusCode.ERROR)
        elif kind < 4:
            root.set_attribute("http.response.status_code", 402)
        else:
            root.set_attribute("http.response.status_code", 200)
        root.end(end_time=start + (300_000_000 if kind == 4 else 2_000_000))


def _cpu_per_request(n: int) -> float:
    start = time.process_time()
    _requests(n)
    _config.force_flush(30)
    return (time.process_time() - start) / n * 1e6


def _summary(values: list[float], digits: int = 1) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def _memory(traces: int) -> tuple[float, float, float]:
    """(bytes per undecided trace by tracemalloc, by the buffer's estimate, spans waiting)."""
    from otelfin import _tail

    tracer = trace.get_tracer("bench.tail.memory")
    tail = _config._state.processor.delegate  # type: ignore[union-attr]
    assert isinstance(tail, _tail.TailSamplingProcessor), tail
    tracemalloc.start()
    # The open roots are the application's (a request in flight holds its span anyway):
    # measured apart, so what remains is what the buffer holds.
    roots = [tracer.start_span("POST /payments", kind=SpanKind.SERVER) for _ in range(traces)]
    before = tracemalloc.take_snapshot()
    for root in roots:
        with trace.use_span(root, end_on_exit=False):
            for name in ("risk.score", "ledger.post", "INSERT ledger", "acquirer.authorise"):
                tracer.start_span(name, attributes={"payment.channel": "card"}).end()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    waiting_traces, waiting_spans, estimated = tail.buffered()
    assert (waiting_traces, waiting_spans) == (traces, 4 * traces), tail.buffered()
    for root in roots:
        root.end()
    return grown / traces, estimated / traces, waiting_spans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--traces", type=int, default=10_000, help="undecided traces at once")
    parser.add_argument(
        "--quick", action="store_true", help="a few short rounds: checks the script runs (CI)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests, args.traces = 2, 300, 500
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    ratios: dict[str, list[float]] = {"keep / 1% head": [], "keep / 100%": []}
    exported: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):
            this_round: dict[str, float] = {}
            for name, (sampler, keep) in VARIANTS.items():
                spans_file = Path(tmp) / f"{name.replace(' ', '_')}-{round_no}.jsonl"
                _configure(sampler, keep, spans_file)
                _requests(200)  # warm: tracers, series, the exporter's file
                _config.force_flush(30)
                this_round[name] = _cpu_per_request(args.requests)
                results[name].append(this_round[name])
                _config.reset()
                if round_no == 0:
                    lines = spans_file.read_text().splitlines() if spans_file.exists() else []
                    exported[name] = sum(line.count('"spanId"') for line in lines)
            ratios["keep / 1% head"].append(
                this_round["1% head + keep rules"] / this_round["1% head"]
            )
            ratios["keep / 100%"].append(
                this_round["1% head + keep rules"] / this_round["100% sampling"]
            )
        # Head sampling off: every trace waits for its decision.
        _configure(
            "always_off",
            VARIANTS["1% head + keep rules"][1],
            Path(tmp) / "memory.jsonl",
            max_spans=4 * args.traces,
        )
        per_trace, estimated, waiting = _memory(args.traces)
        _config.reset()
    warm = 200 + args.requests
    print(f"| {args.requests} requests x {args.rounds} rounds | CPU us/request, median (min-max)"
          f" | spans exported in round 1 (of {warm * 4}) |")  # fmt: skip
    print("|---|---|---|")
    for name in VARIANTS:
        print(f"| {name} | {_summary(results[name])} | {exported.get(name, 0)} |")
    for name, values in ratios.items():
        print(f"| ratio {name} (same round) | {_summary(values, 2)} | |")
    print()
    print(f"| {args.traces} undecided traces (4 finished spans each) | bytes |")
    print("|---|---|")
    print(f"| measured (tracemalloc) per trace, its open root excluded | {per_trace:,.0f} |")
    print(f"| measured per waiting span | {per_trace / 4:,.0f} |")
    print(f"| for {args.traces:,} traces (MB) | {per_trace * args.traces / 1e6:,.1f} |")
    print(f"| the buffer's estimate per trace | {estimated:,.0f} |")
    print(f"| spans waiting | {waiting:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
