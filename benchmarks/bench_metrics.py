"""Per-call cost of otelfin's @traced metrics and memory under a label flood.

Cost: the call observer otelfin installs on @traced (histogram observation with a cached
child, exemplar check, label extraction) against prometheus_client's own
``histogram.labels(...).observe()``, measured in the same run. Target (issue 4): <= 1.0x.
Equal work: both sides observe into a histogram with the same bounds (the default layout,
~70) and the same four label names; otelfin's path does more (it reads the channel from the
span attributes and checks whether an exemplar is due), and a line with exemplars off shows
the strictly equal case.

Layout: ``observe()`` with the default layout (~70 bounds) against the old 10-bound layout at
5 ms, 250 ms and 2 s: prometheus_client finds the bucket by a linear scan, so a slower
observation costs more with more bounds.

Memory: 1,000,000 distinct label values through the observer with the default series cap,
against prometheus_client with no cap (100,000 values, so the run stays short).

Run: ``python benchmarks/bench_metrics.py [--quick]``.
"""

from __future__ import annotations

import gc
import statistics
import sys
import timeit
import tracemalloc

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Histogram

import otelfin
from otelfin.instrument._traced import spec_of
from otelfin.metrics import CallRecorder, latency_buckets, red_metrics


def per_call_ns(stmt: object, number: int, repeat: int) -> float:
    times = timeit.repeat(stmt, number=number, repeat=repeat)  # type: ignore[arg-type]
    return statistics.median(times) / number * 1e9


def interleaved_ns(
    cases: dict[str, object], number: int, repeat: int
) -> dict[str, tuple[float, float, float]]:
    """Median, min and max ns per call of each case, the cases taking turns in every round
    (so a burst of load on the machine hits all of them alike)."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, stmt in cases.items():
            elapsed = timeit.timeit(stmt, number=number)  # type: ignore[arg-type]
            times[name].append(elapsed / number * 1e9)
    return {n: (statistics.median(t), min(t), max(t)) for n, t in times.items()}


def main() -> int:
    quick = "--quick" in sys.argv
    number, repeat = (20_000, 5) if quick else (100_000, 9)
    flood_n = 20_000 if quick else 1_000_000

    metrics = red_metrics(registry=CollectorRegistry())
    # Equal work: prometheus_client gets the very bounds otelfin's histograms use (the
    # observation scans them), not a shorter list.
    buckets = tuple(metrics.buckets)
    raw_registry = CollectorRegistry()
    raw = Histogram(
        "raw_seconds",
        "raw",
        ["service", "operation", "outcome", "channel"],
        buckets=buckets,
        registry=raw_registry,
    )

    def raw_observe() -> None:
        raw.labels("payment-gateway", "authorise", "ok", "web").observe(0.012)

    recorder = CallRecorder(metrics, "payment-gateway")

    @otelfin.traced(name="authorise", attributes={"payment.channel": "channel"})
    def authorise(channel: str) -> None:
        return None

    @otelfin.traced(name="capture")
    def capture() -> None:
        return None

    spec = spec_of(authorise)
    plain_spec = spec_of(capture)
    assert spec is not None and plain_spec is not None
    tracer = TracerProvider().get_tracer("bench")
    span = tracer.start_span("authorise")  # sampled: exemplar path is live
    attrs = {"payment.channel": "web"}

    hook = recorder.bind(spec)
    plain_hook = recorder.bind(plain_spec)

    def otelfin_observe() -> None:
        hook(0.012, attrs, None, None, span, "ok", True)

    def otelfin_observe_plain() -> None:
        plain_hook(0.012, None, None, None, span, "ok", True)

    bare_hook = CallRecorder(metrics, "payment-gateway", exemplars=False).bind(spec)

    def otelfin_observe_bare() -> None:
        bare_hook(0.012, attrs, None, None, span, "ok", True)

    raw_name = "prometheus_client labels(...).observe()"
    results = interleaved_ns(
        {
            raw_name: raw_observe,
            "otelfin observer (channel label, sampled span)": otelfin_observe,
            "otelfin observer (no extra label)": otelfin_observe_plain,
            "otelfin observer (channel label, exemplars off)": otelfin_observe_bare,
        },
        number,
        repeat,
    )
    base = results[raw_name][0]
    print(
        f"equal work: both observe 0.012 s into a histogram with {len(buckets)} bounds and "
        "labels (service, operation, outcome, channel);"
    )
    print("otelfin also reads the channel from the span attributes and checks for an exemplar")
    print(f"per-call cost, {repeat} interleaved rounds x {number} calls: median (min-max)")
    print(f"{'case':<50} {'ns/call':>9} {'min-max':>13} {'ratio':>7}")
    for name, (value, low, high) in results.items():
        spread = f"{low:.0f}-{high:.0f}"
        print(f"{name:<50} {value:>9.0f} {spread:>13} {value / base:>6.2f}x")
    worst = max(v[0] for k, v in results.items() if k.startswith("otelfin")) / base
    print(f"target <= 1.0x: {'met' if worst <= 1.0 else 'MISSED'} ({worst:.2f}x)")
    print()

    old = Histogram("old_seconds", "x", buckets=latency_buckets(slo=0.25),
                    registry=CollectorRegistry())  # fmt: skip
    new = Histogram("new_seconds", "x", buckets=buckets, registry=CollectorRegistry())
    print(f"observe(): default layout ({len(buckets)} bounds) vs the old 10-bound layout")
    for value in (0.005, 0.25, 2.0):
        o = per_call_ns(lambda v=value: old.observe(v), number, repeat)
        n = per_call_ns(lambda v=value: new.observe(v), number, repeat)
        print(f"  {value * 1000:>6.0f} ms: {o:>6.0f} ns -> {n:>6.0f} ns ({n / o:.2f}x)")
    print()

    # Memory under a flood of distinct label values.
    flood_metrics = red_metrics(registry=CollectorRegistry())
    flood_hook = CallRecorder(flood_metrics, "payment-gateway").bind(spec)
    gc.collect()
    tracemalloc.start()
    for i in range(1000):
        flood_hook(0.01, {"payment.channel": f"warm-{i}"}, None, None, span, "ok", True)
    gc.collect()
    warm = tracemalloc.get_traced_memory()[0]
    for i in range(flood_n):
        flood_hook(0.01, {"payment.channel": f"v-{i}"}, None, None, span, "ok", True)
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    series = len(flood_metrics.duration_guard)

    raw_n = flood_n // 10
    uncapped = Histogram("flood_seconds", "x", ["channel"], buckets=buckets,
                         registry=CollectorRegistry())  # fmt: skip
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for i in range(raw_n):
        uncapped.labels(f"v-{i}").observe(0.01)
    gc.collect()
    raw_after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"label flood: {flood_n:,} distinct channel values")
    print(
        f"  otelfin (cap {flood_metrics.duration_guard.max_series}): {series} series, "
        f"memory growth after warm-up {(after - warm) / 1024:.0f} KiB, "
        f"peak {peak / 1024 / 1024:.1f} MiB"
    )
    print(
        f"  prometheus_client, no cap, {raw_n:,} values: "
        f"{(raw_after - start) / 1024 / 1024:.1f} MiB "
        f"({(raw_after - start) / raw_n:.0f} B per series, grows without bound)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
