"""Span starts reach the export delegate only when its ``on_start`` does something.

The SDK's batch and simple processors do nothing on start, so otelfin's swappable processor
skips that call for its export pipeline; a delegate that acts on starts (tail sampling) still
gets every one.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from otelfin._exporters._pipeline import ExportPipeline, SwappableSpanProcessor, _does_something


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


class _Counting(SpanProcessor):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        self.started.append(span.name)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)


def test_empty_bodies_are_told_apart_from_real_ones() -> None:
    def nothing(self: object, span: object, parent_context: object = None) -> None:
        pass

    def docstring_only(self: object, span: object, parent_context: object = None) -> None:
        """Nothing, but compiled differently: forwarded, which is the safe side."""

    def works(self: object, span: object, parent_context: object = None) -> None:
        print(span)

    assert not _does_something(nothing)
    assert _does_something(docstring_only)
    assert not _does_something(BatchSpanProcessor.on_start)
    assert not _does_something(SimpleSpanProcessor.on_start)
    assert _does_something(works)
    assert _does_something(_Counting.on_start)
    assert _does_something(len)  # no Python code to read: forwarded, to be safe


def test_the_export_pipeline_skips_starts_and_still_exports() -> None:
    exporter = _Keep()
    pipeline = ExportPipeline(exporter, batch=False)
    assert pipeline.starts is False  # the SDK simple processor: on_start is pass
    swappable = SwappableSpanProcessor()
    swappable.swap(pipeline)
    provider = TracerProvider()
    provider.add_span_processor(swappable)
    with provider.get_tracer("t").start_as_current_span("pay"):
        pass
    assert [s.name for s in exporter.spans] == ["pay"]
    swappable.swap(None)


def test_a_delegate_that_acts_on_starts_gets_every_start() -> None:
    delegate = _Counting()
    swappable = SwappableSpanProcessor()
    swappable.swap(delegate, shutdown_old=False)
    provider = TracerProvider()
    provider.add_span_processor(swappable)
    tracer = provider.get_tracer("t")
    for name in ("a", "b"):
        with tracer.start_as_current_span(name):
            pass
    assert delegate.started == ["a", "b"]
    assert delegate.ended == ["a", "b"]
    # Swapped to a pipeline and back: starts follow the delegate of the moment.
    swappable.swap(ExportPipeline(_Keep(), batch=False), shutdown_old=False)
    with tracer.start_as_current_span("c"):
        pass
    swappable.swap(delegate, shutdown_old=False)
    with tracer.start_as_current_span("d"):
        pass
    assert delegate.started == ["a", "b", "d"]
