"""A log call through otelfin's full chain against plain structlog + orjson, in one run.

Prints the median cost per call (microseconds) over interleaved rounds and the ratio the
logging issue sets a target for:

* full chain: ``otelfin.get_logger().info(...)`` (level, catalogue check, scrubbing, trace ids,
  timestamp, orjson render, write + flush) / plain structlog (``add_log_level``,
  ``TimeStamper(fmt="iso", utc=True)``, ``JSONRenderer(serializer=orjson.dumps)``,
  ``BytesLogger``, filtering bound logger, cached)                        (target <= 1.5)

Also shown, for context: an error line with a registered code, a line holding a card number,
a filtered-out debug call, and structlog's lazy proxy. Both sides write to the same kind of
file (``os.devnull``, flushed per line like ``BytesLogger``) inside the same active span.
Run: python benchmarks/bench_logging.py
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable

import orjson
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import otelfin
from otelfin import _config


def per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument(
        "--quick", action="store_true", help="a few short rounds: checks the script runs (CI)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 3, 2000

    sink = open(os.devnull, "wb")  # noqa: SIM115 - lives for the whole run
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(sink),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    proxy = structlog.get_logger()
    plain = structlog.wrap_logger(
        structlog.BytesLogger(sink),
        processors=structlog.get_config()["processors"],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )

    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    otelfin.configure("payment-gateway", log_stream=sink, stdlib_bridge=False)
    log = otelfin.get_logger()
    fields = {"amount": "99.99", "currency": "EUR", "merchant_id": "m-123", "order_id": "ord-4567"}

    cases: dict[str, Callable[[], object]] = {
        "structlog+orjson (concrete)": lambda: plain.info("payment_authorised", **fields),
        "structlog+orjson (lazy proxy)": lambda: proxy.info("payment_authorised", **fields),
        "otelfin info": lambda: log.info("payment_authorised", **fields),
        "otelfin error, registered code": lambda: log.error(
            "payment_declined", error_code="PAY-012", **fields
        ),
        "otelfin info with a card number": lambda: log.info(
            "payment_authorised", note="card 4111 1111 1111 1111", **fields
        ),
        "otelfin debug (filtered out)": lambda: log.debug("payment_authorised", **fields),
        "structlog debug (filtered, concrete)": lambda: plain.debug("x", **fields),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    tracer = provider.get_tracer("bench")
    with tracer.start_as_current_span("request"):
        for fn in cases.values():
            per_call_us(fn, 2000)  # warm up
        for _ in range(args.rounds):
            for name, fn in cases.items():
                samples[name].append(per_call_us(fn, args.calls))
    _config.shutdown()
    sink.close()

    medians = {name: statistics.median(v) for name, v in samples.items()}
    width = max(len(n) for n in medians)
    print(
        f"median us/call over {args.rounds} rounds x {args.calls} calls "
        f"(python {sys.version.split()[0]})"
    )
    for name, value in medians.items():
        print(f"  {name:<{width}}  {value:7.2f}")
    base = medians["structlog+orjson (concrete)"]
    ratio = medians["otelfin info"] / base
    print(
        f"ratio otelfin info / structlog+orjson concrete: {ratio:.2f} (target <= 1.50) "
        f"{'MET' if ratio <= 1.5 else 'MISSED'}"
    )
    ratio_proxy = medians["otelfin info"] / medians["structlog+orjson (lazy proxy)"]
    print(f"ratio otelfin info / structlog+orjson lazy proxy: {ratio_proxy:.2f}")
    _span_scrub_cost(args.rounds, args.calls)
    return 0


def _span_scrub_cost(rounds: int, calls: int) -> None:
    """What scrubbing spans as they end (a reused application provider) adds per span."""
    from opentelemetry.sdk.trace import SpanProcessor

    from otelfin.logging import ScrubbingSpanProcessor

    def spans_with(processor: SpanProcessor) -> Callable[[], object]:
        provider = TracerProvider()
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("bench")
        attributes = {"payment.channel": "web", "http.route": "/pay", "amount": "99.99"}

        def run() -> None:
            with tracer.start_as_current_span("pay", attributes=attributes):
                pass

        return run

    plain, scrubbed = spans_with(SpanProcessor()), spans_with(ScrubbingSpanProcessor())
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(per_call_us(plain, calls // 4))
        b.append(per_call_us(scrubbed, calls // 4))
    base, with_scrub = statistics.median(a), statistics.median(b)
    print(
        f"span with 3 attributes: {base:.2f} us; scrubbed as it ends: {with_scrub:.2f} us "
        f"(+{with_scrub - base:.2f} us)"
    )


if __name__ == "__main__":
    sys.exit(main())
