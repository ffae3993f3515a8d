"""OTLP/JSON encoding of spans: the SDK's own OTLP encoder, adapted only where the format
asks (hex ids, int64 range)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link

from otelfin._exporters._fork import late_import

__all__ = ["otlp_json_request", "span_to_otlp_json"]


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
    # imported here: protobuf and the encoder load only when spans are written as JSON (on the
    # export thread: fork() waits for the import, see late_import)
    with late_import():
        from google.protobuf import json_format
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    message = encode_spans([_encodable(s) for s in spans])
    request: dict[str, Any] = json_format.MessageToDict(message, use_integers_for_enums=True)
    for resource_spans in request.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                _hex_ids(span)
    return request


def span_to_otlp_json(span: ReadableSpan) -> dict[str, Any]:
    """One span in the OTLP/JSON shape (hex ids, nanosecond times as strings)."""
    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    message = encode_spans([_encodable(span)]).resource_spans[0].scope_spans[0].spans[0]
    return _hex_ids(json_format.MessageToDict(message, use_integers_for_enums=True))
