"""Read OTLP/JSON span files and draw trace waterfalls (``otelfin traces show``, the demo).

A spans file is what otelfin's JSONL exporter (and the OpenTelemetry Collector's file
exporter) writes: one ``{"resourceSpans": [...]}`` document per line, hex ids, nanosecond
times as strings. Every span keeps the ``service.name`` of its resource, so one trace read
from the merged files of several services shows each hop with the service that made it.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otelfin.tools._text import plural

__all__ = [
    "TraceFileError",
    "SpanRecord",
    "Trace",
    "read_spans",
    "group_traces",
    "pick_trace",
    "render_waterfall",
]

_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


class TraceFileError(ValueError):
    """The spans file cannot be read or is not OTLP/JSON lines (``file:line: reason``)."""


@dataclass(frozen=True)
class SpanRecord:
    """One span, flattened: ids, service, timing, status and otelfin's error code."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    error_code: str
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


@dataclass(frozen=True)
class Trace:
    """The spans of one trace in waterfall order: ``rows`` are ``(depth, span)``."""

    trace_id: str
    rows: tuple[tuple[int, SpanRecord], ...]

    @property
    def spans(self) -> list[SpanRecord]:
        return [span for _, span in self.rows]

    @property
    def start_ns(self) -> int:
        return min(span.start_ns for _, span in self.rows)

    @property
    def end_ns(self) -> int:
        return max(span.end_ns for _, span in self.rows)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def services(self) -> list[str]:
        """Services in the order they first appear in the waterfall."""
        return list(dict.fromkeys(span.service for _, span in self.rows))

    @property
    def error_codes(self) -> list[str]:
        return list(dict.fromkeys(s.error_code for _, s in self.rows if s.error_code))


def _value(raw: Any) -> Any:
    if not isinstance(raw, dict) or not raw:
        return None
    kind, value = next(iter(raw.items()))
    if kind == "intValue":
        try:
            return int(value)
        except (TypeError, ValueError):
            return value
    if kind == "arrayValue" and isinstance(value, dict):
        return [_value(v) for v in value.get("values", [])]
    if kind == "kvlistValue" and isinstance(value, dict):
        return {kv.get("key"): _value(kv.get("value")) for kv in value.get("values", [])}
    return value


def _attributes(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, list):
        return {}
    return {
        kv["key"]: _value(kv.get("value")) for kv in raw if isinstance(kv, dict) and "key" in kv
    }


def _nanos(value: Any, where: str, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TraceFileError(f"{where}: {what} {value!r} is not a number of nanoseconds") from None


def _hex_id(value: Any, length: int, where: str, what: str) -> str:
    if not isinstance(value, str) or len(value) != length:
        raise TraceFileError(f"{where}: {what} must be {length} hex digits, not {value!r}")
    try:
        int(value, 16)
    except ValueError:
        raise TraceFileError(f"{where}: {what} {value!r} is not hex") from None
    return value.lower()


def _kind(value: Any) -> str:
    if isinstance(value, int):
        return _KINDS.get(value, "unspecified")
    if isinstance(value, str):
        return value.removeprefix("SPAN_KIND_").lower()
    return "unspecified"


def _status(raw: Any) -> str:
    code = raw.get("code", 0) if isinstance(raw, dict) else 0
    if isinstance(code, str):
        return code.removeprefix("STATUS_CODE_")
    return _STATUS.get(code, "UNSET") if isinstance(code, int) else "UNSET"


def _spans_of(document: Any, where: str) -> Iterator[SpanRecord]:
    if not isinstance(document, dict) or not isinstance(document.get("resourceSpans"), list):
        raise TraceFileError(f"{where}: not an OTLP/JSON line (no resourceSpans list)")
    for resource_spans in document["resourceSpans"]:
        if not isinstance(resource_spans, dict):
            raise TraceFileError(f"{where}: a resourceSpans entry is not an object")
        resource = _attributes((resource_spans.get("resource") or {}).get("attributes"))
        service = str(resource.get("service.name") or "unknown")
        for scope_spans in resource_spans.get("scopeSpans") or []:
            for span in (scope_spans or {}).get("spans") or []:
                if not isinstance(span, dict):
                    raise TraceFileError(f"{where}: a span is not an object")
                attributes = _attributes(span.get("attributes"))
                code = attributes.get("otelfin.error_code") or ""
                parent = span.get("parentSpanId") or ""
                yield SpanRecord(
                    trace_id=_hex_id(span.get("traceId"), 32, where, "traceId"),
                    span_id=_hex_id(span.get("spanId"), 16, where, "spanId"),
                    parent_id=_hex_id(parent, 16, where, "parentSpanId") if parent else "",
                    name=str(span.get("name", "")),
                    service=service,
                    kind=_kind(span.get("kind")),
                    start_ns=_nanos(span.get("startTimeUnixNano"), where, "startTimeUnixNano"),
                    end_ns=_nanos(span.get("endTimeUnixNano"), where, "endTimeUnixNano"),
                    status=_status(span.get("status")),
                    error_code=str(code),
                    attributes=attributes,
                )


def _lines(path: str) -> Iterator[tuple[int, str]]:
    try:
        if path == "-":
            yield from enumerate(sys.stdin, 1)
            return
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    except (OSError, EOFError) as exc:
        raise TraceFileError(
            f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    except UnicodeDecodeError as exc:
        raise TraceFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    yield from enumerate(text.splitlines(), 1)


def read_spans(paths: str | Iterable[str]) -> list[SpanRecord]:
    """Every span in one or more OTLP/JSON lines files (``-`` is stdin, gzip is detected)."""
    spans: list[SpanRecord] = []
    for path in [paths] if isinstance(paths, str) else list(paths):
        for number, line in _lines(path):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                document = json.loads(line)
            except ValueError as exc:
                raise TraceFileError(f"{where}: invalid JSON ({exc.args[0]})") from None
            spans.extend(_spans_of(document, where))
    return spans


def _ordered(spans: Sequence[SpanRecord]) -> list[tuple[int, SpanRecord]]:
    ids = {span.span_id for span in spans}
    children: dict[str, list[SpanRecord]] = {}
    roots = []
    for span in spans:
        if span.parent_id and span.parent_id in ids and span.parent_id != span.span_id:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)  # a root, or a child whose parent was not exported
    rows: list[tuple[int, SpanRecord]] = []
    seen: set[str] = set()

    def visit(top: SpanRecord, top_depth: int) -> None:
        # Depth first with a stack of its own: a hostile file's very deep chain cannot
        # exhaust the interpreter's recursion limit.
        stack = [(top, top_depth)]
        while stack:
            span, depth = stack.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            rows.append((depth, span))
            kids = sorted(children.get(span.span_id, []), key=lambda s: s.start_ns)
            stack.extend((child, depth + 1) for child in reversed(kids))

    for root in sorted(roots, key=lambda s: s.start_ns):
        visit(root, 0)
    for span in spans:  # cycles: still show every span once
        if span.span_id not in seen:
            visit(span, 0)
    return rows


def group_traces(spans: Iterable[SpanRecord]) -> dict[str, Trace]:
    """Spans by trace id, each trace in waterfall order."""
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    return {tid: Trace(tid, tuple(_ordered(items))) for tid, items in by_trace.items()}


def pick_trace(
    traces: dict[str, Trace], *, trace_id: str | None = None, slowest: bool = False
) -> Trace:
    """The trace asked for: by id, the slowest, or (default) the one crossing most services."""
    if not traces:
        raise TraceFileError("the file holds no spans")
    if trace_id is not None:
        wanted = trace_id.strip().lower()
        if wanted not in traces:
            raise TraceFileError(f"no trace {trace_id!r} in the file ({len(traces)} traces)")
        return traces[wanted]
    if slowest:
        return max(traces.values(), key=lambda t: (t.duration_ns, t.trace_id))
    return max(traces.values(), key=lambda t: (len(t.services), t.duration_ns, t.trace_id))


def _ms(nanos: int) -> str:
    return f"{nanos / 1e6:,.1f}ms"


def render_waterfall(trace: Trace, *, width: int = 40, unicode: bool | None = None) -> str:
    """The trace as text: one span per row, offset, duration, service, status, code, bar."""
    if unicode is None:
        encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower()
        unicode = "utf" in encoding
    full, empty = ("█", "·") if unicode else ("#", ".")
    total = max(trace.duration_ns, 1)
    start = trace.start_ns
    name_width = min(44, max(len("  " * d + s.name) for d, s in trace.rows))
    service_width = max(7, *(len(s.service) for s in trace.spans))
    header = (
        f"trace {trace.trace_id}  {_ms(trace.duration_ns)}  "
        f"{plural(len(trace.services), 'service')} ({', '.join(trace.services)})  "
        f"{plural(len(trace.rows), 'span')}"
    )
    lines = [
        header,
        f"{'offset':>10} {'duration':>10}  {'service':<{service_width}}  "
        f"{'span':<{name_width}}  {'status':<6} {'code':<10} timeline",
    ]
    for depth, span in trace.rows:
        offset = span.start_ns - start
        first = min(width - 1, int(offset / total * width))
        length = max(1, min(width - first, round(span.duration_ns / total * width)))
        bar = empty * first + full * length + empty * (width - first - length)
        label = ("  " * depth + span.name)[:name_width]
        lines.append(
            f"{_ms(offset):>10} {_ms(span.duration_ns):>10}  {span.service:<{service_width}}  "
            f"{label:<{name_width}}  {span.status:<6} {span.error_code or '-':<10} |{bar}|"
        )
    return "\n".join(lines)
