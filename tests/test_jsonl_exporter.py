"""The JSONL span exporter writes OTLP/JSON that the OTLP protobuf definitions parse."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanContext, TraceFlags

from otelfin._exporters import JsonlSpanExporter, span_to_otlp_json

_HUGE = 2**64 + 5


def _to_proto_json(doc: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON -> protobuf JSON: hex trace/span ids back to base64 (the only difference)."""

    def b64(value: str) -> str:
        return base64.b64encode(bytes.fromhex(value)).decode()

    for rs in doc.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = b64(span[key])
                for link in span.get("links", ()):
                    for key in ("traceId", "spanId"):
                        link[key] = b64(link[key])
    return doc


def _write_hostile_spans(path: Path) -> None:
    exporter = JsonlSpanExporter(path)
    provider = TracerProvider(
        resource=Resource({"service.name": "payment-gateway", "big": _HUGE}, "https://s/1.26.0")
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("otelfin", "1.0", schema_url="https://opentelemetry.io/s/1.26.0")
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span("parent", links=[Link(remote, {"n": _HUGE})]) as parent:
        parent.set_attribute("nan", math.nan)
        parent.set_attribute("inf", math.inf)
        parent.set_attribute("ninf", -math.inf)
        parent.set_attribute("raw", b"\x00\x01\xff")
        parent.set_attribute("huge", _HUGE)
        parent.set_attribute("neg_huge", -(2**63) - 1)
        parent.set_attribute("max", 2**63 - 1)
        parent.set_attribute("ints", [1, _HUGE])
        parent.set_attribute("floats", [1.5, math.nan])
        parent.set_attribute("words", ["a", "b"])
        parent.add_event("retry", {"attempt": _HUGE, "ok": True})
        with tracer.start_as_current_span("child"):
            pass
    provider.shutdown()


def test_every_line_parses_with_the_otlp_protobuf_definitions(tmp_path: Path) -> None:
    """NaN/inf, bytes, ints >= 2**63, lists: each line is a valid ExportTraceServiceRequest."""
    path = tmp_path / "spans.jsonl"
    _write_hostile_spans(path)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    spans = {}
    for line in lines:
        request = ExportTraceServiceRequest()
        json_format.Parse(json.dumps(_to_proto_json(json.loads(line))), request)
        (rs,) = request.resource_spans
        assert rs.schema_url == "https://s/1.26.0"
        resource = {a.key: a.value for a in rs.resource.attributes}
        assert resource["big"].string_value == str(_HUGE)
        (ss,) = rs.scope_spans
        assert ss.schema_url == "https://opentelemetry.io/s/1.26.0"
        assert ss.scope.name == "otelfin" and ss.scope.version == "1.0"
        for span in ss.spans:
            spans[span.name] = span
    parent, child = spans["parent"], spans["child"]
    attrs = {a.key: a.value for a in parent.attributes}
    assert math.isnan(attrs["nan"].double_value)
    assert attrs["inf"].double_value == math.inf and attrs["ninf"].double_value == -math.inf
    assert attrs["raw"].bytes_value == b"\x00\x01\xff"
    assert attrs["huge"].string_value == str(_HUGE)
    assert attrs["neg_huge"].string_value == str(-(2**63) - 1)
    assert attrs["max"].int_value == 2**63 - 1
    assert [v.string_value for v in attrs["ints"].array_value.values] == ["1", str(_HUGE)]
    assert attrs["floats"].array_value.values[0].double_value == 1.5
    assert [v.string_value for v in attrs["words"].array_value.values] == ["a", "b"]
    assert parent.events[0].attributes[0].value.string_value == str(_HUGE)
    assert parent.links[0].trace_id == (0xABC).to_bytes(16, "big")
    assert parent.links[0].flags & SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
    assert parent.flags & SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
    assert child.parent_span_id == parent.span_id
    assert child.trace_id == parent.trace_id and len(child.trace_id) == 16


def test_ids_are_hex_and_enums_integers(tmp_path: Path) -> None:
    """OTLP/JSON, not plain protobuf JSON: lower-case hex ids, integer kind, string nanos."""
    path = tmp_path / "spans.jsonl"
    _write_hostile_spans(path)
    doc = json.loads(path.read_text().splitlines()[-1])
    (span,) = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert span["name"] == "parent"
    assert len(span["traceId"]) == 32 and int(span["traceId"], 16)
    assert len(span["spanId"]) == 16 and span["spanId"] == span["spanId"].lower()
    assert span["kind"] == 1 and isinstance(span["startTimeUnixNano"], str)
    assert span["links"][0]["traceId"] == format(0xABC, "032x")
    values = {a["key"]: a["value"] for a in span["attributes"]}
    assert values["nan"] == {"doubleValue": "NaN"} and values["inf"] == {"doubleValue": "Infinity"}
    assert values["raw"] == {"bytesValue": base64.b64encode(b"\x00\x01\xff").decode()}
    assert "NaN" not in json.dumps(values["max"])


def test_span_to_otlp_json_single_span() -> None:
    """span_to_otlp_json gives one span dict with hex ids and an attributes list."""
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("one") as span:
        pass
    out = span_to_otlp_json(span)  # type: ignore[arg-type]
    assert out["name"] == "one" and out["attributes"] == []
    assert out["spanId"] == format(span.get_span_context().span_id, "016x")
    assert "parentSpanId" not in out
