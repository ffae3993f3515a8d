"""Where every span handed to the export pipeline went: exported, failed, dropped or in
flight, counted at the one seam the SDK leaves open (``otelfin_spans_dropped_total``,
``otelfin_span_export_failures_total``)."""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otelfin import _internal, _settings
from otelfin._exporters._contain import _Contained, exporter_name

__all__: list[str] = []


def _queue_size() -> int:
    # The BatchSpanProcessor reads the same variable; otelfin passes the value explicitly so
    # its own gate (:class:`ExportPipeline`) knows the bound.
    try:
        size = int(_settings.env_value("OTEL_BSP_MAX_QUEUE_SIZE") or "2048")
    except ValueError:
        return 2048
    return size if size > 0 else 2048


#: Every live pipeline's accounts, for :func:`backlogged` (weak: a retired pipeline goes).
_live: weakref.WeakSet[_Accounts] = weakref.WeakSet()
#: The pause between slices: long enough for a waiting thread to wake and take the GIL.
PAUSE_S = 0.0001


def backlogged() -> bool:
    """True while a pipeline's batch queue is more than a quarter full.

    The export thread yields the GIL between slices of a batch (``_sliced``, the span
    scrubber) so request threads are not held up; each yield may wait out the interpreter's
    switch interval (5 ms) while a request thread runs. Under sustained load that halves the
    export thread's throughput, the queue fills and spans are dropped: 25% of them under a
    saturating ``wrk`` in the e2e benchmark. With a backlog, keeping the spans comes first:
    the slices run back to back until the queue drains below a quarter.
    """
    for accounts in list(_live):
        size = accounts.queue_size
        if size and not accounts.closed and accounts.admitted - accounts.reached > size // 4:
            return True
    return False


class _Pauses:
    """How many of the next pauses to leave out while the request threads are saturated.

    A pause pays off when a request thread is waiting for the GIL and soon goes idle again
    (awaiting I/O): it gets the GIL within a slice instead of a switch interval, which is what
    keeps the open-loop p99 down. A pause that gets the GIL back only after :data:`_BUSY_S` (ten
    pauses' worth) found the request threads busy all that time: requests are queueing behind
    one another and their latency is the queue's. Such a pause buys no latency and costs CPU:
    while it waits, the export thread is woken at every GIL release of the busy thread (each
    socket call releases it), only to find the GIL taken again. Serving
    ``benchmarks/e2e_overhead.py``'s app at saturation (a per-thread probe of ``/proc``), the
    pauses took 0.6-2.5 ms (median), the export thread made 1.3 voluntary context switches a
    request against 0.2 without pauses, and the process used 1-22% more CPU a request (6 paired
    runs). So after a busy pause the next pauses are left out, doubling (1, 3, 7, ...,
    :data:`_MOST_SKIPPED`) while pauses stay busy; the first pause that gets the GIL back in time
    ends it. The study itself, 4 interleaved repetitions against the code before: added CPU a
    request 634 us against 808, open-loop p99 7.9 ms against 8.5 (and in the probe, 0.5
    voluntary switches a request against 1.3). The counters are plain attributes: export threads
    racing on them only move a pause.
    """

    skip = 0
    streak = 0


_pauses = _Pauses()
#: A pause longer than this found the request threads busy (see :class:`_Pauses`).
_BUSY_S = 0.001
#: The most pauses left out after a busy one (a 512-span batch has ~37).
_MOST_SKIPPED = 63


def pause_between_slices() -> None:
    """Hand the GIL to a waiting thread for a moment between two slices of a batch (encoding,
    scrubbing), unless a batch queue is backing up (:func:`backlogged`: then keeping the
    spans comes first) or the request threads are saturated (:class:`_Pauses`)."""
    pauses = _pauses
    if pauses.skip > 0:
        pauses.skip -= 1
        return
    if backlogged():
        return
    started = time.perf_counter()
    time.sleep(PAUSE_S)
    if time.perf_counter() - started >= _BUSY_S:
        pauses.streak = min(2 * pauses.streak + 1, _MOST_SKIPPED)
        pauses.skip = pauses.streak
    else:
        pauses.streak = 0


class _Accounts:
    """Where every span handed to one pipeline went: exported, failed, dropped or in flight.

    ``admitted`` counts spans passed on to the batch processor (an ``itertools.count``: its
    ``next()`` is atomic, so the per-span cost is one call, no lock); ``reached`` counts spans
    the exporter received plus the ones the gate turned away, so ``admitted - reached`` is what
    the batch processor holds. After :meth:`close` nothing more is counted: what was still
    queued or in flight is counted once, there, as dropped at shutdown.
    """

    def __init__(self, queue_size: int = 0) -> None:
        self.lock = threading.Lock()
        #: The batch queue's bound (0: no queue, a simple processor).
        self.queue_size = queue_size
        _live.add(self)
        self.counter = itertools.count(1)
        self.admitted = 0
        self.reached = 0
        self.in_flight = 0
        self.deadline: float | None = None
        self.closed = False

    def admit(self, queue_size: int) -> bool:
        self.admitted = admitted = next(self.counter)
        if admitted - self.reached <= queue_size:
            return True
        with self.lock:
            self.reached += 1
        _internal.spans_dropped("queue_full", 1, "the export queue is full")
        return False

    def close(self, counted_queue: bool) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            queued = max(0, self.admitted - self.reached) if counted_queue else 0
            in_flight = self.in_flight
        if in_flight:
            _internal.span_export_failed("timeout", "still running at the shutdown deadline")
        _internal.spans_dropped("shutdown", queued + in_flight, "not exported by the deadline")

    def forget_queue(self) -> None:
        """After a fork: the batch processor empties its queue in the child; so do the counts."""
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        self.admitted = self.reached = self.in_flight = 0


class _CountingExporter(_Contained):
    """Counts failed exports and the spans they lose; after the shutdown deadline, fails at once.

    The SDK's batch processor keeps its drops to itself (a log line and, if enabled, an
    internal OpenTelemetry metric), so otelfin counts at this seam: every result, exception and
    late export, by reason (``otelfin_span_export_failures_total``,
    ``otelfin_spans_dropped_total``).
    """

    def __init__(self, inner: SpanExporter, accounts: _Accounts) -> None:
        self.inner = inner
        self.accounts = accounts

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        n = len(spans)
        acc = self.accounts
        with acc.lock:
            if acc.closed:
                return SpanExportResult.FAILURE  # counted by close()
            acc.reached += n
            late = acc.deadline is not None and time.monotonic() >= acc.deadline
            if not late:
                acc.in_flight += n
        if late:
            _internal.spans_dropped("shutdown", n, "the shutdown deadline has passed")
            return SpanExportResult.FAILURE
        result: SpanExportResult | None = None
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            _internal.report(f"exporter.export[{exporter_name(self.inner)}]", exc)
        with acc.lock:
            if acc.closed:
                return result or SpanExportResult.FAILURE  # counted by close()
            acc.in_flight -= n
        if result is SpanExportResult.SUCCESS:
            return result
        reason = "exception" if result is None else "failure"
        _internal.span_export_failed(reason, exporter_name(self.inner))
        _internal.spans_dropped("export_failed", n, f"{exporter_name(self.inner)} failed")
        return SpanExportResult.FAILURE
