"""Count every request whatever the sampler: unsampled spans that metrics measure are recorded.

A head sampler at 10% makes 90% of SERVER spans non-recording, so no span processor ever sees
them and RED metrics built from spans undercount ten times. :class:`RecordMeasuredSampler`
wraps the configured sampler and turns its ``DROP`` into ``RECORD_ONLY`` for the span kinds
otelfin measures (SERVER and CONSUMER for RED, CLIENT and PRODUCER for the dependency
histogram): those spans are created and reach ``on_end`` of every processor, so the metrics
processor counts them, while their trace flags stay unsampled, so exporters skip them (the SDK's
Batch/Simple processors export sampled spans only) and the sampled flag propagated downstream
is the delegate's. This is the approach proposed for reliable RED metrics in the OpenTelemetry
Java contrib. INTERNAL spans keep the delegate's decision: ``@traced`` calls are counted by
their call observer whether or not the span is sampled.

Cost: an unsampled request's measured spans are real SDK spans (about what a sampled span
costs, minus export); ``configure(metrics_count_unsampled=False)`` keeps the cheap path.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

__all__ = ["MEASURED_KINDS", "RecordMeasuredSampler", "wrap"]

#: The span kinds whose unsampled spans are still recorded for metrics.
MEASURED_KINDS = frozenset({SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.CLIENT, SpanKind.PRODUCER})


class RecordMeasuredSampler(Sampler):
    """The ``delegate``'s decisions, except that a dropped measured span is recorded.

    ``record_all`` records every dropped span, whatever its kind: tail sampling
    (``keep_traces``, :mod:`otelfin._tail`) needs the internal spans of a trace it may keep.
    """

    def __init__(self, delegate: Sampler, *, record_all: bool = False) -> None:
        self.delegate = delegate
        self.record_all = record_all

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is Decision.DROP and (self.record_all or kind in MEASURED_KINDS):
            # A DROP result carries no attributes; the span's own ones (http.route, db.system)
            # are what the metrics read, so they are passed on.
            return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        name = "RecordAll" if self.record_all else "RecordMeasured"
        return f"{name}{{{self.delegate.get_description()}}}"


def wrap(sampler: Sampler, *, record_all: bool = False) -> Sampler:
    """``sampler`` wrapped once (a wrapper is rewrapped only when ``record_all`` changes)."""
    if isinstance(sampler, RecordMeasuredSampler):
        if sampler.record_all == record_all:
            return sampler
        sampler = sampler.delegate
    return RecordMeasuredSampler(sampler, record_all=record_all)
