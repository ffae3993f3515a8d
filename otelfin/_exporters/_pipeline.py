"""The export pipeline: otelfin's one swappable processor on a provider, and the delegate it
routes spans to (the SDK's batch or simple processor over the guarded, counted exporter),
each keeping to its time budget whatever the exporter does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from otelfin import _internal
from otelfin._exporters._accounting import (
    _Accounts,
    _CountingExporter,
    _queue_size,
    pause_between_slices,
)
from otelfin._exporters._contain import GuardedExporter, _contained, _within
from otelfin._exporters._fork import _after_fork, _inherited, _register_multiprocessing_hook
from otelfin._exporters._otlp import DeferredSpanExporter

__all__ = ["EXIT_TIMEOUT_MILLIS", "ExportPipeline", "SwappableSpanProcessor"]


#: How long a process that never called ``otelfin.shutdown()`` may spend flushing spans at exit
#: (the provider's atexit hook), and the default bound when a reconfiguration retires an old
#: exporter. A collector that is down costs at most this much, never its retry schedule.
EXIT_TIMEOUT_MILLIS = 2000
#: The budget of a shutdown that follows a flush still stuck on the exporter.
_STUCK_MILLIS = 100


class ExportPipeline(SpanProcessor):
    """The delegate :class:`SwappableSpanProcessor` routes spans to: the SDK's batch (or simple)
    processor over :class:`GuardedExporter` over the counting layer over the exporter.

    ``force_flush`` and ``shutdown`` keep to their time budget whatever the exporter does; a
    span the full queue cannot take is turned away here and counted (the batch processor would
    silently evict its oldest span instead).
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        batch: bool = True,
        factory: Callable[[], SpanExporter] | None = None,
    ) -> None:
        if not batch and isinstance(exporter, DeferredSpanExporter):
            exporter.build()  # the simple processor exports on the caller's thread: build now
        self.exporter = exporter
        #: Makes a fresh exporter for a forked child (exporters otelfin built itself).
        self.factory = factory
        self.queue_size = _queue_size() if batch else 0
        self.accounts = _Accounts(self.queue_size)
        self.counting = _CountingExporter(exporter, self.accounts)
        #: Scrubs and contains; ``configure()`` hands it the scrub pillar's options. Between
        #: slices it yields the GIL as the encoder does, unless the queue is backing up.
        self.guarded = GuardedExporter(self.counting, pause=pause_between_slices)
        self.processor: SpanProcessor = (
            BatchSpanProcessor(self.guarded, max_queue_size=self.queue_size)
            if batch
            else SimpleSpanProcessor(self.guarded)
        )
        #: False when the SDK processor's ``on_start`` does nothing (the batch and simple
        #: processors' own): the swappable processor then skips forwarding each span start.
        self.starts = _does_something(type(self.processor).on_start)
        self._flushing: threading.Thread | None = None
        _after_fork(self, ExportPipeline._forked)
        _register_multiprocessing_hook(self)

    def _forked(self) -> None:
        """In a forked child: the SDK's batch processor starts a new worker thread and empties
        its queue there (its own at-fork hook); the counts follow, and an exporter otelfin
        built is replaced, since the OTLP exporter's HTTP session would share the parent's
        pooled connection (and its pool's lock). A deferred exporter stays deferred."""
        self.accounts.forget_queue()
        if self.factory is not None and not self.accounts.closed:
            _inherited.append(self.exporter)
            fresh: SpanExporter
            if self.queue_size and isinstance(self.exporter, DeferredSpanExporter):
                fresh = DeferredSpanExporter(self.factory)
            else:
                fresh = self.factory()
            self.exporter = self.counting.inner = fresh

    def _flush_at_exit(self) -> None:
        if not self.accounts.closed:
            self.force_flush(EXIT_TIMEOUT_MILLIS)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.queue_size:
            context = span.context
            if not (context and context.trace_flags.sampled):
                return  # recorded but not sampled: the batch processor would not queue it
            if not self.accounts.admit(self.queue_size):
                return
        self.processor.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if not self.queue_size:  # a simple processor holds nothing: its flush returns at once
            return bool(self.processor.force_flush(timeout_millis))
        flush = threading.Thread(
            target=_contained(lambda: self.processor.force_flush(timeout_millis), "flush"),
            name="otelfin-flush",
            daemon=True,
        )
        self._flushing = flush
        flush.start()
        flush.join(max(0, timeout_millis) / 1000)
        return not flush.is_alive()

    def shutdown(self) -> None:
        self.close(EXIT_TIMEOUT_MILLIS)

    def close(self, timeout_millis: float, *, shutdown_exporter: bool = True) -> bool:
        """Flush and shut down within ``timeout_millis``; what is left is counted as dropped.

        ``shutdown_exporter=False`` flushes only (the exporter object is reused elsewhere).
        """
        acc = self.accounts
        stuck = self._flushing
        if stuck is not None and stuck.is_alive():
            # An earlier flush (the exit hook's, a signal's) is still waiting on the exporter:
            # waiting again would only add its budget to the exit time.
            timeout_millis = min(timeout_millis, _STUCK_MILLIS)
        acc.deadline = time.monotonic() + max(0.0, timeout_millis) / 1000

        def finish() -> None:
            self.processor.force_flush(int(max(timeout_millis, 0)))
            if shutdown_exporter:
                self.processor.shutdown()

        done = _within(finish, timeout_millis, "shutdown")
        acc.close(counted_queue=self.queue_size > 0)
        if not done and shutdown_exporter:
            # Tell the exporter to stop (the OTLP exporter then abandons its retry wait), off
            # this thread: its own shutdown may wait for the export in flight.
            _within(self.exporter.shutdown, 1, "exporter_shutdown")
        return done


def _nothing(self: object, span: object, parent_context: object = None) -> None:
    pass


def _does_something(method: object) -> bool:
    """False for a method whose body is ``pass`` (its code is that of :func:`_nothing`);
    anything else, a docstring-only body included, counts as doing something. Decided from the
    code itself, so an SDK release whose ``on_start`` starts doing something is forwarded again
    without a change here."""
    code = getattr(method, "__code__", None)
    return code is None or code.co_code != _nothing.__code__.co_code


class SwappableSpanProcessor(SpanProcessor):
    """otelfin's single processor on a provider; its delegate changes on reconfigure."""

    def __init__(self) -> None:
        self.delegate: SpanProcessor | None = None
        #: The delegate when span starts must reach it (see :attr:`ExportPipeline.starts`).
        self._start_to: SpanProcessor | None = None

    def swap(
        self,
        delegate: SpanProcessor | None,
        *,
        shutdown_old: bool = True,
        timeout_millis: float = EXIT_TIMEOUT_MILLIS,
    ) -> None:
        """Route spans to ``delegate``; the old delegate is flushed and (by default) shut down,
        within ``timeout_millis``.

        ``shutdown_old=False`` is for an old delegate whose exporter the new one reuses.
        """
        old, self.delegate = self.delegate, delegate
        self._start_to = delegate if getattr(delegate, "starts", True) else None
        if old is not None:
            _shutdown_processor(old, timeout_millis, shutdown_exporter=shutdown_old)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        delegate = self._start_to
        if delegate is not None:
            try:
                delegate.on_start(span, parent_context=parent_context)
            except Exception as exc:
                _internal.report("processor.on_start", exc)

    def on_end(self, span: ReadableSpan) -> None:
        delegate = self.delegate
        if delegate is not None:
            try:
                delegate.on_end(span)
            except Exception as exc:
                _internal.report("processor.on_end", exc)

    def shutdown(self) -> None:
        self.swap(None)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        delegate = self.delegate
        if delegate is None:
            return True
        try:
            return bool(delegate.force_flush(timeout_millis))
        except Exception as exc:
            _internal.report("processor.force_flush", exc)
            return False


def _shutdown_processor(
    processor: SpanProcessor, timeout_millis: float, *, shutdown_exporter: bool = True
) -> None:
    close = getattr(processor, "close", None)
    if callable(close):  # otelfin's pipeline, or the tail-sampling processor in front of it
        close(timeout_millis, shutdown_exporter=shutdown_exporter)
        return
    try:
        processor.force_flush()
    except Exception as exc:
        _internal.report("processor.force_flush", exc)
    if not shutdown_exporter:
        return
    try:
        processor.shutdown()
    except Exception as exc:
        _internal.report("processor.shutdown", exc)
