"""Property tests: round trips through every carrier, hostile input, context isolation."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, context, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otelfin import scrub
from otelfin.propagation import (
    OtelfinPropagator,
    _formats,
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

PROPAGATOR = OtelfinPropagator(("tracecontext", "baggage"))
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]")

# --- strategies ---------------------------------------------------------------------------------

ts_key = st.from_regex(r"[a-z0-9][a-z0-9_\-*/@]{0,20}", fullmatch=True)
ts_value = st.from_regex(
    r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,20}[\x21-\x2b\x2d-\x3c\x3e-\x7e]", fullmatch=True
)
text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
safe_value = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20).filter(
    lambda v: not scrub.find_pans(v)
)
bag_key = text.filter(lambda k: not scrub.is_secret_key(k))


@st.composite
def contexts(draw: st.DrawFn) -> Context:
    span_context = SpanContext(
        draw(st.integers(1, 2**128 - 1)),
        draw(st.integers(1, 2**64 - 1)),
        True,
        TraceFlags(draw(st.integers(0, 3))),
        _formats.W3CTraceState(draw(st.dictionaries(ts_key, ts_value, max_size=8)).items()),
    )
    ctx = trace.set_span_in_context(NonRecordingSpan(span_context), Context())
    for key, value in draw(st.dictionaries(bag_key, safe_value, max_size=6)).items():
        ctx = baggage.set_baggage(key, value, ctx)
    return ctx


# Each carrier: an empty carrier, its setter, a conversion to what the receiving side sees,
# and its getter.
def _to_environ(d: dict[str, str]) -> dict[str, str]:
    return {"HTTP_" + k.upper().replace("-", "_"): v for k, v in d.items()}


def _to_scope(d: dict[str, str]) -> dict[str, Any]:
    return {"type": "http", "headers": [(k.encode(), v.encode()) for k, v in d.items()]}


CARRIERS: dict[str, tuple[Callable[[], Any], Setter[Any], Callable[[Any], Any], Getter[Any]]] = {
    "http-dict": (
        dict,
        headers_setter,
        lambda c: {k.title(): v for k, v in c.items()},
        headers_getter,
    ),
    "http-pairs": (list, headers_setter, lambda c: c, headers_getter),
    "wsgi": (dict, headers_setter, _to_environ, wsgi_environ_getter),
    "asgi": (dict, headers_setter, _to_scope, asgi_scope_getter),
    "grpc": (list, grpc_metadata_setter, tuple, grpc_metadata_getter),
    "kafka": (list, kafka_headers_setter, lambda c: c, kafka_headers_getter),
    "amqp": (
        dict,
        amqp_headers_setter,
        lambda c: {k: v.encode() for k, v in c.items()},
        amqp_headers_getter,
    ),
    "nats": (dict, nats_headers_setter, lambda c: c, nats_headers_getter),
}


def span_of(ctx: Context) -> SpanContext:
    return trace.get_current_span(ctx).get_span_context()


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(ctx=contexts(), carrier=st.sampled_from(sorted(CARRIERS)))
def test_inject_extract_round_trips_for_every_carrier(ctx: Context, carrier: str) -> None:
    """Trace id, span id, flags, tracestate and baggage survive each carrier unchanged."""
    make, setter, convert, getter = CARRIERS[carrier]
    out = make()
    PROPAGATOR.inject(out, ctx, setter)
    back = PROPAGATOR.extract(convert(out), getter=getter)
    sent, got = span_of(ctx), span_of(back)
    assert (got.trace_id, got.span_id, got.trace_flags) == (
        sent.trace_id,
        sent.span_id,
        sent.trace_flags,
    )
    assert dict(got.trace_state) == dict(sent.trace_state)
    assert dict(baggage.get_all(back)) == dict(baggage.get_all(ctx))


hostile_text = st.one_of(
    st.text(max_size=300),
    st.from_regex(r"[0-9a-fA-F\-]{0,80}", fullmatch=True),
    st.builds(
        lambda v, t, s, f: f"{v}-{t}-{s}-{f}",
        st.from_regex(r"[0-9a-f]{1,3}", fullmatch=True),
        st.from_regex(r"[0-9a-f]{30,34}", fullmatch=True),
        st.from_regex(r"[0-9a-f]{14,18}", fullmatch=True),
        st.from_regex(r"[0-9a-f.]{1,3}", fullmatch=True),
    ),
)
hostile_value = st.one_of(hostile_text, st.binary(max_size=200), st.lists(hostile_text, max_size=3))
names = st.one_of(
    st.sampled_from(
        ["traceparent", "TraceParent", "tracestate", "baggage", "b3", "X-B3-TraceId", "x-b3-spanid"]
    ),
    st.text(max_size=20),
    st.binary(max_size=20),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=st.dictionaries(names, hostile_value, max_size=8),
    getter=st.sampled_from(
        [
            headers_getter,
            wsgi_environ_getter,
            asgi_scope_getter,
            grpc_metadata_getter,
            kafka_headers_getter,
        ]
    ),
)
def test_malformed_input_never_raises_and_is_never_re_emitted(
    headers: dict[Any, Any], getter: Getter[Any]
) -> None:
    """Any carrier content extracts without raising; what is re-injected is always valid."""
    carrier: Any = headers
    if getter is asgi_scope_getter:
        carrier = {"headers": list(headers.items())}
    elif getter in (grpc_metadata_getter, kafka_headers_getter):
        carrier = list(headers.items())
    ctx = PROPAGATOR.extract(carrier, getter=getter)
    out: dict[str, str] = {}
    OtelfinPropagator(("tracecontext", "baggage", "b3")).inject(out, ctx)
    if "traceparent" in out:
        assert TRACEPARENT.fullmatch(out["traceparent"])
        assert _formats.parse_tracestate([out.get("tracestate", "")]) == span_of(ctx).trace_state
    if "baggage" in out:
        assert _formats.parse_baggage([out["baggage"]]) or out["baggage"] == ""


@given(st.text(max_size=600))
def test_parsers_never_raise(value: str) -> None:
    """Each header parser returns (None or a value) for any text."""
    _formats.parse_traceparent(value)
    _formats.parse_tracestate([value])
    _formats.parse_baggage([value])
    _formats.parse_b3_single(value)
    _formats.parse_b3_multi(value, value, value, value)


# --- context isolation --------------------------------------------------------------------------


def _traceparent(i: int) -> str:
    return f"00-{i + 1:032x}-{i + 7:016x}-01"


async def _continue(i: int, tracer: trace.Tracer) -> tuple[int, int]:
    ctx = PROPAGATOR.extract({"traceparent": _traceparent(i), "baggage": f"request={i}"})
    token = context.attach(ctx)
    try:
        with tracer.start_as_current_span(f"handle-{i}"):
            for _ in range(3):
                await asyncio.sleep(random.random() / 1000)
                seen = trace.get_current_span().get_span_context().trace_id
                assert seen == i + 1, (i, seen)
                assert baggage.get_baggage("request") == str(i)
            return i, seen
    finally:
        context.detach(token)


async def test_hundreds_of_asyncio_tasks_keep_their_own_context() -> None:
    """500 concurrent tasks each continue their own incoming trace and baggage."""
    tracer = TracerProvider().get_tracer("isolation")
    results = await asyncio.gather(*(_continue(i, tracer) for i in range(500)))
    assert all(i + 1 == seen for i, seen in results)
    assert not trace.get_current_span().get_span_context().is_valid


def test_thread_pool_workers_keep_their_own_context() -> None:
    """400 jobs over 16 threads never see another job's trace or baggage."""
    tracer = TracerProvider().get_tracer("isolation")

    def job(i: int) -> bool:
        assert not trace.get_current_span().get_span_context().is_valid  # nothing leaked in
        ctx = PROPAGATOR.extract({"traceparent": _traceparent(i), "baggage": f"request={i}"})
        token = context.attach(ctx)
        try:
            with tracer.start_as_current_span("job"):
                out: dict[str, str] = {}
                PROPAGATOR.inject(out)
                return (
                    out["traceparent"][3:35] == f"{i + 1:032x}" and out["baggage"] == f"request={i}"
                )
        finally:
            context.detach(token)

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert all(pool.map(job, range(400)))
