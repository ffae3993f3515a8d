"""Which span exporter ``traces_exporter`` names, and the OTLP one built from ``OTEL_*``."""

from __future__ import annotations

from opentelemetry.sdk.trace.export import SpanExporter

from otelfin import _otlp
from otelfin._exporters._jsonl import JsonlSpanExporter

__all__ = ["OTLPSpanExporterFactory", "make_exporter", "otlp_protocol"]


def otlp_protocol() -> str:
    """The OTLP protocol for spans, by the rule every signal shares (:func:`_otlp.protocol`)."""
    return _otlp.protocol("traces")


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
                raise _otlp.grpc_missing("traces", exc) from None
            return GrpcSpanExporter()
        from otelfin._exporters._sliced import SlicedOTLPSpanExporter

        return SlicedOTLPSpanExporter()


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
