"""With a backlog in the batch queue, the export thread stops yielding between slices.

Yielding the GIL between slices protects request latency, but each yield may wait out the
switch interval while a request thread runs: under sustained load the queue filled and spans
were dropped. Past a quarter of the queue, keeping the spans comes first.
"""

from __future__ import annotations

import weakref
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otelfin._exporters import _accounting
from otelfin._exporters._pipeline import ExportPipeline
from otelfin.scrub import _spans


class _Keep(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@pytest.fixture(autouse=True)
def only_these_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipelines other tests left alive must not decide these tests' backlog."""
    monkeypatch.setattr(_accounting, "_live", weakref.WeakSet())


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    calls: list[float] = []
    monkeypatch.setattr(_accounting.time, "sleep", calls.append)
    return calls


def test_a_quarter_full_queue_is_a_backlog() -> None:
    accounts = _accounting._Accounts(queue_size=100)
    assert not _accounting.backlogged()
    for _ in range(25):
        assert accounts.admit(100)
    assert not _accounting.backlogged()  # exactly a quarter: still yielding
    accounts.admit(100)
    assert _accounting.backlogged()
    accounts.reached = accounts.admitted  # the exporter took the queue
    assert not _accounting.backlogged()


def test_the_slices_stop_pausing_while_backlogged(sleeps: list[float]) -> None:
    accounts = _accounting._Accounts(queue_size=8)
    _accounting.pause_between_slices()
    assert sleeps == [_accounting.PAUSE_S]
    for _ in range(3):
        accounts.admit(8)
    _accounting.pause_between_slices()
    assert sleeps == [_accounting.PAUSE_S]  # no second sleep: backlogged
    accounts.reached = accounts.admitted
    _accounting.pause_between_slices()
    assert sleeps == [_accounting.PAUSE_S, _accounting.PAUSE_S]


def test_the_pipeline_scrubber_pauses_through_the_backlog_check() -> None:
    pipeline = ExportPipeline(_Keep(), batch=True)
    try:
        scrubbing = pipeline.guarded._scrubbing
        assert scrubbing._pause is _accounting.pause_between_slices
        assert pipeline.accounts.queue_size == pipeline.queue_size > 0
        # A scrubber built by hand keeps its plain sleep.
        assert _spans.ScrubbingSpanExporter(_Keep())._pause is _spans._sleep_a_moment
    finally:
        pipeline.shutdown()


def test_a_simple_processor_never_counts_as_a_backlog() -> None:
    pipeline = ExportPipeline(_Keep(), batch=False)
    try:
        for _ in range(100):
            pipeline.accounts.admitted += 1
        assert pipeline.accounts.queue_size == 0
        assert not _accounting.backlogged()
    finally:
        pipeline.shutdown()
