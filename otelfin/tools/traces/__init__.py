"""Span files after the fact: ``otelfin traces show`` (and the demo's waterfall).

Reads OTLP/JSON span files (otelfin's JSONL exporter, the Collector's file exporter) and
draws one trace as a waterfall; ranks the hops that make slow traces slow
(``otelfin traces why``).
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
from otelfin.tools.traces._why import (
    Segment,
    WhyReport,
    WhyRow,
    critical_path,
    peer_of,
    render_why,
    why_slow,
)

__all__ = [
    "TraceFileError",
    "SpanRecord",
    "Trace",
    "read_spans",
    "group_traces",
    "pick_trace",
    "render_waterfall",
    "Segment",
    "WhyReport",
    "WhyRow",
    "critical_path",
    "peer_of",
    "render_why",
    "why_slow",
]
