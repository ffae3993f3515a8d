"""``otelfin traces show``: the waterfall of a trace from an OTLP/JSON spans file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from otelfin.cli._output import json_text

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``traces show`` to the ``otelfin`` parser."""
    traces = subparsers.add_parser("traces", help="read span files")
    tsub = traces.add_subparsers(dest="traces_command", metavar="COMMAND")
    show = tsub.add_parser(
        "show",
        help="draw the waterfall of one trace from a spans file",
        description="Read an OTLP/JSON lines spans file (what otelfin's jsonl exporter and the "
        "Collector's file exporter write) and draw one trace: a row per span with its offset, "
        "duration, service, status, error code and a bar. Default: the trace crossing the most "
        "services.",
    )
    show.add_argument("file", nargs="+", help="spans file(s), .gz or - for stdin")
    pick = show.add_mutually_exclusive_group()
    pick.add_argument("--trace-id", help="the trace to draw (32 hex digits)")
    pick.add_argument("--slowest", action="store_true", help="the trace with the longest span")
    show.add_argument("--width", type=int, default=40, help="bar width in characters (40)")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(func=_show)
    traces.set_defaults(func=lambda args: _help(traces))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _show(args: argparse.Namespace) -> int:
    from otelfin.tools.traces import (
        TraceFileError,
        group_traces,
        pick_trace,
        read_spans,
        render_waterfall,
    )

    if not 10 <= args.width <= 400:
        print(f"otelfin: error: --width must be 10-400, not {args.width}", file=sys.stderr)
        return 2
    try:
        traces = group_traces(read_spans(args.file))
        trace = pick_trace(traces, trace_id=args.trace_id, slowest=args.slowest)
    except TraceFileError as exc:
        print(f"otelfin: error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        start = trace.start_ns
        document = {
            "trace_id": trace.trace_id,
            "duration_ms": trace.duration_ns / 1e6,
            "services": trace.services,
            "spans": [
                {
                    "depth": depth,
                    "span_id": s.span_id,
                    "parent_span_id": s.parent_id or None,
                    "name": s.name,
                    "service": s.service,
                    "kind": s.kind,
                    "offset_ms": (s.start_ns - start) / 1e6,
                    "duration_ms": s.duration_ns / 1e6,
                    "status": s.status,
                    "error_code": s.error_code or None,
                }
                for depth, s in trace.rows
            ],
        }
        print(json_text(document, indent=2))
    else:
        print(render_waterfall(trace, width=args.width))
    return 0
