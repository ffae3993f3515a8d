"""``otelfin demo``: run the example payment gateway end to end (the logic is otelfin._demo)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from otelfin.cli._metrics import _seconds

__all__ = ["register"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    """Add ``demo`` to the ``otelfin`` parser."""
    demo = subparsers.add_parser(
        "demo",
        help="run the example payment gateway and show what otelfin sees",
        description="Start the example payment gateway on 127.0.0.1 (checkout -> FastAPI "
        "payment API -> gRPC ledger on SQLite -> settlement bus -> settlement worker), drive a "
        "mixed workload with a slow path in one channel, and print a trace waterfall, the P99 "
        "attribution table and the log validation result. Leaves spans.jsonl, logs.jsonl, "
        "metrics.prom and report.html in --out.",
    )
    demo.add_argument("--requests", type=_positive_int, default=500, help="payments (500)")
    demo.add_argument(
        "--seconds", type=_seconds, default=40.0, help="stop the workload after this long (40)"
    )
    demo.add_argument(
        "--slow-channel", default="wechat", help="channel that gets the slow path (wechat)"
    )
    bus = demo.add_mutually_exclusive_group()
    bus.add_argument(
        "--amqp",
        metavar="URL",
        help="settle over RabbitMQ, e.g. amqp://guest:guest@127.0.0.1:5672/",
    )
    bus.add_argument("--nats", metavar="URL", help="settle over NATS, e.g. nats://127.0.0.1:4222")
    demo.add_argument(
        "--otlp",
        metavar="URL",
        help="also export spans over OTLP/HTTP (e.g. http://127.0.0.1:4318)",
    )
    demo.add_argument("--out", default="build/demo", help="artefact directory (build/demo)")
    demo.add_argument("--no-progress", action="store_true", help="no progress display")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from otelfin.tools.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(
        requests=args.requests,
        seconds=args.seconds,
        slow_channel=args.slow_channel,
        amqp=args.amqp,
        nats=args.nats,
        otlp=args.otlp,
        out_dir=args.out,
        progress=not args.no_progress,
    )
    try:
        result = run_demo(options)
    except DemoError as exc:
        print(f"otelfin: error: {exc}", file=sys.stderr)
        return 2
    return 0 if result.ok else 1
