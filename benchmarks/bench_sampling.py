"""Cost of an unsampled request when RED metrics count it (issue: metrics under a sampler).

One "request" is a SERVER span with one CLIENT span inside, under a sampler that drops it
(ALWAYS_OFF), with otelfin configured. Measured in one run, medians of rounds:

* ``plain SDK``          OpenTelemetry alone, the spans are non-recording
* ``otelfin, counted``   ``metrics_count_unsampled=True`` (default): RECORD_ONLY + metrics
* ``otelfin, not counted`` ``metrics_count_unsampled=False``: the cheap path, not counted
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

import otelfin
from otelfin import _config
from otelfin.testing import reset_tracer_provider


def _request_loop(n: int) -> float:
    tracer = trace.get_tracer("bench.server")
    start = time.perf_counter()
    for _ in range(n):
        with (
            tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER),
            tracer.start_as_current_span(
                "SELECT", kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}
            ),
        ):
            pass
    return (time.perf_counter() - start) / n * 1e6


def _measure(mode: str, rounds: int, n: int) -> float:
    _config.reset()
    reset_tracer_provider()
    if mode == "plain":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

        trace.set_tracer_provider(TracerProvider(sampler=ALWAYS_OFF))
    else:
        otelfin.configure(
            "bench",
            traces_exporter="none",
            metrics_registry=CollectorRegistry(),
            metrics_count_unsampled=(mode == "counted"),
            stdlib_bridge=False,
        )
    samples = [_request_loop(n) for _ in range(rounds)]
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument(
        "--quick", action="store_true", help="a few short rounds: checks the script runs (CI)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 3, 500
    os.environ["OTEL_TRACES_SAMPLER"] = "always_off"
    results = {m: _measure(m, args.rounds, args.requests) for m in ("plain", "not", "counted")}
    _config.reset()
    print("| unsampled request (SERVER + CLIENT span) | us/request | vs plain SDK |")
    print("|---|---|---|")
    for mode, label in (
        ("plain", "plain SDK"),
        ("not", "otelfin, not counted"),
        ("counted", "otelfin, counted (default)"),
    ):
        print(f"| {label} | {results[mode]:.2f} | {results[mode] / results['plain']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
