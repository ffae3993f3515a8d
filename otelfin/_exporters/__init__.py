"""Span export: the JSONL file exporter, exporter selection, and the guarded processor.

Every exporter otelfin uses sits behind :class:`GuardedExporter`, which scrubs spans (card
numbers, secrets: through :class:`otelfin.scrub.ScrubbingSpanExporter`, once) and contains
exporter failures, and behind one :class:`SwappableSpanProcessor`, so ``configure()`` can be
called again without stacking processors on the provider. One job per module:

``_encoding``   OTLP/JSON encoding (the SDK's encoder, hex ids, int64 range)
``_jsonl``      the JSONL file exporter
``_contain``    exporter failures contained; calls that may hang run within a deadline
``_fork``       what export objects do in a forked child
``_accounting`` where every span went: exported, failed, dropped, in flight
``_pipeline``   the swappable processor and the export pipeline behind it
``_otlp``       exporter selection and the OTLP exporter factory
``_sliced``     the OTLP/HTTP exporter that encodes a batch in slices
``_wire``       OTLP protobuf requests written directly (the official encoder's bytes, faster)
"""

from __future__ import annotations

from otelfin._exporters._contain import GuardedExporter
from otelfin._exporters._encoding import otlp_json_request, span_to_otlp_json
from otelfin._exporters._jsonl import JsonlSpanExporter
from otelfin._exporters._otlp import OTLPSpanExporterFactory, make_exporter, otlp_protocol
from otelfin._exporters._pipeline import EXIT_TIMEOUT_MILLIS, ExportPipeline, SwappableSpanProcessor

__all__ = [
    "EXIT_TIMEOUT_MILLIS",
    "ExportPipeline",
    "GuardedExporter",
    "OTLPSpanExporterFactory",
    "JsonlSpanExporter",
    "SwappableSpanProcessor",
    "make_exporter",
    "otlp_json_request",
    "otlp_protocol",
    "span_to_otlp_json",
]
