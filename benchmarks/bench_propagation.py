"""Propagation overhead: otelfin's propagator vs OpenTelemetry's composite, same run.

Extract: a realistic 13-header HTTP request carrying W3C traceparent/tracestate, baggage and
B3 multi headers, against ``CompositePropagator([TraceContext, W3CBaggage, B3Multi])``.
Inject: the current span and three baggage entries into an empty dict, against OpenTelemetry's
``CompositePropagator([TraceContext, W3CBaggage])`` (the default inject formats of both).

Prints medians of repeated timing runs (microseconds per call) and the ratio otelfin / OTel.
Targets: extract <= 0.5x, inject <= 1.0x.
"""

from __future__ import annotations

import statistics
import sys
import timeit

from opentelemetry import baggage, context, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otelfin.propagation import OtelfinPropagator

HEADERS = {
    "Host": "payments.internal:8443",
    "User-Agent": "checkout-web/4.2.1 (+https://example.invalid)",
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate, br",
    "Content-Type": "application/json",
    "Content-Length": "512",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    "baggage": "tenant.id=acme,payment.channel=web,session.region=eu-west-1",
    "X-B3-TraceId": "4bf92f3577b34da6a3ce929d0e0e4736",
    "X-B3-SpanId": "00f067aa0ba902b7",
    "X-B3-Sampled": "1",
    "X-Request-Id": "0b6c8d7e-2f31-4b1a-9c55-5f0d2a6b9e11",
}
assert len(HEADERS) == 13

REPEATS = 9


def _median_us(fn: object, number: int) -> float:
    timer = timeit.Timer(fn)  # type: ignore[arg-type]
    runs = timer.repeat(repeat=REPEATS, number=number)
    return statistics.median(runs) / number * 1e6


def main() -> None:
    quick = "--quick" in sys.argv
    trace.set_tracer_provider(TracerProvider())
    otel_extract = CompositePropagator(
        [TraceContextTextMapPropagator(), W3CBaggagePropagator(), B3MultiFormat()]
    )
    otel_inject = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    ours = OtelfinPropagator(("tracecontext", "baggage"))

    # Same results first: a benchmark of two things that disagree measures nothing.
    a, b = otel_extract.extract(HEADERS), ours.extract(HEADERS)
    assert (
        trace.get_current_span(a).get_span_context() == trace.get_current_span(b).get_span_context()
    )
    assert dict(baggage.get_all(a)) == dict(baggage.get_all(b))

    n = 2000 if quick else 20000
    ext_otel = _median_us(lambda: otel_extract.extract(HEADERS), n)
    ext_ours = _median_us(lambda: ours.extract(HEADERS), n)

    # The same request again and again lets otelfin's tracestate/baggage cache hit every time;
    # real traffic repeats baggage but often not tracestate, so measure unique values too.
    unique = [
        {
            **HEADERS,
            "tracestate": f"rojo={i:016x},congo=t61rcWkgMzE",
            "baggage": f"tenant.id=acme{i},payment.channel=web,session.region=eu-west-1",
        }
        for i in range(n)
    ]

    def run_unique(propagator: object) -> None:
        extract = propagator.extract  # type: ignore[attr-defined]
        for headers in unique:
            extract(headers)

    uniq_otel = _median_us(lambda: run_unique(otel_extract), 1) / n
    uniq_ours = _median_us(lambda: run_unique(ours), 1) / n

    ctx = otel_extract.extract(HEADERS)
    tracer = trace.get_tracer("bench")
    span = tracer.start_span("client", context=ctx)
    ctx = trace.set_span_in_context(span, ctx)
    token = context.attach(ctx)
    try:
        out_otel: dict[str, str] = {}
        out_ours: dict[str, str] = {}
        otel_inject.inject(out_otel)
        ours.inject(out_ours)
        assert out_otel["traceparent"] == out_ours["traceparent"], (out_otel, out_ours)
        inj_otel = _median_us(lambda: otel_inject.inject({}), n)
        inj_ours = _median_us(lambda: ours.inject({}), n)
    finally:
        context.detach(token)
        span.end()

    print(f"{'operation':<10} {'OTel us':>9} {'otelfin us':>11} {'ratio':>7} {'target':>7}")
    for name, theirs, mine, target in (
        ("extract", ext_otel, ext_ours, 0.5),
        ("extract*", uniq_otel, uniq_ours, 0.5),
        ("inject", inj_otel, inj_ours, 1.0),
    ):
        ratio = mine / theirs
        verdict = "met" if ratio <= target else "MISSED"
        print(
            f"{name:<10} {theirs:>9.2f} {mine:>11.2f} {ratio:>7.2f} {'<=' + str(target):>7} "
            f"{verdict}"
        )
    print("extract* = unique tracestate and baggage on every request (no cache hits)")


if __name__ == "__main__":
    main()
