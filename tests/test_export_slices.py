"""The export thread works in small pieces: export batches of 64 spans, scrubbing in slices
with a pause between them, so a request thread never waits long for the GIL."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otelfin
from otelfin.scrub import _spans


class BatchRecorder(SpanExporter):
    def __init__(self) -> None:
        self.batches: list[list[ReadableSpan]] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append(list(spans))
        return SpanExportResult.SUCCESS


def _make_spans(n: int) -> None:
    @otelfin.traced(name="step")
    def step() -> None:
        return None

    for _ in range(n):
        step()


def test_export_batches_hold_at_most_64_spans_by_default() -> None:
    """200 spans reach the exporter whole, in batches of at most 64 (the SDK default is 512)."""
    exporter = BatchRecorder()
    otelfin.configure("svc", span_exporter=exporter)
    _make_spans(200)
    otelfin.shutdown()
    sizes = [len(b) for b in exporter.batches]
    assert sum(sizes) == 200
    assert max(sizes) <= 64 and len(sizes) >= 4, sizes


def test_export_batch_size_follows_the_sdk_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_BSP_MAX_EXPORT_BATCH_SIZE, when set, decides the batch size as in the SDK."""
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "150")
    exporter = BatchRecorder()
    otelfin.configure("svc", span_exporter=exporter)
    _make_spans(300)
    otelfin.shutdown()
    sizes = [len(b) for b in exporter.batches]
    assert sum(sizes) == 300
    assert max(sizes) > 64 and max(sizes) <= 150, sizes


def test_scrubbing_exporter_works_in_slices_and_masks_every_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """100 spans with card numbers: every one masked, order kept, and the export thread pauses
    between slices of 32 (3 pauses), handing the GIL to waiting threads."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    for i in range(100):
        with tracer.start_as_current_span(f"s{i}", attributes={"note": "4111 1111 1111 1111"}):
            pass
    raw = memory.get_finished_spans()
    pauses: list[float] = []
    monkeypatch.setattr(_spans.time, "sleep", pauses.append)
    out = BatchRecorder()
    _spans.ScrubbingSpanExporter(out).export(raw)
    (batch,) = out.batches
    assert [s.name for s in batch] == [f"s{i}" for i in range(100)]
    assert all("4111 1111 1111 1111" not in str(s.attributes["note"]) for s in batch)
    assert all(str(s.attributes["note"]).endswith("1111") for s in batch)
    assert len(pauses) == 3 and all(0 < p <= 0.001 for p in pauses)
