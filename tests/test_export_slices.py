"""The export thread scrubs in small slices with a pause between them, so a request thread
waiting for the GIL gets it within ~0.2 ms."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelfin.scrub import _spans


class BatchRecorder(SpanExporter):
    def __init__(self) -> None:
        self.batches: list[list[ReadableSpan]] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append(list(spans))
        return SpanExportResult.SUCCESS


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
