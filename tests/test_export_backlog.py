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
    """Pipelines other tests left alive must not decide these tests' backlog (conftest resets
    the record of busy pauses)."""
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


class _Clock:
    """``time.perf_counter`` and ``time.sleep`` for the pauses: each sleep takes ``next`` s."""

    def __init__(self) -> None:
        self.now = 0.0
        self.next = _accounting.PAUSE_S
        self.sleeps = 0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += self.next


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(_accounting.time, "perf_counter", fake.perf_counter)
    monkeypatch.setattr(_accounting.time, "sleep", fake.sleep)
    return fake


def _pauses_slept(clock: _Clock, pauses: int) -> list[int]:
    """Which of ``pauses`` calls slept (1) or were left out (0)."""
    slept = []
    for _ in range(pauses):
        before = clock.sleeps
        _accounting.pause_between_slices()
        slept.append(clock.sleeps - before)
    return slept


def test_pauses_that_get_the_gil_back_in_time_all_sleep(clock: _Clock) -> None:
    clock.next = _accounting._BUSY_S / 2
    assert _pauses_slept(clock, 40) == [1] * 40


def test_busy_pauses_leave_out_the_next_ones_doubling(clock: _Clock) -> None:
    # Every pause found the request thread busy (saturated): 1, 3, 7, 15, ... left out.
    clock.next = _accounting._BUSY_S * 2
    slept = _pauses_slept(clock, 1 + 1 + 1 + 3 + 1 + 7 + 1 + 15 + 1)
    assert slept == [1, 0, 1, 0, 0, 0, 1] + [0] * 7 + [1] + [0] * 15 + [1]
    # and never more than _MOST_SKIPPED in a row
    slept = _pauses_slept(clock, 400)
    runs = "".join(map(str, slept)).split("1")
    assert max(len(run) for run in runs) == _accounting._MOST_SKIPPED


def test_a_pause_in_time_ends_the_leaving_out(clock: _Clock) -> None:
    clock.next = _accounting._BUSY_S * 2
    assert _pauses_slept(clock, 5) == [1, 0, 1, 0, 0]
    clock.next = _accounting.PAUSE_S  # the request thread went idle: the pause came back fast
    assert _pauses_slept(clock, 2) == [0, 1]  # the last one left out, then a pause in time
    assert _pauses_slept(clock, 10) == [1] * 10  # and the pauses are back, every one
