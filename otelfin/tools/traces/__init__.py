"""Span files after the fact: ``otelfin traces show`` (and the demo's waterfall).

Reads OTLP/JSON span files (otelfin's JSONL exporter, the Collector's file exporter) and
draws one trace as a waterfall.
"""

from __future__ import annotations

from otelfin.tools.traces._show import (
    SpanRecord,
    Trace,
    TraceFileError,
    group_traces,
    pick_trace,
    read_spans,
    render_waterfall,
)

__all__ = [
    "TraceFileError",
    "SpanRecord",
    "Trace",
    "read_spans",
    "group_traces",
    "pick_trace",
    "render_waterfall",
]
