"""What OTLP export of logs and metrics costs, against what the service pays without it.

* logs: ``otelfin.get_logger().info(...)`` with ``OTEL_LOGS_EXPORTER=otlp`` against the same
  call writing JSON lines only, interleaved rounds in one run. The exporter is a stand-in that
  accepts each batch (no network), so the figure is otelfin's own work on the request path
  (building the record, queueing it) plus the batching thread's share of the GIL.
* metrics: one OTLP push of a registry (building the OTLP data from it, not sending) against
  one Prometheus scrape of the same registry (``generate_latest``): the push replaces, per
  interval, what a scrape does.

Prints medians with min-max and the ratios. Run: python benchmarks/bench_otlp.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest

import otelfin
from otelfin import _config, _otlp


class _Accepting:
    """A log exporter that takes every batch and counts it (no network)."""

    def __init__(self) -> None:
        self.records = 0

    def export(self, batch: Sequence[Any]) -> Any:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        self.records += len(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def _info_call(log: Any, fields: dict[str, str]) -> Callable[[], object]:
    return lambda: log.info("payment_authorised", **fields)


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} (min {min(values):.2f}, max {max(values):.2f})"


def _log_cost(rounds: int, calls: int) -> None:
    sink = open(os.devnull, "wb")  # noqa: SIM115 - lives for the run
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    fields = {"amount": "99.99", "currency": "EUR", "merchant_id": "m-123", "order_id": "o-4567"}
    exporter = _Accepting()
    _otlp.log_exporter = lambda: exporter  # type: ignore[assignment]
    samples: dict[str, list[float]] = {"JSON lines only": [], "JSON lines + OTLP": []}
    tracer = provider.get_tracer("bench")
    with tracer.start_as_current_span("request"):
        for _ in range(rounds):
            for name in samples:
                os.environ["OTEL_LOGS_EXPORTER"] = "otlp" if "OTLP" in name else "none"
                otelfin.configure("payment-gateway", log_stream=sink, stdlib_bridge=False)
                call = _info_call(otelfin.get_logger(), fields)
                samples[name].append(per_call_us(call, calls))
                _config.shutdown()
    os.environ.pop("OTEL_LOGS_EXPORTER", None)
    sink.close()
    print(f"log call, us/call, {rounds} rounds x {calls} calls:")
    for name, values in samples.items():
        print(f"  {name:<18} {_summary(values)}")
    ratio = statistics.median(samples["JSON lines + OTLP"]) / statistics.median(
        samples["JSON lines only"]
    )
    print(f"  ratio with OTLP / without: {ratio:.2f}; records exported: {exporter.records}")


def _metrics_cost(rounds: int, series: int) -> None:
    from opentelemetry.sdk.resources import Resource

    from otelfin.metrics import red_metrics
    from otelfin.metrics._otlp import metrics_data

    registry = CollectorRegistry()
    red = red_metrics(registry=registry, labels=("channel",))
    for i in range(series):
        red.duration.labels("svc", f"op-{i % 25}", "ok", f"ch-{i // 25}").observe(0.01 * (i % 30))
    resource = Resource.create({"service.name": "bench"})
    scrape: list[float] = []
    push: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        generate_latest(registry)
        scrape.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        metrics_data(registry, resource, time.time_ns())
        push.append((time.perf_counter() - start) * 1e3)
    print(f"registry with {series} histogram series, ms per collection, {rounds} rounds:")
    print(f"  Prometheus scrape       {_summary(scrape)}")
    print(f"  OTLP push (build data)  {_summary(push)}")
    print(f"  ratio push / scrape: {statistics.median(push) / statistics.median(scrape):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--quick", action="store_true", help="a few short rounds (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 3, 2000
    _log_cost(args.rounds, args.calls)
    _metrics_cost(args.rounds, 100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
