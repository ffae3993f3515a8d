"""The OTLP/HTTP span exporter, encoding a batch with otelfin's wire encoder, in slices.

The official exporter encodes a whole batch (512 spans by default) with one ``encode_spans``
call: pure-Python protobuf message building, ~30-40 us a span on the benchmark machine, most of
the export thread's CPU, and it held the GIL for ~15 ms a batch while request threads waited
for it (up to the 5 ms switch interval each time), which showed in the latency tail. Smaller
batches are no cure: every batch is one more HTTP POST, and 64-span batches cost 63 us of CPU
a span against 34.6 us for 512 (same run).

So the batch stays whole and one POST, encoded by :mod:`otelfin._exporters._wire`, which writes the
protobuf wire format directly (the same bytes as the official encoder, for 7.5 us a span against
36.9 in ``benchmarks/bench_span_encoding.py``), pausing after every :data:`SLICE` spans (~0.2 ms of
work) with a short sleep, which hands the GIL to a waiting thread (``sleep(0)`` does not reliably).
The pauses are left out while the request threads are saturated or a batch queue is backing up
(:func:`otelfin._exporters._accounting.pause_between_slices`): there they buy no latency and cost
CPU. A batch the wire encoder refuses (an attribute value of a type it does not know) is encoded by
the official encoder instead, also in slices: serialized protobuf messages concatenate into their
merge, so the slices' bytes joined are one ``ExportTraceServiceRequest`` whose ``resource_spans``
list holds each slice's entries, valid OTLP for any collector. Sending goes through the official
exporter's own HTTP client (retries, compression, headers, timeout unchanged); when that client is
not where this version keeps it, the official ``export`` runs as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from otelfin._exporters._accounting import PAUSE_S, pause_between_slices
from otelfin._exporters._wire import encode_request

__all__ = ["OFFICIAL_SLICE", "PAUSE_S", "SLICE", "SlicedOTLPSpanExporter", "encode_in_slices"]

#: Spans the wire encoder writes between two GIL hand-overs (~0.2 ms at ~8 us a span).
SLICE = 24
#: Spans the official encoder (the fallback) encodes between two hand-overs (~0.2 ms).
OFFICIAL_SLICE = 8


def official_in_slices(spans: Sequence[ReadableSpan]) -> bytes:
    """``spans`` as one serialized ``ExportTraceServiceRequest`` from the official encoder,
    :data:`OFFICIAL_SLICE` spans at a time (one ``ResourceSpans`` entry per slice and resource)."""
    parts = [encode_spans(spans[:OFFICIAL_SLICE]).SerializePartialToString()]
    for start in range(OFFICIAL_SLICE, len(spans), OFFICIAL_SLICE):
        pause_between_slices()
        part = encode_spans(spans[start : start + OFFICIAL_SLICE])
        parts.append(part.SerializePartialToString())
    return b"".join(parts)


def encode_in_slices(spans: Sequence[ReadableSpan]) -> bytes:
    """``spans`` as one serialized ``ExportTraceServiceRequest``: the wire encoder's, pausing
    every :data:`SLICE` spans, or the official encoder's when the wire encoder refuses one."""
    try:
        return encode_request(spans, slice_size=SLICE, pause=pause_between_slices)
    except Exception:  # a value the wire encoder does not write: the official one decides
        return official_in_slices(spans)


class SlicedOTLPSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` (same settings, same ``OTEL_EXPORTER_OTLP_*`` variables) that
    encodes a batch with otelfin's wire encoder, in slices; see the module docstring."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client: Any = getattr(self, "_client", None)
        if not spans or not callable(getattr(client, "export", None)):
            return super().export(spans)
        if getattr(self, "_shutdown", False):
            return super().export(spans)  # it logs and refuses
        try:
            data = encode_in_slices(spans)
        except Exception:  # a span neither encoder takes: the official path logs and fails it
            return super().export(spans)
        result = client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE
