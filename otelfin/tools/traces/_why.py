"""Why are the slow traces slow: critical-path shares of slow traces against normal ones.

``otelfin traces why`` reads exported traces (OTLP/JSON lines), splits them at the P99 of
their duration (or ``--slower-than``) into *slow* and *normal*, walks each trace's critical
path, and ranks the hops (span name, service or peer) by how much more of the slow traces'
critical path they take than of the normal traces': "acquirer.authorise: 91% of slow
traces' time vs 22% of normal ones".

The critical path of a span is the chain of work its end waited for, walked backwards from
its end: the child that finished last before the cursor is on the path (clipped to the
cursor), the time between children is the span's own, and the walk continues from that
child's start. Children running in parallel with the chosen one are off the path; a child
of the same service that ends after its parent is asynchronous (the parent did not wait for
it) and off the path too; a child in another service is clipped to its parent instead, since
a remote server span may overhang its client span by the two hosts' clock skew. The path's
segments add up to the analysed span's duration exactly.

A hop's share in a group is the mean over the group's traces of the fraction of each trace's
critical path spent on that hop, so every trace counts once: a few very slow traces that fall
under the P99 (and so among the normal ones) cannot dominate the normal share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from otelfin._keep import operation_of
from otelfin.tools._text import plural
from otelfin.tools.traces._show import SpanRecord, Trace, TraceFileError

__all__ = [
    "By",
    "Segment",
    "WhyReport",
    "WhyRow",
    "critical_path",
    "peer_of",
    "render_why",
    "why_slow",
]

By = Literal["span", "service", "peer"]
_OUTGOING = frozenset({"client", "producer"})
_PEER_KEYS = (
    "server.address",
    "net.peer.name",
    "peer.service",
    "rpc.service",
    "db.namespace",
    "db.name",
    "messaging.destination.name",
    "network.peer.address",
)
_URL_KEYS = ("url.full", "http.url")


@dataclass(frozen=True)
class Segment:
    """A stretch of a critical path: ``span`` was the deepest work under way for ``ns``."""

    span: SpanRecord
    ns: int
    #: The peer of the nearest outgoing call (CLIENT/PRODUCER span) on the path, or "".
    peer: str


@dataclass(frozen=True)
class WhyRow:
    """One hop: its share of the slow and the normal traces' critical-path time."""

    key: str
    slow_share: float
    normal_share: float
    slow_ms: float
    normal_ms: float

    @property
    def difference(self) -> float:
        return self.slow_share - self.normal_share

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "slow_share": round(self.slow_share, 6),
            "normal_share": round(self.normal_share, 6),
            "difference": round(self.difference, 6),
            "slow_ms_per_trace": round(self.slow_ms, 3),
            "normal_ms_per_trace": round(self.normal_ms, 3),
        }


@dataclass(frozen=True)
class WhyReport:
    """The ranking, with what it was computed from."""

    by: By
    operation: str | None
    threshold_ms: float
    threshold_source: str
    slow: int
    normal: int
    rows: tuple[WhyRow, ...]
    slow_examples: tuple[str, ...] = field(default=())

    @property
    def headline(self) -> str | None:
        """The top row as a sentence, or None when nothing stands out."""
        if not self.rows or self.rows[0].difference <= 0:
            return None
        top = self.rows[0]
        return (
            f"{top.key}: {top.slow_share:.0%} of slow traces' time vs "
            f"{top.normal_share:.0%} of normal ones"
        )

    @property
    def note(self) -> str | None:
        """A warning when the split means little: fewer than 100 traces have no P99 of their own."""
        total = self.slow + self.normal
        if self.threshold_source.endswith("P99") and total < 100:
            return (
                f"only {plural(total, 'trace')}: a P99 needs at least 100, so slow means the "
                "slowest; give --slower-than SECONDS for a threshold of your own"
            )
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "note": self.note,
            "by": self.by,
            "operation": self.operation,
            "threshold_ms": round(self.threshold_ms, 3),
            "threshold": self.threshold_source,
            "slow_traces": self.slow,
            "normal_traces": self.normal,
            "headline": self.headline,
            "rows": [row.as_dict() for row in self.rows],
            "slow_examples": list(self.slow_examples),
        }


def peer_of(span: SpanRecord) -> str:
    """Who an outgoing span talks to: server.address, else the URL host, RPC service, database
    or broker destination; "" when the span names none."""
    attributes = span.attributes
    for key in _PEER_KEYS[:2]:
        value = attributes.get(key)
        if value:
            return str(value)
    for key in _URL_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            try:
                host = urlsplit(value).hostname
            except ValueError:
                host = None
            if host:
                return host
    for key in _PEER_KEYS[2:]:
        value = attributes.get(key)
        if value:
            return str(value)
    return ""


def _children(trace: Trace) -> dict[str, list[SpanRecord]]:
    ids = {span.span_id for span in trace.spans}
    children: dict[str, list[SpanRecord]] = {}
    for span in trace.spans:
        if span.parent_id and span.parent_id in ids and span.parent_id != span.span_id:
            children.setdefault(span.parent_id, []).append(span)
    for kids in children.values():
        kids.sort(key=lambda s: (-s.end_ns, s.start_ns, s.span_id))
    return children


class _Frame:
    __slots__ = ("cursor", "index", "kids", "lo", "peer", "span")

    def __init__(self, span: SpanRecord, lo: int, hi: int, peer: str, kids: list[SpanRecord]):
        self.span = span
        self.lo = lo
        self.cursor = hi
        self.peer = peer
        self.kids = kids
        self.index = 0


def critical_path(trace: Trace, root: SpanRecord | None = None) -> list[Segment]:
    """The critical path of ``root`` (default: the trace's longest root span) as segments.

    Iterative (a hostile file's 100,000-deep chain cannot exhaust the stack); a span is
    visited once (a parent-id cycle cannot loop).
    """
    if root is None:
        root = _analysed(trace, None)
        if root is None:
            return []
    kids_of = _children(trace)
    segments: list[Segment] = []
    seen = {root.span_id}
    own_peer = peer_of(root) if root.kind in _OUTGOING else ""
    stack = [_Frame(root, root.start_ns, root.end_ns, own_peer, kids_of.get(root.span_id, []))]
    while stack:
        frame = stack[-1]
        span, kids = frame.span, frame.kids
        chosen: SpanRecord | None = None
        while frame.index < len(kids):
            kid = kids[frame.index]
            frame.index += 1
            if kid.span_id in seen:
                continue
            if kid.service == span.service and kid.end_ns > span.end_ns:
                continue  # asynchronous: its parent ended without waiting for it
            if kid.start_ns >= frame.cursor or min(kid.end_ns, frame.cursor) <= frame.lo:
                continue  # outside what is left of the parent's path
            chosen = kid
            break
        if chosen is None:
            if frame.cursor > frame.lo:
                segments.append(Segment(span, frame.cursor - frame.lo, frame.peer))
            stack.pop()
            continue
        seen.add(chosen.span_id)
        kid_end = min(chosen.end_ns, frame.cursor)
        if kid_end < frame.cursor:
            segments.append(Segment(span, frame.cursor - kid_end, frame.peer))
        kid_lo = max(chosen.start_ns, frame.lo)
        frame.cursor = kid_lo
        peer = (peer_of(chosen) or chosen.name) if chosen.kind in _OUTGOING else frame.peer
        stack.append(_Frame(chosen, kid_lo, kid_end, peer, kids_of.get(chosen.span_id, [])))
    return segments


def _ids(trace: Trace) -> set[str]:
    return {span.span_id for span in trace.spans}


def _matches(span: SpanRecord, operation: str) -> bool:
    return span.name == operation or operation_of(span.name, span.attributes) == operation


def _analysed(trace: Trace, operation: str | None) -> SpanRecord | None:
    """The span whose latency is explained: the trace's longest root, or with ``operation``
    the shallowest, earliest span of that name (``POST /payments/{id}`` or an operation)."""
    if operation is None:
        ids = _ids(trace)
        roots = [s for _, s in trace.rows if not s.parent_id or s.parent_id not in ids]
        # Parent ids in a cycle leave no root: the longest span stands in.
        candidates = roots or trace.spans
        return max(candidates, key=lambda s: (s.duration_ns, -s.start_ns)) if candidates else None
    matching = [(depth, s.start_ns, s) for depth, s in trace.rows if _matches(s, operation)]
    return min(matching, key=lambda m: (m[0], m[1]))[2] if matching else None


def _key(segment: Segment, by: By) -> str:
    if by == "span":
        return segment.span.name
    if by == "service":
        return segment.span.service
    return segment.peer or f"(in {segment.span.service})"


def _p99(values: Sequence[int]) -> int:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def why_slow(
    traces: Iterable[Trace],
    *,
    by: By = "span",
    operation: str | None = None,
    slower_than: float | None = None,
) -> WhyReport:
    """Rank the hops of slow traces (at or over the P99 duration, or over ``slower_than``
    seconds) by their critical-path share against the normal traces'.

    Raises :class:`~otelfin.tools.traces.TraceFileError` (a ``ValueError``) when ``by`` is
    unknown, ``slower_than`` is not a positive number, or no trace has the operation.
    """
    if by not in ("span", "service", "peer"):
        raise TraceFileError(f"--by must be span, service or peer, not {by!r}")
    if slower_than is not None and not (0 < slower_than < math.inf):
        raise TraceFileError(f"--slower-than must be a positive number of seconds: {slower_than!r}")
    analysed: list[tuple[Trace, SpanRecord]] = []
    for trace in traces:
        span = _analysed(trace, operation)
        if span is not None:
            analysed.append((trace, span))
    if not analysed:
        what = f"operation {operation!r}" if operation else "a root span"
        raise TraceFileError(f"no trace has {what}")
    if slower_than is not None:
        threshold = int(slower_than * 1e9)
        source = f"slower than {slower_than:g}s"
        slow_of = [span.duration_ns > threshold for _, span in analysed]
    else:
        threshold = _p99([span.duration_ns for _, span in analysed])
        source = "at or over the P99"
        slow_of = [span.duration_ns >= threshold for _, span in analysed]
    counts = {True: 0, False: 0}
    shares: dict[tuple[bool, str], float] = {}
    time: dict[tuple[bool, str], int] = {}
    for (trace, span), slow in zip(analysed, slow_of, strict=True):
        counts[slow] += 1
        mine: dict[str, int] = {}
        for segment in critical_path(trace, span):
            key = _key(segment, by)
            mine[key] = mine.get(key, 0) + segment.ns
        total = sum(mine.values())
        for key, ns in mine.items():
            time[(slow, key)] = time.get((slow, key), 0) + ns
            if total:
                shares[(slow, key)] = shares.get((slow, key), 0.0) + ns / total
    rows = []
    for key in {key for _, key in time}:
        slow_n, normal_n = counts[True] or 1, counts[False] or 1
        rows.append(
            WhyRow(
                key,
                shares.get((True, key), 0.0) / slow_n,
                shares.get((False, key), 0.0) / normal_n,
                time.get((True, key), 0) / 1e6 / slow_n,
                time.get((False, key), 0) / 1e6 / normal_n,
            )
        )
    rows.sort(key=lambda r: (-r.difference, -r.slow_share, r.key))
    pairs = zip(analysed, slow_of, strict=True)
    slowest = sorted(((span.duration_ns, t.trace_id) for (t, span), s in pairs if s), reverse=True)
    return WhyReport(
        by=by,
        operation=operation,
        threshold_ms=threshold / 1e6,
        threshold_source=source,
        slow=counts[True],
        normal=counts[False],
        rows=tuple(rows),
        slow_examples=tuple(tid for _, tid in slowest[:3]),
    )


def render_why(report: WhyReport, *, limit: int = 15) -> str:
    """The report as text: the headline, then the ranked hops."""
    scope = f" of {report.operation}" if report.operation else ""
    lines = [
        f"{plural(report.slow + report.normal, 'trace')}{scope}: "
        f"{report.slow} slow ({report.threshold_source}, {report.threshold_ms:,.1f}ms), "
        f"{report.normal} normal"
    ]
    if report.note:
        lines.append(f"note: {report.note}")
    if report.headline:
        lines.append(report.headline)
    elif report.slow and report.normal:
        lines.append("no hop takes a larger share of the slow traces than of the normal ones")
    width = max([len(report.by), *(len(r.key) for r in report.rows[:limit])])
    width = min(width, 48)
    lines.append(
        f"{report.by:<{width}}  {'slow':>6}  {'normal':>6}  {'diff':>6}  "
        f"{'slow ms/trace':>13}  {'normal ms/trace':>15}"
    )
    for row in report.rows[:limit]:
        lines.append(
            f"{row.key[:width]:<{width}}  {row.slow_share:>6.1%}  {row.normal_share:>6.1%}  "
            f"{row.difference * 100:>+6.1f}  {row.slow_ms:>13,.1f}  {row.normal_ms:>15,.1f}"
        )
    if len(report.rows) > limit:
        lines.append(f"... {plural(len(report.rows) - limit, 'more row')}")
    if report.slow_examples:
        lines.append("slowest traces: " + ", ".join(report.slow_examples))
    return "\n".join(lines)
