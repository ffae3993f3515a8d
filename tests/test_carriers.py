"""Carrier adapters: every transport's headers, read case-insensitively and safely."""

from __future__ import annotations

import email.message
from typing import Any

import httpx
import pytest
from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otelfin.propagation import (
    OtelfinPropagator,
    amqp_headers_getter,
    amqp_headers_setter,
    asgi_scope_getter,
    grpc_metadata_getter,
    grpc_metadata_setter,
    headers_getter,
    headers_setter,
    kafka_headers_getter,
    kafka_headers_setter,
    nats_headers_getter,
    nats_headers_setter,
    wsgi_environ_getter,
)

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN = 0x00F067AA0BA902B7
TP = f"00-{TRACE:032x}-{SPAN:016x}-01"


def trace_id(ctx: Context) -> int:
    return trace.get_current_span(ctx).get_span_context().trace_id


def a_context() -> Context:
    span = NonRecordingSpan(SpanContext(TRACE, SPAN, True, TraceFlags(1)))
    return baggage.set_baggage("tenant", "acme", trace.set_span_in_context(span, Context()))


def test_headers_getter_reads_dicts_of_any_casing_and_lists() -> None:
    """Plain dicts in any casing, dicts of lists and lists of pairs give all values in order."""
    assert headers_getter.get({"TraceParent": TP}, "traceparent") == [TP]
    assert headers_getter.get({"tracestate": ["a=1", "b=2"]}, "TRACESTATE") == ["a=1", "b=2"]
    pairs = [("Tracestate", "a=1"), ("x", "y"), ("tracestate", "b=2")]
    assert headers_getter.get(pairs, "tracestate") == ["a=1", "b=2"]
    assert sorted(headers_getter.keys({"A": "1", "b": "2"})) == ["a", "b"]


def test_headers_getter_reads_httpx_and_email_multi_valued_headers() -> None:
    """httpx.Headers and email.message.Message keep repeated headers apart."""
    headers = httpx.Headers([("tracestate", "a=1"), ("TraceState", "b=2")])
    assert headers_getter.get(headers, "tracestate") == ["a=1", "b=2"]
    message = email.message.Message()
    message["Tracestate"] = "a=1"
    message["tracestate"] = "b=2"
    assert headers_getter.get(message, "tracestate") == ["a=1", "b=2"]


def test_headers_setter_replaces_other_casings() -> None:
    """Injecting into a dict holding 'Traceparent' leaves one traceparent, not two."""
    carrier = {"Traceparent": "stale", "Other": "1"}
    headers_setter.set(carrier, "traceparent", TP)
    assert carrier == {"Other": "1", "traceparent": TP}
    pairs: list[tuple[str, str]] = [("TRACEPARENT", "stale")]
    headers_setter.set(pairs, "traceparent", TP)
    assert pairs == [("traceparent", TP)]


def test_wsgi_environ_getter() -> None:
    """HTTP_TRACEPARENT is read; other environ keys are not headers."""
    environ = {"HTTP_TRACEPARENT": TP, "HTTP_X_B3_TRACEID": "ab" * 8, "PATH_INFO": "/"}
    assert wsgi_environ_getter.get(environ, "traceparent") == [TP]
    assert wsgi_environ_getter.get(environ, "X-B3-TraceId") == ["ab" * 8]
    assert sorted(wsgi_environ_getter.keys(environ)) == ["traceparent", "x-b3-traceid"]
    assert trace_id(OtelfinPropagator().extract(environ, getter=wsgi_environ_getter)) == TRACE


def test_asgi_scope_getter() -> None:
    """scope['headers'] as (bytes, bytes) pairs, repeated headers kept in order."""
    scope = {
        "type": "http",
        "headers": [
            (b"traceparent", TP.encode()),
            (b"tracestate", b"a=1"),
            (b"tracestate", b"b=2"),
        ],
    }
    assert asgi_scope_getter.get(scope, "tracestate") == ["a=1", "b=2"]
    ctx = OtelfinPropagator().extract(scope, getter=asgi_scope_getter)
    assert dict(trace.get_current_span(ctx).get_span_context().trace_state) == {"a": "1", "b": "2"}


def test_grpc_metadata_round_trip_and_binary_entries_ignored() -> None:
    """Metadata tuples get lower-case keys; -bin entries are never read as text."""
    metadata: list[tuple[str, Any]] = [("x-bin", b"\x00\xff")]
    OtelfinPropagator().inject(metadata, a_context(), grpc_metadata_setter)
    assert all(key == key.lower() for key, _ in metadata)
    assert ("traceparent", TP) in metadata
    assert (
        trace_id(OtelfinPropagator().extract(tuple(metadata), getter=grpc_metadata_getter)) == TRACE
    )


def test_grpc_aio_metadata() -> None:
    """grpc.aio.Metadata works as a carrier both ways."""
    from grpc.aio import Metadata

    metadata = Metadata(("user-agent", "x"))
    OtelfinPropagator().inject(metadata, a_context(), grpc_metadata_setter)
    assert metadata["traceparent"] == TP
    assert trace_id(OtelfinPropagator().extract(metadata, getter=grpc_metadata_getter)) == TRACE


def test_kafka_headers_bytes_and_non_utf8() -> None:
    """Kafka (str, bytes) headers round-trip; a non-UTF-8 value is ignored, not raised."""
    headers: list[tuple[str, bytes]] = [("traceparent", b"stale"), ("junk", b"\xff\xfe")]
    OtelfinPropagator().inject(headers, a_context(), kafka_headers_setter)
    assert headers.count(("traceparent", TP.encode())) == 1
    assert not any(v == b"stale" for _, v in headers)
    assert trace_id(OtelfinPropagator().extract(headers, getter=kafka_headers_getter)) == TRACE
    hostile = [("traceparent", b"\xff" + TP.encode())]
    ctx = OtelfinPropagator().extract(hostile, getter=kafka_headers_getter)
    assert not trace.get_current_span(ctx).get_span_context().is_valid


def test_amqp_headers_str_and_bytes() -> None:
    """AMQP tables may hold bytes; None is an empty carrier."""
    headers: dict[str, Any] = {}
    OtelfinPropagator().inject(headers, a_context(), amqp_headers_setter)
    as_bytes = {k.title(): v.encode() for k, v in headers.items()}
    ctx = OtelfinPropagator().extract(as_bytes, getter=amqp_headers_getter)
    assert trace_id(ctx) == TRACE and baggage.get_baggage("tenant", ctx) == "acme"
    assert amqp_headers_getter.get(None, "traceparent") is None


def test_nats_headers() -> None:
    """nats-py header dicts round-trip."""
    headers: dict[str, str] = {"Nats-Msg-Id": "1"}
    OtelfinPropagator().inject(headers, a_context(), nats_headers_setter)
    assert headers["Nats-Msg-Id"] == "1"
    assert trace_id(OtelfinPropagator().extract(headers, getter=nats_headers_getter)) == TRACE


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # kafka-python 3 import warning
def test_official_getters_are_read_by_otelfin() -> None:
    """pika's and Kafka's official getters (bytes values, no keys) still continue the trace."""
    from opentelemetry.instrumentation.kafka.utils import KafkaContextGetter
    from opentelemetry.instrumentation.pika.utils import _pika_getter

    ctx = OtelfinPropagator().extract({"Traceparent": TP.encode()}, getter=_pika_getter)
    assert trace_id(ctx) == TRACE
    headers = [("junk", b"\xff"), ("TRACEPARENT", TP.encode())]
    assert trace_id(OtelfinPropagator().extract(headers, getter=KafkaContextGetter())) == TRACE


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # kafka-python 3 import warning
def test_official_kafka_setter_does_not_duplicate() -> None:
    """Injecting through the official Kafka setter into forwarded headers replaces traceparent."""
    from opentelemetry.instrumentation.kafka.utils import KafkaContextSetter

    headers: list[tuple[str, bytes]] = [("traceparent", b"00-old")]
    OtelfinPropagator().inject(headers, a_context(), KafkaContextSetter())
    assert [k for k, _ in headers].count("traceparent") == 1


@pytest.mark.parametrize(
    "carrier",
    [None, 42, "traceparent", [1, 2, 3], [("a",)], {1: 2}, {"traceparent": 5}, object()],
)
@pytest.mark.otelfin_internal_errors
def test_garbage_carriers_yield_no_parent(carrier: Any) -> None:
    """Carriers of the wrong shape never raise; they carry nothing."""
    ctx = OtelfinPropagator().extract(carrier)
    assert not trace.get_current_span(ctx).get_span_context().is_valid


def test_oversized_values_are_ignored() -> None:
    """A 1 MiB header value is ignored, not parsed."""
    ctx = OtelfinPropagator().extract({"baggage": "k=" + "v" * 2**20, "traceparent": TP})
    assert trace_id(ctx) == TRACE and dict(baggage.get_all(ctx)) == {}
