"""Log lines as OTLP log records (``OTEL_LOGS_EXPORTER=otlp``), beside the JSON lines.

:class:`OtlpForward` is a processor placed after the chain has masked and correlated the event
(just before it is rendered): the OTLP record carries what the JSON line carries, already
scrubbed. ``event`` is the body, ``level`` the severity, the line's ``trace_id``/``span_id``
the record's trace context (for a crash line logged after its request's span ended: that
request's), every other field (``error_code``, ``logger``, ``exception``, the caller's) an
attribute of the same name; ``service_name`` is the resource's ``service.name``.

:class:`LogShipper` batches records to the official OTLP exporter on one daemon thread. Its
queue is bounded (``OTEL_BLRP_MAX_QUEUE_SIZE``, 2048); nothing is lost without being counted
in ``otelfin_logs_dropped_total{reason}``: ``queue_full`` (the collector is slower than the
service), ``export_failed`` (the exporter gave up: it retries a refused connection or a 503
with backoff for up to its timeout, ``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s), ``shutdown`` (still
queued at the shutdown deadline). A collector down for less than the exporter's timeout loses
nothing: the batch is retried and sent once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from otelfin import _internal, _otlp

__all__ = ["LogShipper", "OtlpForward"]

_SEVERITY = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}
# Fields that have a place of their own in an OTLP log record (or its resource).
_OWN_PLACE = frozenset(("timestamp", "level", "event", "service_name", "trace_id", "span_id"))
_INT64 = 2**63


def _queue_size() -> int:
    from otelfin._settings import env_value

    try:
        size = int(env_value("OTEL_BLRP_MAX_QUEUE_SIZE") or 2048)
    except ValueError:
        return 2048
    return size if size > 0 else 2048


def _attribute(value: Any) -> Any:
    """An OTLP attribute value: text, bool, int64 and float as they are; anything else as its
    JSON text (nested fields, lists, big integers), so the encoder never refuses a record."""
    if isinstance(value, (str, bool, float)):
        return value
    if isinstance(value, int) and -_INT64 <= value < _INT64:
        return value
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return str(value)


class LogShipper:
    """A bounded queue of log records and one thread exporting them in batches."""

    def __init__(
        self,
        factory: Callable[[], Any],
        *,
        build: Callable[[Any], Any] | None = None,
        queue_size: int | None = None,
        batch_size: int = 512,
        delay_seconds: float = 1.0,
    ) -> None:
        self.factory = factory
        #: Turns a queued item into what the exporter takes (set by :class:`OtlpForward`).
        self.build = build
        self.queue_size = queue_size or _queue_size()
        self.batch_size = batch_size
        self.delay = delay_seconds
        self._start(factory())

    def _start(self, exporter: Any) -> None:
        self.exporter = exporter
        self.lock = threading.Lock()
        self.queue: deque[Any] = deque()
        self.in_flight = 0
        self.closed = False
        self.wake = threading.Event()
        self.idle = threading.Condition(self.lock)
        self.thread = threading.Thread(target=self._run, name="otelfin-otlp-logs", daemon=True)
        self.thread.start()

    def forked(self) -> None:
        """In a forked child: a new queue, thread and exporter (the parent's HTTP session and
        lock are not the child's); the parent's queued records stay the parent's."""
        if not self.closed:
            self._start(self.factory())

    def put(self, record: Any) -> None:
        """Queue one record; counted as dropped when the queue is full or shut."""
        with self.lock:
            if self.closed:
                reason = "shutdown"
            elif len(self.queue) >= self.queue_size:
                reason = "queue_full"
            else:
                self.queue.append(record)
                if len(self.queue) >= self.batch_size:
                    self.wake.set()
                return
        _internal.logs_dropped(reason, 1, "the OTLP log queue is full or shut")

    def _run(self) -> None:
        while True:
            self.wake.wait(self.delay)
            self.wake.clear()
            while True:
                with self.lock:
                    if not self.queue:
                        self.idle.notify_all()
                        break
                    count = min(self.batch_size, len(self.queue))
                    batch = [self.queue.popleft() for _ in range(count)]
                    self.in_flight = count
                self._export(batch)
                with self.lock:
                    self.in_flight = 0
            if self.closed:
                return

    def _export(self, batch: list[Any]) -> None:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        try:
            build = self.build
            records = batch if build is None else [build(item) for item in batch]
            result = self.exporter.export(records)
        except Exception as exc:
            _internal.report("logging.otlp_export", exc)
            result = None
        if result is LogRecordExportResult.SUCCESS:
            return
        if self.closed:
            return  # counted at the deadline by close()
        reason = "exception" if result is None else "failure"
        _internal.otlp_export_failed("logs", reason, type(self.exporter).__name__)
        _internal.logs_dropped("export_failed", len(batch), "the OTLP exporter gave up")

    def flush(self, timeout_seconds: float) -> bool:
        """Export what is queued now; True when it was sent (or failed and was counted) in time."""
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        self.wake.set()
        with self.lock:
            while self.queue or self.in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.wake.set()
                self.idle.wait(min(left, 0.05))
        return True

    def close(self, timeout_seconds: float) -> None:
        """Flush within ``timeout_seconds``, then stop; what is left is counted as dropped."""
        self.flush(timeout_seconds)
        with self.lock:
            if self.closed:
                return
            self.closed = True
            left = len(self.queue) + self.in_flight
            self.queue.clear()
        _internal.logs_dropped("shutdown", left, "not sent by the shutdown deadline")
        self.wake.set()
        stopper = threading.Thread(target=self._stop_exporter, daemon=True)
        stopper.start()
        stopper.join(1.0)

    def _stop_exporter(self) -> None:
        try:
            self.exporter.shutdown()
        except Exception as exc:
            _internal.report("logging.otlp_shutdown", exc)


class OtlpForward:
    """A processor: hand each event, as the JSON line will show it, to a :class:`LogShipper`.

    ``lines=False`` drops the event after forwarding (OTLP only, no JSON line).
    """

    def __init__(self, shipper: LogShipper, service_name: str, *, lines: bool = True) -> None:
        # Everything a record needs is looked up once here: __call__ runs for every line.
        from opentelemetry import trace
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.sdk._logs import ReadableLogRecord
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from structlog import DropEvent

        self.shipper = shipper
        shipper.build = self.build
        self.lines = lines
        self.resource = Resource.create({"service.name": service_name})
        self.scope = InstrumentationScope("otelfin")
        self._trace = trace
        self._record_type = LogRecord
        self._readable = ReadableLogRecord
        self._severity = {name: SeverityNumber(n) for name, n in _SEVERITY.items()}
        self._no_span = trace.set_span_in_context(trace.INVALID_SPAN)
        self._sampled = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        self._drop = DropEvent

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
        # Only the time and the finished event (nobody changes it after this point: the
        # renderer only reads it) are queued; the OTLP record is built on the export thread,
        # off the request path.
        try:
            self.shipper.put((time.time_ns(), event_dict))
        except Exception as exc:  # the JSON line is still written
            _internal.report("logging.otlp_forward", exc)
        if not self.lines:
            raise self._drop
        return event_dict

    def _context(self, event_dict: dict[str, Any]) -> Any:
        trace_id, span_id = event_dict.get("trace_id"), event_dict.get("span_id")
        if not (isinstance(trace_id, str) and isinstance(span_id, str)):
            return self._no_span
        trace = self._trace
        try:
            context = trace.SpanContext(
                int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=self._sampled
            )
        except ValueError:
            return self._no_span
        return trace.set_span_in_context(trace.NonRecordingSpan(context))

    def build(self, item: tuple[int, dict[str, Any]]) -> Any:
        """The OTLP record of one queued ``(time_ns, event)`` (on the export thread)."""
        now, event_dict = item
        level = str(event_dict.get("level", "info"))
        attributes = {
            key: _attribute(value)
            for key, value in event_dict.items()
            if key not in _OWN_PLACE and value is not None and isinstance(key, str)
        }
        record = self._record_type(
            timestamp=now,
            observed_timestamp=now,
            context=self._context(event_dict),
            severity_text=level.upper(),
            severity_number=self._severity.get(level, self._severity["info"]),
            body=str(event_dict.get("event", "")),
            attributes=attributes,
        )
        return self._readable(
            log_record=record, resource=self.resource, instrumentation_scope=self.scope
        )


def start(factory: Callable[[], Any]) -> LogShipper:
    """A new shipper, followed into forked children."""
    shipper = LogShipper(factory)
    _otlp.follow(shipper, "logging.otlp_after_fork")
    return shipper


def stop(shipper: LogShipper, timeout_seconds: float) -> None:
    """Close ``shipper`` (bounded) and forget it."""
    _otlp.forget(shipper)
    shipper.close(timeout_seconds)
