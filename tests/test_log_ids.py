"""Trace ids on log lines follow the current span line by line (the last span's hex ids are
reused only while that very span is current)."""

from __future__ import annotations

import json
from pathlib import Path

from opentelemetry import trace

import otelfin


def test_ids_follow_the_current_span(tmp_path: Path) -> None:
    """Two lines in one span share its ids; the next span's line has the next span's ids; a
    line after the spans has none."""
    out = tmp_path / "log.jsonl"
    otelfin.configure("svc", traces_exporter="none", log_file=str(out))
    log = otelfin.get_logger()
    tracer = trace.get_tracer("t")
    seen = []
    for _ in range(2):
        with tracer.start_as_current_span("s") as span:
            ctx = span.get_span_context()
            seen.append((format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")))
            log.info("first")
            log.info("second")
    log.info("outside")
    otelfin.shutdown()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [line for line in lines if line["event"] in ("first", "second", "outside")]
    assert [(m.get("trace_id"), m.get("span_id")) for m in mine] == [
        seen[0],
        seen[0],
        seen[1],
        seen[1],
        (None, None),
    ]
    assert seen[0] != seen[1]
