"""Span export: the JSONL file exporter, exporter selection, and the guarded processor.

Every exporter otelfin uses sits behind :class:`GuardedExporter`, which scrubs spans (card
numbers, secrets: through :class:`otelfin.scrub.ScrubbingSpanExporter`, once) and contains
exporter failures, and behind one
:class:`SwappableSpanProcessor`, so ``configure()`` can be called again without stacking
processors on the provider.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import IO, Any

import orjson
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id

from otelfin import _internal
from otelfin.scrub import ScrubbingSpanExporter

__all__ = [
    "GuardedExporter",
    "JsonlSpanExporter",
    "SwappableSpanProcessor",
    "span_to_otlp_json",
]


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_otlp_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _otlp_attributes(attributes: Any) -> list[dict[str, Any]]:
    if not attributes:
        return []
    return [{"key": k, "value": _otlp_value(v)} for k, v in attributes.items()]


def span_to_otlp_json(span: ReadableSpan) -> dict[str, Any]:
    """One span in the OTLP/JSON shape (hex ids, nanosecond times as strings)."""
    ctx = span.get_span_context()
    assert ctx is not None
    out: dict[str, Any] = {
        "traceId": format_trace_id(ctx.trace_id),
        "spanId": format_span_id(ctx.span_id),
        "name": span.name,
        "kind": span.kind.value + 1,  # OTLP numbers kinds from 1 (INTERNAL)
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
        "attributes": _otlp_attributes(span.attributes),
        "status": {"code": span.status.status_code.value},
    }
    if span.parent is not None:
        out["parentSpanId"] = format_span_id(span.parent.span_id)
    if ctx.trace_state:
        out["traceState"] = ctx.trace_state.to_header()
    if span.status.description:
        out["status"]["message"] = span.status.description
    if span.events:
        out["events"] = [
            {
                "timeUnixNano": str(e.timestamp),
                "name": e.name,
                "attributes": _otlp_attributes(e.attributes),
            }
            for e in span.events
        ]
    if span.links:
        out["links"] = [
            {
                "traceId": format_trace_id(link.context.trace_id),
                "spanId": format_span_id(link.context.span_id),
                "attributes": _otlp_attributes(link.attributes),
            }
            for link in span.links
        ]
    return out


class JsonlSpanExporter(SpanExporter):
    """Writes each export batch as one OTLP/JSON ``{"resourceSpans": [...]}`` line.

    The same line format as the OpenTelemetry Collector's file exporter, so the file can be
    replayed into a collector or read by ``otelfin`` itself. Hand-written because the protobuf
    JSON mapping encodes trace ids as base64 where OTLP/JSON requires hex.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        by_resource: dict[int, tuple[Any, dict[tuple[str, str | None], list[Any]]]] = {}
        for span in spans:
            resource = span.resource
            scopes = by_resource.setdefault(id(resource), (resource, {}))[1]
            scope = span.instrumentation_scope
            key = (scope.name, scope.version) if scope is not None else ("", None)
            scopes.setdefault(key, []).append(span_to_otlp_json(span))
        payload = {
            "resourceSpans": [
                {
                    "resource": {"attributes": _otlp_attributes(resource.attributes)},
                    "scopeSpans": [
                        {"scope": {"name": n, **({"version": v} if v else {})}, "spans": items}
                        for (n, v), items in scopes.items()
                    ],
                }
                for resource, scopes in by_resource.values()
            ]
        }
        line = orjson.dumps(payload) + b"\n"
        with self._lock:
            if self._file is None:
                directory = os.path.dirname(self.path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across exports
            self._file.write(line)
            self._file.flush()
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


class GuardedExporter(SpanExporter):
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


class SwappableSpanProcessor(SpanProcessor):
    """otelfin's single processor on a provider; its delegate changes on reconfigure."""

    def __init__(self) -> None:
        self.delegate: SpanProcessor | None = None

    def swap(self, delegate: SpanProcessor | None, *, shutdown_old: bool = True) -> None:
        """Route spans to ``delegate``; the old delegate is flushed and (by default) shut down.

        ``shutdown_old=False`` is for an old delegate whose exporter the new one reuses.
        """
        old, self.delegate = self.delegate, delegate
        if old is not None:
            if shutdown_old:
                _shutdown_processor(old)
            else:
                try:
                    old.force_flush()
                except Exception as exc:
                    _internal.report("processor.force_flush", exc)

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


def _shutdown_processor(processor: SpanProcessor) -> None:
    try:
        processor.force_flush()
    except Exception as exc:
        _internal.report("processor.force_flush", exc)
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
    raise ValueError(f"unknown traces exporter {kind!r} (expected none, console, jsonl or otlp)")
