"""Tail sampling in the process: keep every local trace that ends in an error, a decline or
over its SLO, whatever the head sampler said, with bounded memory.

With ``keep_traces`` set, ``configure()`` makes the sampler record every span (a head ``DROP``
becomes ``RECORD_ONLY``: :mod:`otelfin._sampling`), and puts :class:`TailSamplingProcessor`
in front of otelfin's export pipeline:

* a head-sampled span is exported as before, marked ``otelfin.kept_by = "sampled"``;
* a span of a trace the head sampler dropped waits in a buffer until the trace's last open
  *local root* (a span whose parent is remote or absent: the SERVER/CONSUMER span, or the
  ``@traced`` call that started the trace here) ends. Then :class:`~otelfin._keep.KeepRules`
  decides on the local roots: kept traces go to the export pipeline whole (scrubbed, counted,
  batched like any other span), marked ``otelfin.kept_by = "error" | "declined" | "slow"``;
  the others are discarded (that is the sampling, not a loss).
* spans that end after their trace was decided (an async task outliving the request) follow
  the decision at once; a later local root of the same trace (a consumer picking up the
  message after the response went out) opens a new round, exported at once if the trace was
  kept before.

The exported copies of buffered spans carry the sampled trace flag (the backend received
them); the flag *propagated downstream* stays the head decision, since the live spans are
untouched: a downstream service cannot know that its caller will keep the trace later (see
the docs and ``examples/collector/tail_sampling.yaml`` for the Collector deployment that
keeps whole cross-service traces).

Bounds (settings ``keep_traces_max_spans``, ``keep_traces_max_bytes``,
``keep_traces_max_age``): a span that does not fit is dropped at once and counted in
``otelfin_spans_dropped_total{reason="tail_buffer_full"}``; spans of a trace still undecided
after the age limit are dropped and counted under ``reason="tail_timeout"`` (the trace's
local root is still decided when it ends, and exported alone if kept). A kept trace that lost
spans this way carries ``otelfin.tail.dropped_spans`` on its exported spans. Nothing blocks:
the request thread takes one short lock per span; the root's thread hands the kept spans to
the batch queue.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from time import monotonic
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, TraceFlags

from otelfin import _internal
from otelfin._keep import KEEP_REASONS, KEPT_BY, KeepRules, is_local_root

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SPANS",
    "DROPPED_SPANS",
    "TailSamplingProcessor",
    "estimate_bytes",
]

#: Spans waiting for their trace's decision, at most (all traces together): 4,000 requests in
#: flight at once with five spans each.
DEFAULT_MAX_SPANS = 20_000
#: Estimated bytes of those spans, at most (see :func:`estimate_bytes`): 20,000 spans of about
#: 3.3 KB (a finished span with five short attributes, measured).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Seconds a local trace may stay undecided before its waiting spans are dropped.
DEFAULT_MAX_AGE = 60.0
#: The attribute a kept trace's exported spans carry when some of its spans were dropped.
DROPPED_SPANS = "otelfin.tail.dropped_spans"
# Decisions remembered for spans that end after their trace was decided.
_DECIDED = 16_384
_SWEEP_INTERVAL = 1.0
_EVICTED = "?"
_TIMEOUT = "their trace stayed undecided past keep_traces_max_age"
_PRIORITY = {reason: i for i, reason in enumerate(KEEP_REASONS)}

# Memory of one finished SDK span waiting in the buffer without attributes (2,720 bytes) and of
# one more short attribute (~135 bytes), measured with tracemalloc (SDK 1.45.1, Python 3.11:
# 2,725 / 2,958 / 3,414 / 4,073 bytes a span with 0 / 1 / 5 / 10 attributes); text values
# are added at their length.
_SPAN_BYTES = 2_700
_ITEM_BYTES = 130


def estimate_bytes(span: ReadableSpan) -> int:
    """A cheap estimate of the memory ``span`` holds (for the buffer's byte limit): a fixed
    cost, a cost per attribute and event, and the length of every text value (a SQL statement
    or a stack trace is what makes one span large)."""
    attributes = span.attributes or {}
    size = _SPAN_BYTES + _ITEM_BYTES * len(attributes)
    for value in attributes.values():
        if type(value) is str:
            size += len(value)
    events = span.events
    if events:
        for event in events:
            size += _ITEM_BYTES * (1 + len(event.attributes or ()))
            for value in (event.attributes or {}).values():
                if type(value) is str:
                    size += len(value)
    return size


class _Waiting:
    """One undecided local trace: its finished spans and how many of its roots are open."""

    __slots__ = ("bytes", "dropped", "open_roots", "reason", "since", "spans")

    def __init__(self, now: float) -> None:
        self.spans: list[tuple[ReadableSpan, int]] = []
        self.bytes = 0
        self.open_roots = 0
        self.dropped = 0
        self.reason: str | None = None
        self.since = now


def _stronger(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if _PRIORITY[a] <= _PRIORITY[b] else b


def _kept(span: ReadableSpan, reason: str, dropped: int) -> ReadableSpan:
    """A copy of ``span`` marked kept: the ``otelfin.kept_by`` attribute, the sampled flag."""
    ctx = span.context
    if ctx is None:
        return span
    attributes = dict(span.attributes or {})
    attributes[KEPT_BY] = reason
    if dropped:
        attributes[DROPPED_SPANS] = dropped
    bounded = BoundedAttributes(attributes=attributes, immutable=True)
    bounded.dropped = span.dropped_attributes
    events: BoundedList[Any] = BoundedList(None)
    events.extend(span.events)
    events.dropped = span.dropped_events
    links: BoundedList[Any] = BoundedList(None)
    links.extend(span.links)
    links.dropped = span.dropped_links
    return ReadableSpan(
        name=span.name,
        context=SpanContext(
            ctx.trace_id,
            ctx.span_id,
            ctx.is_remote,
            TraceFlags(ctx.trace_flags | TraceFlags.SAMPLED),
            ctx.trace_state,
        ),
        parent=span.parent,
        resource=span.resource,
        attributes=bounded,
        events=events,
        links=links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class TailSamplingProcessor(SpanProcessor):
    """Buffers the spans of head-dropped traces until their local roots decide; see the module.

    ``pipeline`` receives every exported span (otelfin's :class:`~otelfin._exporters.
    ExportPipeline`: scrubbing, batching, export accounting). ``clock`` is for tests.
    """

    def __init__(
        self,
        pipeline: SpanProcessor,
        rules: KeepRules,
        *,
        max_spans: int = DEFAULT_MAX_SPANS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        if max_spans < 1 or max_bytes < 1 or not max_age > 0:
            raise ValueError("tail sampling limits must be positive")
        self.pipeline = pipeline
        self.rules = rules
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: OrderedDict[int, _Waiting] = OrderedDict()
        self._decided: OrderedDict[int, str | None] = OrderedDict()
        self._spans = 0
        self._bytes = 0
        self._next_sweep = clock() + _SWEEP_INTERVAL
        self._closed = False
        from otelfin._exporters._fork import _after_fork

        _after_fork(self, TailSamplingProcessor._forked)

    # --- what the buffer holds (tests, benchmarks, the health collector) -------------------

    def buffered(self) -> tuple[int, int, int]:
        """(undecided local traces, spans waiting, estimated bytes waiting)."""
        with self._lock:
            return len(self._waiting), self._spans, self._bytes

    def _forked(self) -> None:
        # The parent's requests do not exist in a forked child: start empty, with a new lock.
        self._lock = threading.Lock()
        self._waiting = OrderedDict()
        self._decided = OrderedDict()
        self._spans = self._bytes = 0

    # --- SpanProcessor ---------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        ctx = span.context
        if ctx.trace_flags.sampled:
            span.set_attribute(KEPT_BY, "sampled")
        elif is_local_root(span):
            tid = ctx.trace_id
            with self._lock:
                waiting = self._waiting.get(tid)
                if waiting is None and self._decided.get(tid) in (None, _EVICTED):
                    # A new trace, or a new round of one that was not kept (a round of a
                    # kept trace needs no buffer: its spans go out as they end).
                    waiting = self._waiting[tid] = _Waiting(self._clock())
                if waiting is not None:
                    waiting.open_roots += 1
        self.pipeline.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None or ctx.trace_flags.sampled:
            self.pipeline.on_end(span)
            return
        out: Sequence[ReadableSpan] = ()
        tid = ctx.trace_id
        root = is_local_root(span)
        reason = self.rules.span_reason(span) if root else None
        size = 0 if root else estimate_bytes(span)
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            waiting = self._waiting.get(tid)
            if waiting is None:
                decided = self._decided.get(tid, reason)
                if decided is _EVICTED and not root:
                    _internal.spans_dropped("tail_timeout", 1, _TIMEOUT)
                if root and decided in (None, _EVICTED):
                    decided = reason  # a root nobody saw start (or whose buffer went) decides
                if decided is not None and decided is not _EVICTED and not self._closed:
                    out = (_kept(span, decided, 0),)
            elif root:
                waiting.reason = _stronger(waiting.reason, reason)
                waiting.open_roots -= 1
                waiting.spans.append((span, 0))
                if waiting.open_roots <= 0:
                    out = self._decide(tid, waiting)
            elif self._spans >= self.max_spans or self._bytes + size > self.max_bytes:
                waiting.dropped += 1
                _internal.spans_dropped(
                    "tail_buffer_full", 1, "the tail-sampling buffer is full (keep_traces_max_*)"
                )
            else:
                waiting.spans.append((span, size))
                waiting.bytes += size
                self._spans += 1
                self._bytes += size
        for kept in out:
            self.pipeline.on_end(kept)

    def _decide(self, tid: int, waiting: _Waiting) -> Sequence[ReadableSpan]:
        """Close ``waiting`` (lock held): the spans to export, marked, or none."""
        del self._waiting[tid]
        self._spans -= sum(1 for _, size in waiting.spans if size)  # roots are not counted
        self._bytes -= waiting.bytes
        self._remember(tid, waiting.reason)
        reason = waiting.reason
        if reason is None or self._closed:
            return ()
        return [_kept(span, reason, waiting.dropped) for span, _ in waiting.spans]

    def _remember(self, tid: int, decision: str | None) -> None:
        """Keep ``decision`` for late spans of ``tid``; the oldest decisions go (lock held)."""
        decided = self._decided
        decided[tid] = decision
        decided.move_to_end(tid)
        while len(decided) > _DECIDED:
            decided.popitem(last=False)

    def _sweep(self, now: float) -> None:
        """Drop the spans of traces undecided for longer than ``max_age`` (lock held)."""
        self._next_sweep = now + _SWEEP_INTERVAL
        limit = now - self.max_age
        waiting = self._waiting
        lost = 0
        while waiting:
            tid, oldest = next(iter(waiting.items()))
            if oldest.since > limit:
                break
            children = [(s, size) for s, size in oldest.spans if size]
            lost += len(children)
            oldest.dropped += len(children)
            oldest.spans = [(s, size) for s, size in oldest.spans if not size]
            self._spans -= len(children)
            self._bytes -= oldest.bytes
            oldest.bytes = 0
            if len(waiting) > self.max_spans:
                # Too many open traces (local roots that never end): forget the oldest; its
                # root still decides alone if it ends.
                del waiting[tid]
                self._remember(tid, _EVICTED)
            else:
                oldest.since = now
                waiting.move_to_end(tid)
        if lost:
            _internal.spans_dropped("tail_timeout", lost, _TIMEOUT)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Undecided traces are still running: flushing exports what was decided.
        return bool(self.pipeline.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self._discard()
        self.pipeline.shutdown()

    def close(self, timeout_millis: float, *, shutdown_exporter: bool = True) -> bool:
        """Count what is still undecided as dropped, then close the pipeline in time."""
        self._discard()
        close = getattr(self.pipeline, "close", None)
        if close is not None:
            return bool(close(timeout_millis, shutdown_exporter=shutdown_exporter))
        self.pipeline.force_flush(int(timeout_millis))
        if shutdown_exporter:
            self.pipeline.shutdown()
        return True

    def _discard(self) -> None:
        with self._lock:
            self._closed = True
            waiting = self._spans
            self._waiting.clear()
            self._spans = self._bytes = 0
        _internal.spans_dropped("shutdown", waiting, "their trace was undecided at shutdown")
