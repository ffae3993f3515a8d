"""otelfin's composite propagator: W3C Trace Context, B3, baggage, configuration."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otelfin import _internal
from otelfin.propagation import OtelfinPropagator, _formats
from otelfin.testing import configured_for_test

TRACE = "12345678901234567890123456789012"
SPAN = "1234567890123456"
TP = f"00-{TRACE}-{SPAN}-01"
B3_TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
B3_SPAN = "e457b5a2e4d86bd1"


def parent(ctx: Context) -> SpanContext:
    return trace.get_current_span(ctx).get_span_context()


def extract(headers: object, **kwargs: object) -> Context:
    return OtelfinPropagator(**kwargs).extract(headers)  # type: ignore[arg-type]


def ctx_with(trace_id: int, span_id: int, flags: int = 1, state: dict[str, str] | None = None):
    span_context = SpanContext(
        trace_id,
        span_id,
        True,
        TraceFlags(flags),
        _formats.W3CTraceState((state or {}).items()),
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


# --- traceparent --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        TP,
        f" {TP}",
        f"\t{TP} \t",
        f"cc-{TRACE}-{SPAN}-01",
        f"cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like",
    ],
)
def test_valid_traceparent_is_continued(value: str) -> None:
    """Valid values, with OWS and future versions with extra fields, keep the trace id."""
    ctx = parent(extract({"traceparent": value}))
    assert ctx.is_valid and ctx.is_remote
    assert f"{ctx.trace_id:032x}" == TRACE
    assert f"{ctx.span_id:016x}" == SPAN


@pytest.mark.parametrize(
    "value",
    [
        f"{TP}.",
        f"{TP}-extra",
        f"ff-{TRACE}-{SPAN}-01",
        f"cc-{TRACE}-{SPAN}-01.what-the-future",
        f"0-{TRACE}-{SPAN}-01",
        f"000-{TRACE}-{SPAN}-01",
        f".0-{TRACE}-{SPAN}-01",
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{'AB' * 16}-{SPAN}-01",
        f"00-{TRACE}1-{SPAN}-01",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-.0",
        f"00-{TRACE}-{SPAN}-001",
        f"00-{TRACE}-{SPAN}-1",
        "",
        "x" * 10000,
    ],
)
def test_invalid_traceparent_starts_a_new_trace(value: str) -> None:
    """Every malformed traceparent the W3C suite sends yields no parent."""
    assert not parent(extract({"traceparent": value})).is_valid


def test_repeated_traceparent_is_invalid() -> None:
    """Two traceparent headers (a multi-valued carrier) are treated as no parent."""
    headers = [("traceparent", TP), ("traceparent", f"00-{'a' * 32}-{SPAN}-01")]
    assert not parent(extract(headers)).is_valid


def test_header_names_are_case_insensitive() -> None:
    """TraceParent, TRACESTATE and Baggage in any casing are read from a plain dict."""
    ctx = extract({"TrAcEpArEnT": TP, "TRACESTATE": "foo=1", "BAGGAGE": "k=v"})
    assert f"{parent(ctx).trace_id:032x}" == TRACE
    assert dict(parent(ctx).trace_state) == {"foo": "1"}
    assert baggage.get_baggage("k", ctx) == "v"


def test_flags_keep_sampled_and_random_bits_only() -> None:
    """Unknown flag bits are dropped; sampled (0x01) and random (0x02) survive."""
    ctx = parent(extract({"traceparent": f"00-{TRACE}-{SPAN}-ff"}))
    assert ctx.trace_flags == 0x03


def test_random_flag_reaches_child_span_injection() -> None:
    """A child of a parent with the random flag injects it (Trace Context level 2)."""
    with configured_for_test() as _:
        ctx = propagate.extract({"traceparent": f"00-{TRACE}-{SPAN}-02"})
        span = trace.get_tracer("t").start_span("child", context=ctx)
        out: dict[str, str] = {}
        propagate.inject(out, trace.set_span_in_context(span, ctx))
        span.end()
    assert out["traceparent"].startswith(f"00-{TRACE}-")
    assert int(out["traceparent"][-2:], 16) & 0x02


# --- tracestate ---------------------------------------------------------------------------------


def state_of(*values: str) -> dict[str, str]:
    headers = [("traceparent", TP)] + [("tracestate", v) for v in values]
    return dict(parent(extract(headers)).trace_state)


def test_tracestate_keys_of_the_current_grammar_are_kept() -> None:
    """foo@, foo@@bar, foo@bar@baz and long tenant/vendor parts survive (OTel drops them)."""
    assert state_of("foo@=1,bar=2") == {"foo@": "1", "bar": "2"}
    assert state_of("foo@@bar=1,bar=2") == {"foo@@bar": "1", "bar": "2"}
    assert state_of("foo@bar@baz=1,bar=2") == {"foo@bar@baz": "1", "bar": "2"}
    key = "t" * 242 + "@v"
    assert state_of("foo=1", f"{key}=1") == {"foo": "1", key: "1"}
    key = "t@" + "v" * 15
    assert state_of("foo=1", f"{key}=1") == {"foo": "1", key: "1"}


@pytest.mark.parametrize(
    "values",
    [
        ("@foo=1,bar=2",),
        ("foo =1",),
        ("FOO=1",),
        ("foo.bar=1",),
        ("foo=bar=baz",),
        ("foo=,bar=3",),
        ("foo=1", "z" * 257 + "=1"),
        (",".join(f"k{i}={i}" for i in range(33)),),
    ],
)
def test_invalid_tracestate_is_dropped_whole(values: tuple[str, ...]) -> None:
    """One invalid member (or 33 members) discards the whole tracestate, not the trace."""
    headers = [("traceparent", TP)] + [("tracestate", v) for v in values]
    ctx = parent(extract(headers))
    assert f"{ctx.trace_id:032x}" == TRACE
    assert dict(ctx.trace_state) == {}


def test_tracestate_of_32_members_over_several_headers_is_kept_in_order() -> None:
    """Members are combined across headers in order; exactly 32 are allowed."""
    members = [f"bar{i:02d}={i:02d}" for i in range(1, 33)]
    state = state_of(",".join(members[:10]), ",".join(members[10:20]), ",".join(members[20:]))
    assert list(state) == [m.split("=")[0] for m in members]


def test_tracestate_duplicates_keep_the_first_and_empty_headers_are_ignored() -> None:
    """Duplicate keys keep the first value; empty headers and OWS are skipped."""
    assert state_of("foo=1,foo=2") == {"foo": "1"}
    assert state_of("foo=1", "foo=2") == {"foo": "1"}
    assert state_of("", "foo=1", "") == {"foo": "1"}
    assert state_of("foo=1 \t , \t bar=2") == {"foo": "1", "bar": "2"}


def test_tracestate_without_traceparent_is_ignored() -> None:
    """tracestate alone carries no parent."""
    assert not parent(extract({"tracestate": "foo=1"})).is_valid


def test_tracestate_round_trips_and_is_trimmed_to_512() -> None:
    """Injected tracestate equals the extracted one; beyond 512 chars long members go first."""
    out: dict[str, str] = {}
    OtelfinPropagator().inject(out, ctx_with(1, 2, state={"foo@": "1", "bar": "2"}))
    assert out["tracestate"] == "foo@=1,bar=2"
    big = {f"k{i}": "v" * 20 for i in range(30)} | {"long": "x" * 200}
    header = _formats.format_tracestate(big)
    assert len(header) <= 512
    assert "long=" not in header
    assert header.startswith("k0=")


# --- B3 -----------------------------------------------------------------------------------------


def test_b3_single_with_128_and_64_bit_ids() -> None:
    """b3 single header: 128-bit and 64-bit (left-padded) trace ids, sampling and parent."""
    ctx = parent(extract({"b3": f"{B3_TRACE}-{B3_SPAN}-1-05e3ac9a4f6e3b90"}))
    assert f"{ctx.trace_id:032x}" == B3_TRACE and ctx.trace_flags.sampled
    ctx = parent(extract({"b3": f"{B3_TRACE[16:]}-{B3_SPAN}-0"}))
    assert f"{ctx.trace_id:032x}" == "0" * 16 + B3_TRACE[16:]
    assert not ctx.trace_flags.sampled


def test_b3_multi_with_debug_flag() -> None:
    """X-B3-* headers in any casing; X-B3-Flags: 1 (debug) means sampled."""
    ctx = parent(
        extract(
            {
                "x-b3-traceid": B3_TRACE,
                "X-B3-SPANID": B3_SPAN,
                "X-B3-Sampled": "0",
                "X-B3-Flags": "1",
            }
        )
    )
    assert f"{ctx.trace_id:032x}" == B3_TRACE and ctx.trace_flags.sampled


@pytest.mark.parametrize(
    "headers",
    [
        {"b3": "0"},
        {"b3": f"{B3_TRACE}-{B3_SPAN}-x"},
        {"b3": f"{'0' * 32}-{B3_SPAN}-1"},
        {"b3": f"{B3_TRACE}-{B3_SPAN[:-1]}-1"},
        {"X-B3-TraceId": B3_TRACE},
        {"X-B3-TraceId": "xyz", "X-B3-SpanId": B3_SPAN},
    ],
)
def test_invalid_b3_yields_no_parent(headers: dict[str, str]) -> None:
    """Sampling-only, malformed or incomplete B3 headers carry no parent."""
    assert not parent(extract(headers)).is_valid


def test_w3c_wins_over_b3_and_invalid_w3c_falls_back_to_b3() -> None:
    """Valid W3C and B3 disagreeing: W3C; invalid W3C with valid B3: B3."""
    both = {"traceparent": TP, "b3": f"{B3_TRACE}-{B3_SPAN}-1"}
    assert f"{parent(extract(both)).trace_id:032x}" == TRACE
    broken = {
        "traceparent": f"00-{TRACE}-{SPAN}-0x",
        "X-B3-TraceId": B3_TRACE,
        "X-B3-SpanId": B3_SPAN,
    }
    assert f"{parent(extract(broken)).trace_id:032x}" == B3_TRACE


def test_b3_inject_formats() -> None:
    """Inject list b3 writes the single header, b3multi the lower-case x-b3-* headers."""
    ctx = ctx_with(int(B3_TRACE, 16), int(B3_SPAN, 16))
    out: dict[str, str] = {}
    OtelfinPropagator(("b3", "b3multi")).inject(out, ctx)
    assert out == {
        "b3": f"{B3_TRACE}-{B3_SPAN}-1",
        "x-b3-traceid": B3_TRACE,
        "x-b3-spanid": B3_SPAN,
        "x-b3-sampled": "1",
    }


@pytest.mark.parametrize("flags", [0, 1])
def test_b3multi_inject_is_read_by_opentelemetry_b3_from_a_plain_dict(flags: int) -> None:
    """OpenTelemetry's own B3 multi and single propagators read what otelfin writes."""
    from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat

    ctx = ctx_with(int(B3_TRACE, 16), int(B3_SPAN, 16), flags)
    out: dict[str, str] = {}
    OtelfinPropagator(("b3multi", "b3")).inject(out, ctx)
    assert OtelfinPropagator(("b3multi",)).fields == {"x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}
    for theirs in (B3MultiFormat(), B3SingleFormat()):
        got = parent(theirs.extract(out))
        assert got.is_valid, type(theirs).__name__
        assert (got.trace_id, got.span_id, int(got.trace_flags)) == (
            int(B3_TRACE, 16),
            int(B3_SPAN, 16),
            flags,
        )


def test_b3multi_inject_replaces_a_differently_cased_header() -> None:
    """A carrier holding X-B3-TraceId from an earlier hop ends with one, lower-case, copy."""
    out = {"X-B3-TraceId": "0" * 31 + "1", "X-B3-SpanId": "0" * 15 + "1"}
    OtelfinPropagator(("b3multi",)).inject(out, ctx_with(int(B3_TRACE, 16), int(B3_SPAN, 16)))
    assert out == {"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-sampled": "1"}


# --- baggage ------------------------------------------------------------------------------------


def test_baggage_round_trip_with_escapes() -> None:
    """Values with spaces, commas and non-ASCII survive inject -> extract."""
    ctx = baggage.set_baggage("note", "a b,c;d=é+", ctx_with(1, 2))
    ctx = baggage.set_baggage("tenant", "acme", ctx)
    out: dict[str, str] = {}
    OtelfinPropagator().inject(out, ctx)
    back = OtelfinPropagator().extract(out)
    assert dict(baggage.get_all(back)) == {"note": "a b,c;d=é+", "tenant": "acme"}


def test_baggage_card_numbers_are_masked_on_inject() -> None:
    """A PAN in a baggage value never leaves unmasked; secret keys are dropped."""
    ctx = baggage.set_baggage("customer.card", "4111 1111 1111 1111", Context())
    ctx = baggage.set_baggage("password", "hunter2", ctx)
    ctx = baggage.set_baggage("order", "1234567890123", ctx)  # Luhn-invalid: kept
    out: dict[str, str] = {}
    OtelfinPropagator().inject(out, ctx)
    sent = unquote(out["baggage"])
    assert "4111 1111 1111 1111" not in sent and "4111111111111111" not in sent
    masked = sent.split("customer.card=")[1].split(",")[0]
    assert masked.endswith("1111") and "4111" not in masked
    assert "password" not in sent and "hunter2" not in sent
    assert "order=1234567890123" in sent


def test_baggage_card_numbers_are_masked_on_extract() -> None:
    """Inbound baggage, even percent-encoded, has its card numbers masked."""
    encoded = "".join(f"%{ord(c):02X}" for c in "4111111111111111")
    ctx = extract({"baggage": f"a=4111111111111111,b={encoded},c=plain"})
    values = dict(baggage.get_all(ctx))
    assert "4111111111111111" not in values["a"] and values["a"].endswith("1111")
    assert "4111111111111111" not in values["b"]
    assert values["c"] == "plain"


def test_malformed_baggage_members_are_skipped() -> None:
    """Bad members are skipped, good ones kept; oversized headers are ignored whole."""
    ctx = extract({"baggage": "good=1, bad key=2,=3,novalue,ok = 4 ;prop=x"})
    assert dict(baggage.get_all(ctx)) == {"good": "1", "ok": "4"}
    assert dict(baggage.get_all(extract({"baggage": "k=" + "v" * 9000}))) == {}


def test_baggage_properties_survive_extract_then_inject() -> None:
    """Member properties (ttl=30, a bare flag) travel on; the value itself has none."""
    ctx = extract({"baggage": "tenant=acme;ttl=30, channel = web ; flag ;x = 1,plain=p"})
    assert dict(baggage.get_all(ctx)) == {"tenant": "acme", "channel": "web", "plain": "p"}
    out: dict[str, str] = {}
    OtelfinPropagator().inject(out, ctx)
    assert out["baggage"].split(",") == ["tenant=acme;ttl=30", "channel=web;flag;x=1", "plain=p"]
    # OpenTelemetry's baggage propagator reads the same members (it keeps properties in the value)
    theirs = dict(baggage.get_all(W3CBaggagePropagator().extract(out)))
    assert theirs == {"tenant": "acme;ttl=30", "channel": "web;flag;x=1", "plain": "p"}


def test_baggage_properties_follow_their_value() -> None:
    """A property stays with an untouched entry, leaves with a changed one, and survives the
    application adding other entries."""
    ctx = extract({"baggage": "tenant=acme;ttl=30,region=eu;ttl=5"})
    ctx = baggage.set_baggage("region", "us", ctx)
    ctx = baggage.set_baggage("extra", "1", ctx)
    out: dict[str, str] = {}
    OtelfinPropagator().inject(out, ctx)
    assert sorted(out["baggage"].split(",")) == ["extra=1", "region=us", "tenant=acme;ttl=30"]


def test_baggage_properties_are_scrubbed() -> None:
    """A secret-named property is dropped; a property holding a card number drops them all."""
    ctx = extract({"baggage": "a=1;password=x;ttl=3,b=2;note=4111111111111111;ttl=3"})
    out: dict[str, str] = {}
    OtelfinPropagator().inject(out, ctx)
    assert out["baggage"].split(",") == ["a=1;ttl=3", "b=2"]


def test_baggage_member_with_a_bad_property_is_skipped() -> None:
    """One invalid property makes its member invalid (as for OpenTelemetry); others stay."""
    assert _formats.parse_baggage_members(["a=1;bad prop=2,b=2;ok"]) == ({"b": "2"}, {"b": "ok"})


@pytest.mark.parametrize("separator", [",", ", ", " , ", "\t,\t"])
@pytest.mark.parametrize("members", [179, 180, 181, 250])
def test_baggage_limits_ignore_optional_whitespace(separator: str, members: int) -> None:
    """The 180-member cap and the 8192-character limit give the same result with or
    without optional whitespace around the commas."""
    header = separator.join(f"k{i:03d}={'v' * 20}" for i in range(members))
    tight = ",".join(f"k{i:03d}={'v' * 20}" for i in range(members))
    assert _formats.parse_baggage([header]) == _formats.parse_baggage([tight])
    assert len(_formats.parse_baggage([header])) == min(members, 180)


@pytest.mark.parametrize("members", [180, 181])
def test_baggage_length_limit_ignores_optional_whitespace(members: int) -> None:
    """A header that fits 8192 characters without its OWS is read; one that does not is not."""
    value = "v" * 39  # 180 members of 44 characters: 8099 with commas, 8278 with ", "
    tight = ",".join(f"k{i:03d}={value}" for i in range(members))
    spaced = ", ".join(f"k{i:03d} = {value} " for i in range(members))
    assert len(spaced) > _formats.MAX_BAGGAGE_LENGTH
    assert _formats.parse_baggage([spaced]) == _formats.parse_baggage([tight])
    assert len(_formats.parse_baggage([spaced])) == (180 if len(tight) <= 8192 else 0)


def test_extract_merges_with_existing_baggage() -> None:
    """Baggage already in the given context is kept, inbound entries override."""
    base = baggage.set_baggage("a", "1", baggage.set_baggage("b", "1", Context()))
    ctx = OtelfinPropagator().extract({"baggage": "b=2,c=3"}, base)
    assert dict(baggage.get_all(ctx)) == {"a": "1", "b": "2", "c": "3"}


# --- interop, robustness, configuration ---------------------------------------------------------


def test_interoperates_with_opentelemetry_propagators() -> None:
    """otelfin inject -> OTel extract and OTel inject -> otelfin extract agree."""
    theirs = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    ctx = baggage.set_baggage(
        "tenant", "acme", ctx_with(int(TRACE, 16), int(SPAN, 16), 1, {"a": "b"})
    )
    mine: dict[str, str] = {}
    OtelfinPropagator().inject(mine, ctx)
    back = theirs.extract(mine)
    assert parent(back) == parent(ctx)
    assert dict(baggage.get_all(back)) == {"tenant": "acme"}
    their_out: dict[str, str] = {}
    theirs.inject(their_out, ctx)
    assert parent(OtelfinPropagator().extract(their_out)) == parent(ctx)


class _BrokenGetter:
    def get(self, carrier: object, key: str) -> list[str]:
        raise RuntimeError("boom")

    def keys(self, carrier: object) -> list[str]:
        raise RuntimeError("boom")


@pytest.mark.otelfin_internal_errors
def test_a_failing_getter_never_raises() -> None:
    """A getter that raises yields the original context and is counted once."""
    base = Context()
    assert OtelfinPropagator().extract({}, base, _BrokenGetter()) is base  # type: ignore[arg-type]
    assert _internal.internal_error_counts().get("propagation.extract") == 1


def test_unknown_propagator_name_is_a_configuration_error() -> None:
    """An inject format that is neither built in nor installed fails at start-up."""
    with pytest.raises(ValueError, match="unknown propagator 'nope'"):
        OtelfinPropagator(("tracecontext", "nope"))


def test_configure_installs_the_global_propagator_and_shutdown_restores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """configure() sets otelfin's propagator from OTEL_PROPAGATORS; shutdown puts back the old."""
    before = propagate.get_global_textmap()
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext,b3multi")
    with configured_for_test():
        installed = propagate.get_global_textmap()
        assert isinstance(installed, OtelfinPropagator)
        assert installed.formats == ("tracecontext", "b3multi")
        tracer = trace.get_tracer("t")
        with tracer.start_as_current_span("s"):
            out: dict[str, str] = {}
            propagate.inject(out)
        assert {"traceparent", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"} <= set(out)
        assert "baggage" not in propagate.get_global_textmap().fields
    assert propagate.get_global_textmap() is before


def test_reconfigure_with_same_formats_keeps_the_same_propagator() -> None:
    """configure() twice with the same formats does not replace the propagator."""
    from otelfin import _config

    trace.set_tracer_provider(TracerProvider())
    _config.configure("svc-a", traces_exporter="none")
    first = propagate.get_global_textmap()
    _config.configure("svc-b", traces_exporter="none")
    assert propagate.get_global_textmap() is first
    _config.configure("svc-b", traces_exporter="none", propagators="b3")
    assert propagate.get_global_textmap() is not first
