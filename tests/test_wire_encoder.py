"""otelfin's OTLP wire encoder writes what the official encoder writes: the same bytes (so the
same decoded ``ExportTraceServiceRequest``) for handmade spans covering every field and for
generated ones, and hands anything it does not know to the official encoder."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from otelfin._exporters import _sliced, _wire

REMOTE = SpanContext(
    0x0AF7651916CD43DD8448EB211C80319C,
    0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(1),
    trace_state=TraceState([("congo", "t61rcWkgMzE"), ("rojo", "00f067aa0ba902b7")]),
)


def _official(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializePartialToString()


class _Viewed(ReadableSpan):
    """A ReadableSpan subclass: the wire encoder reads it through the public properties."""


def _viewed(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    out = []
    for span in spans:
        twin = copy.copy(span)
        twin.__class__ = _Viewed
        out.append(twin)
    return out


def assert_same_as_official(spans: Sequence[ReadableSpan]) -> None:
    """The wire encoder's request is the official one: equal bytes, and it parses back into
    a message equal to the official encoder's (NaN aside, which no message equals); the same
    through the SDK fields' fast path and through the public properties."""
    written = _wire.encode_request(spans)
    assert _wire.encode_request(_viewed(spans)) == written
    decoded = ExportTraceServiceRequest.FromString(written)
    assert decoded.SerializePartialToString() == _official(spans)
    if decoded != encode_spans(spans):
        assert "nan" in str(decoded)
    assert written == _official(spans)


def _recorded() -> list[ReadableSpan]:
    """Spans from a real SDK provider: a server span with a remote parent, every attribute
    type, events, links, error status; a child on another tracer; an OK span."""
    memory = InMemorySpanExporter()
    resource = Resource(
        {"service.name": "payment-gateway", "deployment": "eu-1", "pid": 4242, "ratio": 0.5},
        schema_url="https://opentelemetry.io/schemas/1.21.0",
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    fastapi = provider.get_tracer(
        "opentelemetry.instrumentation.fastapi",
        "0.50b0",
        schema_url="https://opentelemetry.io/schemas/1.11.0",
        attributes={"scope.flag": True, "scope.n": 3},
    )
    own = provider.get_tracer("payments")
    parent = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    attributes = {
        "http.method": "POST",
        "http.route": "/payments/{id}",
        "http.status_code": 402,
        "net.peer.port": 50123,
        "negative": -7,
        "int64.max": 2**63 - 1,
        "int64.min": -(2**63),
        "flag": False,
        "amount": 99.99,
        "minus.zero": -0.0,
        "empty": "",
        "unicode": "Zahlung \u00fcber \u20ac \U0001f4b3",
        "long": "x" * 300,
        "strings": ("a", "", "b"),
        "ints": [1, -2, 3],
        "floats": (1.5, float("inf")),
        "bools": [True, False],
        "empty.seq": (),
    }
    with fastapi.start_as_current_span(
        "POST /payments/{id}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes=attributes,
        links=[
            Link(REMOTE, {"link.kind": "follows", "n": 1}),
            Link(SpanContext(1, 2, is_remote=False)),
        ],
    ) as server:
        server.add_event("retry", {"attempt": 2, "backoff": 0.25}, timestamp=1_700_000_000_123)
        server.add_event("no attributes")
        server.set_status(Status(StatusCode.ERROR, "card declined"))
        for kind in (SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
            with own.start_as_current_span(f"child {kind.name}", kind=kind) as child:
                child.set_attribute("k", kind.name)
        with own.start_as_current_span("ok") as ok:
            ok.set_status(Status(StatusCode.OK))
    return list(memory.get_finished_spans())


def _bounded(attributes: dict[str, Any], dropped: int) -> BoundedAttributes:
    bounded = BoundedAttributes(attributes=attributes)
    bounded.dropped = dropped
    return bounded


def _handmade() -> list[ReadableSpan]:
    """ReadableSpans as an exporter may receive them (built by the scrubber, or a sampler's
    copy): dropped counts, None values, nested mappings, bytes, no scope, empty names."""
    events: BoundedList[Event] = BoundedList(None)
    events.extend(
        [
            Event("dropped some", _bounded({"a": 1}, 4), 10),
            Event("", {"nested": {"k": "v", "n": [1, {"deep": None}]}}, 0),
        ]
    )
    events.dropped = 2
    links: BoundedList[Link] = BoundedList(None)
    links.extend([Link(REMOTE, _bounded({"x": b"\x00\xff"}, 1))])
    links.dropped = 5
    scope = InstrumentationScope("lib", "1.0", "https://scope", {"a": "b"})
    no_status: Any = None  # the official encoder leaves a None status out
    _no_status = ReadableSpan("no status", SpanContext(9, 9, is_remote=True), status=no_status)
    return [
        ReadableSpan(
            name="handmade",
            context=SpanContext(3, 4, is_remote=False, trace_state=TraceState([("k", "v")])),
            parent=SpanContext(3, 5, is_remote=False),
            resource=Resource({"service.name": "settlement"}),
            attributes=_bounded(
                {
                    "none": None,
                    "bytes": b"\x01\x02",
                    "mapping": {"a": 1, "b": (True, None)},
                    "mixed": [1, "two", 3.0, None],
                    "": "empty key",
                },
                dropped=7,
            ),
            events=events,
            links=links,
            kind=SpanKind.CLIENT,
            status=Status(StatusCode.UNSET),
            start_time=1,
            end_time=2**64 - 1,
            instrumentation_scope=scope,
        ),
        ReadableSpan(name="", context=SpanContext(0, 0, is_remote=False)),  # all defaults
        _no_status,
    ]


def test_recorded_spans_encode_as_the_official_encoder_does() -> None:
    """Spans from the SDK (every attribute type, events, links, remote parent, each kind and
    status, two scopes): the same bytes as the official encoder, one ResourceSpans."""
    spans = _recorded()
    assert_same_as_official(spans)
    request = ExportTraceServiceRequest.FromString(_wire.encode_request(spans))
    (resource_spans,) = request.resource_spans
    assert [s.scope.name for s in resource_spans.scope_spans] == [
        "payments",
        "opentelemetry.instrumentation.fastapi",
    ]
    server = resource_spans.scope_spans[1].spans[0]
    assert server.flags == 0x300 and server.trace_state == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert [link.flags for link in server.links] == [0x300, 0x100]


def test_handmade_spans_encode_as_the_official_encoder_does() -> None:
    """Dropped counts, None and mapping values, bytes, an empty key, no scope, no status, an
    all-default span: the same bytes as the official encoder."""
    assert_same_as_official(_handmade())


def test_resources_and_scopes_group_as_the_official_encoder_groups_them() -> None:
    """Interleaved resources and scopes, equal ones as distinct objects: grouped by resource,
    then scope, in order of first appearance, equal ones merged (the official dict's order)."""
    first, same_as_first = Resource({"service.name": "a"}), Resource({"service.name": "a"})
    second = Resource({"service.name": "b"}, schema_url="https://b")
    scopes = [
        InstrumentationScope("x"),
        InstrumentationScope("x"),
        None,
        InstrumentationScope("y", "2", None, {"k": 1}),
        InstrumentationScope("y", "2", None, {"k": 2}),  # same hash, not equal
    ]
    spans = [
        ReadableSpan(
            f"s{i}", SpanContext(1, i + 1, False), resource=resource, instrumentation_scope=scope
        )
        for i, (resource, scope) in enumerate(
            (r, s) for s in scopes for r in (second, first, same_as_first)
        )
    ]
    assert_same_as_official(spans)
    request = ExportTraceServiceRequest.FromString(_wire.encode_request(spans))
    assert len(request.resource_spans) == 2
    assert len(request.resource_spans[0].scope_spans) == 4


def test_an_empty_batch_is_an_empty_request() -> None:
    """No spans: an empty request, as the official encoder writes it."""
    assert _wire.encode_request([]) == _official([]) == b""


# -- generated spans ----------------------------------------------------------------------

_scalars = st.one_of(
    st.text(max_size=12),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.binary(max_size=8),
    st.none(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
    ),
    max_leaves=6,
)
_keys = st.one_of(st.sampled_from(["http.method", "http.route", "k", ""]), st.text(max_size=8))
_attributes = st.dictionaries(_keys, _values, max_size=6)
_uint32 = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def _maybe_bounded(draw: st.DrawFn) -> Any:
    attributes = draw(_attributes)
    shape = draw(st.sampled_from(["dict", "bounded", "none"]))
    if shape == "none":
        return None
    if shape == "dict":
        return attributes
    return _bounded(attributes, draw(_uint32))


_contexts = st.builds(
    SpanContext,
    trace_id=st.integers(min_value=0, max_value=2**128 - 1),
    span_id=st.integers(min_value=0, max_value=2**64 - 1),
    is_remote=st.booleans(),
    trace_flags=st.sampled_from([TraceFlags(0), TraceFlags(1)]),
    trace_state=st.sampled_from(
        [
            None,
            TraceState(),
            TraceState([("a", "1")]),
            TraceState([("vendor@x", "v=1"), ("b", "2")]),
        ]
    ),
)
_times = st.one_of(st.none(), st.integers(min_value=0, max_value=2**64 - 1))
_events = st.builds(Event, name=st.text(max_size=6), attributes=_maybe_bounded(), timestamp=_times)
_links = st.builds(Link, context=_contexts, attributes=_maybe_bounded())
_RESOURCES = [
    Resource({"service.name": "a"}),
    Resource({"service.name": "a"}),
    Resource({"service.name": "b", "n": 1, "l": ("x", "y")}, schema_url="https://s"),
    Resource({}),
]
_SCOPES = [
    None,
    InstrumentationScope("a"),
    InstrumentationScope("a"),
    InstrumentationScope("a", "1", "https://s", {"k": "v"}),
    InstrumentationScope("a", "1", "https://s", {"k": "w"}),
    InstrumentationScope("", None, None, None),
]


@st.composite
def _bounded_list(draw: st.DrawFn, items: st.SearchStrategy[Any]) -> Any:
    drawn = draw(st.lists(items, max_size=3))
    if draw(st.booleans()):
        return drawn
    bounded: BoundedList[Any] = BoundedList(None)
    bounded.extend(drawn)
    bounded.dropped = draw(_uint32)
    return bounded


_statuses = st.one_of(
    st.none(),
    st.builds(Status, st.sampled_from(list(StatusCode)), st.one_of(st.none(), st.text(max_size=8))),
)
_spans = st.builds(
    ReadableSpan,
    name=st.text(max_size=12),
    context=_contexts,
    parent=st.one_of(st.none(), _contexts),
    resource=st.sampled_from(_RESOURCES),
    attributes=_maybe_bounded(),
    events=_bounded_list(_events),
    links=_bounded_list(_links),
    kind=st.sampled_from(list(SpanKind)),
    status=_statuses,
    start_time=_times,
    end_time=_times,
    instrumentation_scope=st.sampled_from(_SCOPES),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_spans, max_size=8))
def test_generated_spans_encode_as_the_official_encoder_does(spans: list[ReadableSpan]) -> None:
    """Any batch of spans (any ids, flags, trace state, attribute values of every type the
    official encoder knows, nested, events, links, dropped counts, statuses, resources and
    scopes): the same bytes as the official encoder."""
    assert_same_as_official(spans)


# -- what it refuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [2**63, -(2**63) - 1, object(), {1.5}, "bad \ud800 surrogate"],
    ids=["int64+1", "int64-1", "object", "set", "surrogate"],
)
def test_a_value_it_does_not_write_goes_to_the_official_encoder(
    value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A value outside what the wire encoder writes raises in it; the exporter's encoder then
    gives the official encoder's request (which drops that attribute and logs)."""
    spans = [ReadableSpan("s", SpanContext(1, 2, False), attributes={"bad": value, "ok": 1})]
    with pytest.raises(Exception):  # noqa: B017 - Refused, or the codec's own error
        _wire.encode_request(spans)
    with caplog.at_level(logging.CRITICAL):  # the official encoder logs the dropped key
        assert _sliced.encode_in_slices(spans) == _official(spans)
    official = ExportTraceServiceRequest.FromString(_official(spans))
    (span,) = official.resource_spans[0].scope_spans[0].spans
    assert [kv.key for kv in span.attributes] == ["ok"]


def test_it_pauses_every_slice() -> None:
    """``pause`` runs after every ``slice_size`` spans, never after the last."""
    spans = [ReadableSpan(f"s{i}", SpanContext(1, i + 1, False)) for i in range(10)]
    pauses: list[int] = []
    written = _wire.encode_request(spans, slice_size=4, pause=lambda: pauses.append(1))
    assert written == _official(spans)
    assert len(pauses) == 2


def test_the_caches_stay_bounded() -> None:
    """Distinct keys and string values beyond the cache size: the caches never grow past it,
    and what they hold still encodes as the official encoder does."""
    spans = [
        ReadableSpan("s", SpanContext(1, 2, False), attributes={f"k{i}": f"v{i}", "fixed": "x"})
        for i in range(_wire._CACHE_MAX + 10)
    ]
    assert_same_as_official(spans)
    assert len(_wire._keys) <= _wire._CACHE_MAX
    assert len(_wire._span_attrs) <= _wire._CACHE_MAX


# -- the comparison notices a broken encoder ------------------------------------------------

_BREAKAGES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "remote link flag": lambda mp: mp.setattr(_wire, "_LINK_FLAGS_REMOTE", b"\x35\x00\x01\0\0"),
    "remote parent flag": lambda mp: mp.setattr(_wire, "_SPAN_FLAGS_REMOTE", b"\x85\x01\0\x01\0\0"),
    "bool false": lambda mp: mp.setattr(_wire, "_BOOL", {True: b"\x10\x01", False: b""}),
    "span kind": lambda mp: mp.setattr(_wire, "_KIND", dict.fromkeys(SpanKind, b"0\x01")),
    "no status": lambda mp: mp.setattr(_wire, "_status", lambda status: b""),
    "no trace state": lambda mp: mp.setattr(_wire, "_trace_state", lambda state: b""),
}


@pytest.fixture
def fresh_caches() -> Iterator[None]:
    _wire._keys.clear()
    _wire._span_attrs.clear()
    yield
    _wire._keys.clear()
    _wire._span_attrs.clear()


@pytest.mark.parametrize("breakage", sorted(_BREAKAGES))
def test_the_comparison_fails_on_a_broken_encoder(
    breakage: str, monkeypatch: pytest.MonkeyPatch, fresh_caches: None
) -> None:
    """Each deliberate fault in the wire encoder makes the recorded spans differ from the
    official encoder's request: the tests above would catch it."""
    _BREAKAGES[breakage](monkeypatch)
    with pytest.raises(AssertionError):
        assert_same_as_official(_recorded() + _handmade())


def test_nan_is_written_bit_for_bit() -> None:
    """A NaN attribute (no message equals one) is still the official encoder's bytes."""
    spans = [ReadableSpan("s", SpanContext(1, 2, False), attributes={"nan": math.nan})]
    assert_same_as_official(spans)
