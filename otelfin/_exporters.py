"""Span export: the JSONL file exporter, exporter selection, and the guarded processor.

Every exporter otelfin uses sits behind :class:`GuardedExporter`, which scrubs spans (card
numbers, secrets: through :class:`otelfin.scrub.ScrubbingSpanExporter`, once) and contains
exporter failures, and behind one
:class:`SwappableSpanProcessor`, so ``configure()`` can be called again without stacking
processors on the provider.
"""

from __future__ import annotations

import base64
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import IO, Any

import orjson
from google.protobuf import json_format
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link

from otelfin import _internal
from otelfin.scrub import ScrubbingSpanExporter

__all__ = [
    "EXIT_TIMEOUT_MILLIS",
    "ExportPipeline",
    "GuardedExporter",
    "OTLPSpanExporterFactory",
    "JsonlSpanExporter",
    "SwappableSpanProcessor",
    "otlp_json_request",
    "span_to_otlp_json",
]


# OTLP/JSON (the OTLP specification's JSON encoding) is the protobuf JSON mapping with three
# exceptions; the official encoder plus ``json_format`` does the rest (flags, schemaUrl, dropped
# counts, NaN/Infinity as the strings proto3 JSON defines, bytes as base64, int64 as text):
# enums as integers (``use_integers_for_enums``), lowerCamelCase names (the default), and trace
# and span ids as hex, not base64 (:func:`_hex_ids`).
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _hex(value: Any) -> Any:
    return base64.b64decode(value).hex() if isinstance(value, str) else value


def _hex_ids(span: dict[str, Any]) -> dict[str, Any]:
    for key in ("traceId", "spanId", "parentSpanId"):
        if key in span:
            span[key] = _hex(span[key])
    for link in span.get("links", ()):
        for key in ("traceId", "spanId"):
            if key in link:
                link[key] = _hex(link[key])
    # Readers index ``attributes`` and ``status.code`` directly, as the earlier encoder always
    # wrote them; proto3 JSON leaves an empty list and a zero (UNSET) out. Both parse as is.
    span.setdefault("attributes", [])
    span.setdefault("status", {}).setdefault("code", 0)
    for item in (*span.get("events", ()), *span.get("links", ())):
        item.setdefault("attributes", [])
    return span


def _fits_int64(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, (list, tuple)):
            return all(_fits_int64(v) for v in value)
        return True
    return _INT64_MIN <= value <= _INT64_MAX


def _int64_safe(attributes: Any) -> Any:
    """``attributes`` with integers beyond int64 as their decimal text (None when none are).

    OTLP's ``intValue`` is an int64; the SDK accepts any Python int, and the encoder drops an
    attribute it cannot encode (logging an error). Text keeps the value, whole.
    """
    if not attributes or all(_fits_int64(v) for v in attributes.values()):
        return None

    def fix(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if all(_fits_int64(v) for v in value):
                return value
            return tuple(str(v) for v in value)  # an OTLP array holds one type
        return value if _fits_int64(value) else str(value)

    return {k: fix(v) for k, v in attributes.items()}


def _encodable(span: ReadableSpan) -> ReadableSpan:
    """``span`` itself, or a copy whose out-of-range integers became text."""
    attributes = _int64_safe(span.attributes)
    events = [(e, _int64_safe(e.attributes)) for e in span.events]
    links = [(link, _int64_safe(link.attributes)) for link in span.links]
    resource_attributes = _int64_safe(span.resource.attributes)
    if (
        attributes is None
        and resource_attributes is None
        and all(fixed is None for _, fixed in events)
        and all(fixed is None for _, fixed in links)
    ):
        return span
    resource = span.resource
    if resource_attributes is not None:
        resource = Resource(resource_attributes, resource.schema_url)
    return ReadableSpan(
        name=span.name,
        context=span.get_span_context(),
        parent=span.parent,
        resource=resource,
        attributes=attributes if attributes is not None else span.attributes,
        events=[e if fixed is None else Event(e.name, fixed, e.timestamp) for e, fixed in events],
        links=[link if fixed is None else Link(link.context, fixed) for link, fixed in links],
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def otlp_json_request(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """An OTLP/JSON ``ExportTraceServiceRequest`` (``{"resourceSpans": [...]}``) for ``spans``."""
    message = encode_spans([_encodable(s) for s in spans])
    request: dict[str, Any] = json_format.MessageToDict(message, use_integers_for_enums=True)
    for resource_spans in request.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                _hex_ids(span)
    return request


def span_to_otlp_json(span: ReadableSpan) -> dict[str, Any]:
    """One span in the OTLP/JSON shape (hex ids, nanosecond times as strings)."""
    message = encode_spans([_encodable(span)]).resource_spans[0].scope_spans[0].spans[0]
    return _hex_ids(json_format.MessageToDict(message, use_integers_for_enums=True))


class JsonlSpanExporter(SpanExporter):
    """Writes each export batch as one OTLP/JSON ``{"resourceSpans": [...]}`` line.

    The same line format as the OpenTelemetry Collector's file exporter, so the file can be
    replayed into a collector or read by ``otelfin`` itself. Encoded by the SDK's own OTLP
    encoder; only the id encoding is adapted (see :func:`otlp_json_request`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        _after_fork(self, JsonlSpanExporter._forked)

    def _forked(self) -> None:
        # The export thread may have held the lock, mid-write, when the parent forked: the
        # child starts over with a new lock and its own descriptor (opened at its first
        # export); the inherited one is left untouched, never flushed.
        self._lock = threading.Lock()
        if self._file is not None:
            _inherited.append(self._file)
            self._file = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = orjson.dumps(otlp_json_request(spans)) + b"\n"
        with self._lock:
            if self._file is None:
                directory = os.path.dirname(self.path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                # Unbuffered: one write(2) a line on an O_APPEND file, so forked workers
                # appending to the same file never split each other's lines.
                self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open
            view = memoryview(line)
            while view:
                view = view[self._file.write(view) :]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            if self._file is not None:
                self._file.flush()
        return True


class _Contained(SpanExporter):
    """Shutdown and flush of a wrapped exporter ``inner``, its failures contained and counted
    (export is each subclass's own)."""

    inner: SpanExporter

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception as exc:
            _internal.report(f"exporter.shutdown[{type(self.inner).__name__}]", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return bool(self.inner.force_flush(timeout_millis))
        except Exception as exc:
            _internal.report(f"exporter.force_flush[{type(self.inner).__name__}]", exc)
            return False


class GuardedExporter(_Contained):
    """Scrubs spans once, then exports; an exporter failure is counted, logged once, contained.

    Scrubbing is :class:`~otelfin.scrub.ScrubbingSpanExporter`'s, which steps aside when the
    spans were scrubbed as they ended already.
    """

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self._scrubbing = ScrubbingSpanExporter(inner, only_unscrubbed=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            return self._scrubbing.export(spans)
        except Exception as exc:
            _internal.report(f"exporter.export[{type(self.inner).__name__}]", exc)
            return SpanExportResult.FAILURE


#: Objects inherited across fork() that a child must not touch again (a file object whose
#: lock or buffer was mid-write in the parent; an HTTP session sharing the parent's socket).
_inherited: list[Any] = []
_fork_hooks: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()
_fork_hook_installed = False


def _after_fork(obj: Any, hook: Callable[[Any], None]) -> None:
    """Call ``hook(obj)`` in every child forked while ``obj`` is alive (one at-fork handler for
    all: ``os.register_at_fork`` has no way to unregister, so per-object ones would pile up)."""
    global _fork_hook_installed
    _fork_hooks[obj] = hook
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        _fork_hook_installed = True
        os.register_at_fork(after_in_child=_run_fork_hooks)


def _run_fork_hooks() -> None:
    for obj, hook in list(_fork_hooks.items()):
        try:
            hook(obj)
        except Exception as exc:
            _internal.report("exporter.after_fork", exc)


#: How long a process that never called ``otelfin.shutdown()`` may spend flushing spans at exit
#: (the provider's atexit hook), and the default bound when a reconfiguration retires an old
#: exporter. A collector that is down costs at most this much, never its retry schedule.
EXIT_TIMEOUT_MILLIS = 2000
#: The budget of a shutdown that follows a flush still stuck on the exporter.
_STUCK_MILLIS = 100


def _within(call: Callable[[], Any], timeout_millis: float, name: str) -> bool:
    """Run ``call`` on a daemon thread and wait at most ``timeout_millis``; True if it finished.

    The SDK's ``BatchSpanProcessor.force_flush`` ignores its timeout and its ``shutdown`` waits
    for the export in flight, and an OTLP export retries for up to its own 10 s timeout per
    batch, so a hanging collector made ``shutdown(timeout_millis=1000)`` take 49 s. A thread
    left behind here is a daemon: it never delays the exit, and exports it attempts after the
    deadline fail at once (:class:`_Accounts`).
    """
    if timeout_millis <= 0:
        return False
    worker = threading.Thread(target=_contained(call, name), name=f"otelfin-{name}", daemon=True)
    worker.start()
    worker.join(timeout_millis / 1000)
    return not worker.is_alive()


def _contained(call: Callable[[], Any], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            call()
        except Exception as exc:
            _internal.report(f"processor.{name}", exc)

    return run


def _queue_size() -> int:
    # The BatchSpanProcessor reads the same variable; otelfin passes the value explicitly so
    # its own gate (:class:`ExportPipeline`) knows the bound.
    try:
        size = int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "2048"))
    except ValueError:
        return 2048
    return size if size > 0 else 2048


class _Accounts:
    """Where every span handed to one pipeline went: exported, failed, dropped or in flight.

    ``admitted`` counts spans passed on to the batch processor (an ``itertools.count``: its
    ``next()`` is atomic, so the per-span cost is one call, no lock); ``reached`` counts spans
    the exporter received plus the ones the gate turned away, so ``admitted - reached`` is what
    the batch processor holds. After :meth:`close` nothing more is counted: what was still
    queued or in flight is counted once, there, as dropped at shutdown.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
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
            _internal.report(f"exporter.export[{type(self.inner).__name__}]", exc)
        with acc.lock:
            if acc.closed:
                return result or SpanExportResult.FAILURE  # counted by close()
            acc.in_flight -= n
        if result is SpanExportResult.SUCCESS:
            return result
        reason = "exception" if result is None else "failure"
        _internal.span_export_failed(reason, type(self.inner).__name__)
        _internal.spans_dropped("export_failed", n, f"{type(self.inner).__name__} failed")
        return SpanExportResult.FAILURE


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
        self.exporter = exporter
        #: Makes a fresh exporter for a forked child (exporters otelfin built itself).
        self.factory = factory
        self.accounts = _Accounts()
        self.counting = _CountingExporter(exporter, self.accounts)
        guarded = GuardedExporter(self.counting)
        self.queue_size = _queue_size() if batch else 0
        self.processor: SpanProcessor = (
            BatchSpanProcessor(guarded, max_queue_size=self.queue_size)
            if batch
            else SimpleSpanProcessor(guarded)
        )
        self._flushing: threading.Thread | None = None
        _after_fork(self, ExportPipeline._forked)
        _register_multiprocessing_hook(self)

    def _forked(self) -> None:
        """In a forked child: the SDK's batch processor starts a new worker thread and empties
        its queue there (its own at-fork hook); the counts follow, and an exporter otelfin
        built is replaced, since the OTLP exporter's HTTP session would share the parent's
        pooled connection (and its pool's lock)."""
        self.accounts.forget_queue()
        if self.factory is not None and not self.accounts.closed:
            _inherited.append(self.exporter)
            self.exporter = self.counting.inner = self.factory()

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


def _register_multiprocessing_hook(pipeline: ExportPipeline) -> None:
    import multiprocessing.util

    multiprocessing.util.register_after_fork(pipeline, _in_multiprocessing_child)


def _in_multiprocessing_child(pipeline: ExportPipeline) -> None:
    """In a fork-started ``multiprocessing`` worker, flush when the worker ends normally.

    A worker never runs ``atexit`` (it leaves through ``os._exit``), so neither the provider's
    exit hook nor otelfin's own flushes its spans; ``multiprocessing``'s finalizers do run.
    ``Pool.terminate()`` (the end of a ``with Pool()`` block) ends idle workers with SIGTERM
    instead: the worker inherited otelfin's SIGTERM handler (:mod:`otelfin._lifecycle`), which
    flushes before the signal takes its default course. Without both a pool's spans were lost.
    """
    import multiprocessing.util

    multiprocessing.util.Finalize(None, pipeline._flush_at_exit, exitpriority=10)


class SwappableSpanProcessor(SpanProcessor):
    """otelfin's single processor on a provider; its delegate changes on reconfigure."""

    def __init__(self) -> None:
        self.delegate: SpanProcessor | None = None

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
        if old is not None:
            _shutdown_processor(old, timeout_millis, shutdown_exporter=shutdown_old)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        delegate = self.delegate
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


_OTLP_PROTOCOLS = ("http/protobuf", "grpc")


def otlp_protocol() -> str:
    """The OTLP protocol for spans: ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, then
    ``OTEL_EXPORTER_OTLP_PROTOCOL``, else ``http/protobuf`` (the specification's default).

    ``http/json`` has no exporter in OpenTelemetry Python; asking for it (or a typo) is a
    ``ValueError`` rather than a silent switch to another protocol.
    """
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = (os.environ.get(name) or "").strip().lower()
        if value:
            if value not in _OTLP_PROTOCOLS:
                raise ValueError(f"{name}={value!r} is not supported: use grpc or http/protobuf")
            return value
    return "http/protobuf"


class OTLPSpanExporterFactory:
    """Builds the OTLP exporter ``traces_exporter="otlp"`` uses (settings from ``OTEL_*``):
    OTLP/HTTP, or OTLP/gRPC when the protocol variables ask for it. Called again in a forked
    child, which must not share the parent's connection."""

    def __call__(self) -> SpanExporter:
        if otlp_protocol() == "grpc":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as GrpcSpanExporter,
                )
            except ImportError as exc:
                raise ValueError(
                    "OTLP over gRPC was asked for (OTEL_EXPORTER_OTLP_PROTOCOL=grpc) but "
                    f"its exporter is not installed ({exc}); pip install 'otelfin[otlp-grpc]', "
                    "or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf for OTLP over HTTP"
                ) from None
            return GrpcSpanExporter()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()


def make_exporter(kind: str, spans_file: str | None) -> SpanExporter | None:
    """An exporter by name: ``none``, ``console``, ``jsonl`` or ``otlp``."""
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if kind == "jsonl":
        return JsonlSpanExporter(spans_file or "otelfin-spans.jsonl")
    if kind == "otlp":
        return OTLPSpanExporterFactory()()
    raise ValueError(f"unknown traces exporter {kind!r} (expected none, console, jsonl or otlp)")
