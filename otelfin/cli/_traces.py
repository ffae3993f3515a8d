"""``otelfin traces show`` (the waterfall of a trace) and ``otelfin traces why`` (which hop
makes the slow traces slow), from OTLP/JSON spans files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from otelfin.cli._common import command, usage_error
from otelfin.cli._env import files_argument
from otelfin.cli._output import json_text

__all__ = ["register"]


def _spans_files(parser: Any) -> None:
    files_argument(parser, "spans_file", help="spans files, .gz or - for stdin")


def _no_files(args: argparse.Namespace) -> bool:
    if args.files:
        return False
    print(
        f"otelfin traces {args.traces_command}: give FILE (- for stdin) or set OTELFIN_SPANS_FILE",
        file=sys.stderr,
    )
    return True


def register(subparsers: Any) -> None:
    """Add ``traces show`` to the ``otelfin`` parser."""
    _, tsub = command(subparsers, "traces", help="read span files")
    show = tsub.add_parser(
        "show",
        help="draw the waterfall of one trace from a spans file",
        description="Read an OTLP/JSON lines spans file (what otelfin's jsonl exporter and the "
        "Collector's file exporter write) and draw one trace: a row per span with its offset, "
        "duration, service, status, error code and a bar. Default: the trace crossing the most "
        "services.",
    )
    _spans_files(show)
    pick = show.add_mutually_exclusive_group()
    pick.add_argument("--trace-id", help="the trace to draw (32 hex digits)")
    pick.add_argument("--slowest", action="store_true", help="the trace with the longest span")
    show.add_argument("--width", type=int, default=40, help="bar width in characters (40)")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(func=_show)
    why = tsub.add_parser(
        "why",
        help="rank the hops that make slow traces slow (critical-path shares)",
        description="Read OTLP/JSON lines spans files, split the traces at the P99 of their "
        "duration (or --slower-than) into slow and normal, and rank each hop (span name, "
        "service or peer) by its share of the slow traces' critical path against its share "
        "of the normal traces'. Exit 0 with a ranking, 1 when there is nothing to compare "
        "(no slow or no normal trace), 2 for usage or input errors.",
    )
    _spans_files(why)
    why.add_argument(
        "--operation",
        metavar="NAME",
        help="explain this operation (span name or 'METHOD /route'), wherever it sits in "
        "the trace; default: each trace's root span",
    )
    why.add_argument("--by", choices=("span", "service", "peer"), default="span")
    why.add_argument(
        "--slower-than",
        metavar="SECONDS",
        type=float,
        help="slow means longer than this (default: at or over the P99 duration)",
    )
    why.add_argument("--limit", type=int, default=15, help="rows shown in text (15)")
    why.add_argument("--format", choices=("text", "json"), default="text")
    why.set_defaults(func=_why)


def _show(args: argparse.Namespace) -> int:
    if _no_files(args):
        return 2
    from otelfin.tools.traces import (
        TraceFileError,
        group_traces,
        pick_trace,
        read_spans,
        render_waterfall,
    )

    if not 10 <= args.width <= 400:
        return usage_error(f"--width must be 10-400, not {args.width}")
    try:
        traces = group_traces(read_spans(args.files))
        trace = pick_trace(traces, trace_id=args.trace_id, slowest=args.slowest)
    except TraceFileError as exc:
        return usage_error(str(exc))
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


def _why(args: argparse.Namespace) -> int:
    if _no_files(args):
        return 2
    from otelfin.tools.traces import (
        TraceFileError,
        group_traces,
        read_spans,
        render_why,
        why_slow,
    )

    if args.limit < 1:
        return usage_error(f"--limit must be at least 1, not {args.limit}")
    try:
        report = why_slow(
            group_traces(read_spans(args.files)).values(),
            by=args.by,
            operation=args.operation,
            slower_than=args.slower_than,
        )
    except TraceFileError as exc:
        return usage_error(str(exc))
    if args.format == "json":
        print(json_text(report.as_dict(), indent=2))
    else:
        print(render_why(report, limit=args.limit))
    return 0 if report.slow and report.normal else 1
