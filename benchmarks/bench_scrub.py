"""The card-number/secret scrubber on its own: the common path and the adversarial one.

Prints the median cost per call (microseconds) over interleaved rounds for the shapes a
payment service logs most (a line with no card number, one with order ids, timestamps and
amounts, one with a card number, a typical event dict, a validator line as bytes, a span
scrubbed as it ends), then the time and peak memory to scrub a 10 MB ``"1 1 1 ..."`` string
(the worst case for a digit-and-separator scanner). Uses only public names, so the same
script measures any version. Run: python benchmarks/bench_scrub.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider

from otelfin.logging import ScrubbingSpanProcessor, find_pans, scrub_text, scrub_value

PLAIN = (
    "payment_authorised merchant=m-123 channel=web amount=99.99 currency=EUR "
    "route=/v1/payments status=200 duration_ms=12.5 region=eu-west-1 retry=false"
)
DIGITS = (
    "settled order=ord-20261125-000004 ledger=led-20261125-000004-01 "
    "ts=2026-11-25T10:47:13.123456+00:00 ns=1764067633123456789 amount=1234.56 "
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 iban=DE89370400440532013000"
)
CARD = "payment_authorised card 4111 1111 1111 1111 amount=99.99 currency=EUR"
EVENT = {
    "event": "payment_authorised",
    "amount": "99.99",
    "currency": "EUR",
    "merchant_id": "m-123",
    "order_id": "ord-20261125-000004",
    "card": {"last4": "1111", "brand": "visa"},
    "password": "hunter2",
}
LINE = (
    b'{"timestamp":"2026-11-25T10:47:13.123456+00:00","level":"info",'
    b'"service_name":"payment-gateway","event":"payment_authorised",'
    b'"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",'
    b'"order_id":"ord-20261125-000004","amount":"99.99","currency":"EUR"}'
)


def per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def _span_case() -> Callable[[], object]:
    provider = TracerProvider()
    provider.add_span_processor(ScrubbingSpanProcessor())
    tracer = provider.get_tracer("bench")
    attributes = {
        "payment.channel": "web",
        "http.route": "/pay",
        "http.url": "https://api.example.com/v1/pay?order=ord-20261125-000004&amount=99.99",
        "amount": "99.99",
    }

    def run() -> None:
        with tracer.start_as_current_span("pay", attributes=attributes):
            pass

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--adversarial-mb", type=int, default=10)
    parser.add_argument(
        "--quick", action="store_true", help="a few short rounds: checks the script runs (CI)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.adversarial_mb = 3, 2000, 1

    cases: dict[str, Callable[[], object]] = {
        "scrub_text, plain line (no digits run)": lambda: scrub_text(PLAIN),
        "scrub_text, order ids/timestamps/IBAN": lambda: scrub_text(DIGITS),
        "scrub_text, one card number": lambda: scrub_text(CARD),
        "scrub_value, event dict": lambda: scrub_value(EVENT),
        "find_pans, validator line (bytes)": lambda: find_pans(LINE),
        "span with 4 attributes, scrubbed as it ends": _span_case(),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for fn in cases.values():
        per_call_us(fn, 2000)
    for _ in range(args.rounds):
        for name, fn in cases.items():
            samples[name].append(per_call_us(fn, args.calls))
    medians = {name: statistics.median(v) for name, v in samples.items()}
    width = max(len(n) for n in medians)
    print(
        f"median us/call over {args.rounds} rounds x {args.calls} calls "
        f"(python {sys.version.split()[0]})"
    )
    for name, value in medians.items():
        print(f"  {name:<{width}}  {value:7.2f}")

    size = args.adversarial_mb * 1_000_000
    hostile = "1 " * (size // 2)
    tracemalloc.start()
    start = time.perf_counter()
    scrub_text(hostile)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"adversarial {args.adversarial_mb} MB '1 1 1 ...': {elapsed:.2f} s, "
        f"peak {peak / 1e6:.0f} MB allocated"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
