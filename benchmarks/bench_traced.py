"""@traced overhead against hand-written OpenTelemetry spans, measured in one run.

Prints the median cost per call (microseconds) of each variant over interleaved rounds, and the
ratios the foundation issue sets targets for:

* sampled:   @traced / hand-written ``tracer.start_as_current_span``   (target <= 1.10)
* unsampled: @traced / the same context manager under ALWAYS_OFF       (target <= 0.60)
* business error: @traced raising a catalogued decline / OTel's raise-inside-span (<= 0.25)

Both sides use the same SDK TracerProvider: BatchSpanProcessor with an exporter that drops
everything (so the figure is the instrumentation, not I/O). Run: python benchmarks/bench_traced.py
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import wrapt
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import otelfin


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider(sampled: bool) -> TracerProvider:
    p = TracerProvider() if sampled else TracerProvider(sampler=ALWAYS_OFF)
    p.add_span_processor(BatchSpanProcessor(DropExporter(), max_queue_size=1 << 16))
    return p


def business(amount: int) -> int:
    return amount + 1


def decline(amount: int) -> int:
    raise otelfin.OtelfinError("PAY-012", "Insufficient balance")


def per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument(
        "--quick", action="store_true", help="a few short rounds: checks the script runs (CI)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 3, 1000

    # The live catalogue (otelfin.catalogue.current()) decides that PAY-012 is a business outcome.
    sampled, unsampled = provider(True), provider(False)
    tracer_on = sampled.get_tracer("bench")
    tracer_off = unsampled.get_tracer("bench")

    traced_on = otelfin.traced(name="pay", tracer_provider=sampled)(business)
    traced_off = otelfin.traced(name="pay", tracer_provider=unsampled)(business)
    traced_decline = otelfin.traced(name="pay", tracer_provider=sampled)(decline)

    def manual(tracer: object) -> Callable[[], int]:
        def call() -> int:
            with tracer.start_as_current_span("pay"):  # type: ignore[attr-defined]
                return business(1)

        return call

    def manual_decline() -> None:
        try:
            with tracer_on.start_as_current_span("pay"):
                decline(1)
        except otelfin.OtelfinError:
            pass

    def traced_decline_call() -> None:
        try:  # noqa: SIM105 - contextlib.suppress would add its own cost to the measurement
            traced_decline(1)
        except otelfin.OtelfinError:
            pass

    @functools.wraps(business)
    def functools_noop(*a: object, **k: object) -> int:
        return business(*a, **k)  # type: ignore[arg-type]

    @wrapt.decorator
    def _noop(wrapped, instance, a, k):  # type: ignore[no-untyped-def]
        return wrapped(*a, **k)

    wrapt_noop = _noop(business)

    cases: dict[str, tuple[Callable[[], object], int]] = {
        "plain call": (lambda: business(1), args.calls * 5),
        "functools.wraps no-op": (lambda: functools_noop(1), args.calls * 5),
        "wrapt.decorator no-op": (lambda: wrapt_noop(1), args.calls * 5),
        "OTel start_as_current_span, sampled": (manual(tracer_on), args.calls),
        "@traced, sampled": (lambda: traced_on(1), args.calls),
        "OTel start_as_current_span, ALWAYS_OFF": (manual(tracer_off), args.calls),
        "@traced, ALWAYS_OFF": (lambda: traced_off(1), args.calls),
        "OTel raise inside span (PAY-012)": (manual_decline, args.calls // 4),
        "@traced raise PAY-012 (business error)": (traced_decline_call, args.calls // 4),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for fn, n in cases.values():  # warm-up
        per_call_us(fn, max(n // 10, 50))
    for _ in range(args.rounds):
        for name, (fn, n) in cases.items():
            samples[name].append(per_call_us(fn, n))
    med = {name: statistics.median(values) for name, values in samples.items()}

    print(f"python {sys.version.split()[0]}, {args.rounds} interleaved rounds, median us/call")
    for name, value in med.items():
        print(f"  {name:<42} {value:8.2f} us")
    rows = [
        (
            "sampled: @traced / hand-written span",
            "@traced, sampled",
            "OTel start_as_current_span, sampled",
            1.10,
        ),
        (
            "unsampled: @traced / OTel ALWAYS_OFF span",
            "@traced, ALWAYS_OFF",
            "OTel start_as_current_span, ALWAYS_OFF",
            0.60,
        ),
        (
            "business error: @traced / OTel raise-in-span",
            "@traced raise PAY-012 (business error)",
            "OTel raise inside span (PAY-012)",
            0.25,
        ),
    ]
    print("\nratio                                          value   target  result")
    for label, ours, theirs, target in rows:
        ratio = med[ours] / med[theirs]
        verdict = "met" if ratio <= target else "MISSED"
        print(f"  {label:<44} {ratio:5.2f}x  <= {target:.2f}x  {verdict}")
    sampled.shutdown()
    unsampled.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
