"""OTLP span encoding on the export thread: the official encoder against otelfin's wire encoder.

A batch of 510 spans as the e2e benchmark's app produces them (170 requests of 3 spans, a new
trace each with a remote parent): a FastAPI-style server span with 13 HTTP attributes (path,
URL and peer port differ per request) and two internal spans with 3 and 5 attributes, on an
SDK resource (``Resource.create``: service and telemetry.sdk attributes). Each round encodes
the batch once with each encoder, in turn (interleaved), to the bytes an OTLP/HTTP POST sends:
``encode_spans(batch).SerializePartialToString()`` (the official exporter's path) and
``otelfin._exporters._wire.encode_request(batch)`` (what otelfin's exporter sends; the same
bytes, checked before timing). Prints us a span, median (min-max) over rounds, and the ratio
per round. Run: python benchmarks/bench_span_encoding.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from otelfin._exporters._wire import encode_request

REQUESTS = 170


def batch(requests: int = REQUESTS) -> list[ReadableSpan]:
    """The spans of ``requests`` requests to ``POST /payments/{id}`` (3 a request)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "payment-api"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    server = provider.get_tracer("opentelemetry.instrumentation.fastapi", "0.55b0")
    app = provider.get_tracer("payments")
    for i in range(requests):
        remote = SpanContext(
            0x4BF92F3577B34DA6A3CE929D0E000000 + i, 0x00F067AA0BA90000 + i, True, TraceFlags(1)
        )
        parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        http = {
            "http.scheme": "http",
            "http.host": "127.0.0.1:8000",
            "net.host.port": 8000,
            "http.flavor": "1.1",
            "http.target": f"/payments/ord-{i:06d}",
            "http.url": f"http://127.0.0.1:8000/payments/ord-{i:06d}",
            "http.method": "POST",
            "http.server_name": "127.0.0.1:8000",
            "http.user_agent": "python-httpx/0.28.1",
            "net.peer.ip": "127.0.0.1",
            "net.peer.port": 40000 + i % 1000,
            "http.route": "/payments/{id}",
            "http.status_code": 200,
        }
        with server.start_as_current_span(
            "POST /payments/{id}", context=parent, kind=SpanKind.SERVER, attributes=http
        ):
            with app.start_as_current_span(
                "validate_payment",
                attributes={"code.function": "validate", "code.namespace": "app", "items": 2},
            ):
                pass
            with app.start_as_current_span(
                "authorise",
                attributes={
                    "code.function": "authorise",
                    "code.namespace": "app",
                    "payment.channel": "card",
                    "payment.currency": "EUR",
                    "payment.amount": 99.99,
                },
            ):
                pass
    return list(memory.get_finished_spans())


def _official(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializePartialToString()


def _wire(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_request(spans)


def per_span_us(
    encode: Callable[[Sequence[ReadableSpan]], bytes], spans: list[ReadableSpan]
) -> float:
    start = time.perf_counter()
    encode(spans)
    return (time.perf_counter() - start) / len(spans) * 1e6


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--quick", action="store_true", help="a few rounds: checks it runs (CI)")
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else args.rounds
    spans = batch()
    if _wire(spans) != _official(spans):
        print("the wire encoder's bytes differ from the official encoder's", file=sys.stderr)
        return 1
    encoders = {"official encode_spans": _official, "otelfin wire encoder": _wire}
    samples: dict[str, list[float]] = {name: [] for name in encoders}
    for encode in encoders.values():  # warm-up (caches, imports)
        encode(spans)
    for _ in range(rounds):
        for name, encode in encoders.items():
            samples[name].append(per_span_us(encode, spans))
    print(f"OTLP encoding of a {len(spans)}-span batch, us a span, median (min-max) of {rounds}:")
    for name, values in samples.items():
        print(f"  {name:24s} {_summary(values)}")
    ratios = [o / w for o, w in zip(*samples.values(), strict=True)]
    print(f"  official / otelfin ratio   {_summary(ratios)}")
    per_request = statistics.median(samples["official encode_spans"]) * 3
    print(
        f"  a 3-span request: {per_request:.0f} us official, "
        f"{statistics.median(samples['otelfin wire encoder']) * 3:.0f} us otelfin"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
