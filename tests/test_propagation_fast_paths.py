"""The propagator's fast paths give the same answers as the general ones."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from otelfin.propagation import OtelfinPropagator, _formats

_HEX = "0123456789abcdef"
_FIELD = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def reference_traceparent(value: str) -> tuple[int, int, int] | None:
    """The W3C rules for a header without optional whitespace, written out plainly."""
    match = _FIELD.match(value)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex = match.groups()
    if version == "ff":
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":
        return None
    if int(trace_hex, 16) == 0 or int(span_hex, 16) == 0:
        return None
    return int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16) & 0x03


def _field(size: int) -> st.SearchStrategy[str]:
    # Mostly lower-case hex (valid), sometimes upper case, zeros or a stray character.
    return st.one_of(
        st.text(_HEX, min_size=size, max_size=size),
        st.just("0" * size),
        st.text(_HEX + "ABCDEFxg-_ ", min_size=size, max_size=size),
    )


@given(
    st.sampled_from(["00", "01", "fe", "ff", "0A"]),
    _field(32),
    _field(16),
    _field(2),
    st.sampled_from(["-", "_"]),
)
def test_traceparent_fast_path_matches_the_rules(
    version: str, trace_hex: str, span_hex: str, flags: str, dash: str
) -> None:
    """Any 55-character header: the version-00 fast path answers as the W3C rules do."""
    value = f"{version}{dash}{trace_hex}-{span_hex}-{flags}"
    assert len(value) == 55
    assert _formats.parse_traceparent(value) == reference_traceparent(value)


def test_traceparent_flags_keep_only_sampled_and_random() -> None:
    """Unknown flag bits are dropped on the fast path too (ff -> 3, 09 -> 1)."""
    ids = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
    assert _formats.parse_traceparent(ids + "ff") == (
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
        3,
    )
    assert _formats.parse_traceparent(ids + "09")[2] == 1  # type: ignore[index]
    assert _formats.parse_traceparent(ids + "0F".lower())[2] == 3  # type: ignore[index]
    assert _formats.parse_traceparent(ids + "0F") is None  # upper case is invalid


@given(st.text("abz019=,@*/ -_\t%", max_size=40))
def test_lazy_tracestate_reads_as_parsed(header: str) -> None:
    """A LazyTraceState reads exactly as parse_tracestate's result, on every access."""
    lazy = _formats.LazyTraceState(header)
    expected = dict(_formats.parse_tracestate((header,)))
    assert dict(lazy.items()) == expected
    assert len(lazy) == len(expected)
    assert dict(lazy) == expected
    for key, value in expected.items():
        assert lazy[key] == value


def test_lazy_tracestate_parses_once(monkeypatch: object) -> None:
    """The header is parsed on the first read only; later reads use the stored members."""
    calls: list[tuple[str, ...]] = []
    real = _formats.parse_tracestate

    def counting(values: tuple[str, ...]) -> _formats.W3CTraceState:
        calls.append(tuple(values))
        return real(values)

    monkeypatch.setattr(_formats, "parse_tracestate", counting)  # type: ignore[attr-defined]
    lazy = _formats.LazyTraceState("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    assert calls == []
    assert lazy["rojo"] == "00f067aa0ba902b7"
    assert len(lazy) == 2 and "congo" in lazy and lazy.to_header()
    assert calls == [("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",)]


def test_baggage_digit_runs_and_card_numbers() -> None:
    """A Luhn-invalid 16-digit order id travels intact; a card number in a value is masked,
    also when the same header arrives again (the cache never keeps a masked header)."""
    from opentelemetry import baggage

    propagator = OtelfinPropagator()
    order = {"baggage": "order.id=1234567890123456,channel=web"}
    for _ in range(2):
        assert dict(baggage.get_all(propagator.extract(order))) == {
            "order.id": "1234567890123456",
            "channel": "web",
        }
    card = {"baggage": "note=4111111111111111,channel=web"}
    for _ in range(2):
        entries = dict(baggage.get_all(propagator.extract(card)))
        assert "4111111111111111" not in entries["note"]
        assert entries["note"].endswith("1111")
        assert entries["channel"] == "web"
    spaced = {"baggage": "note=4111-1111-1111-1111"}
    assert "4111-1111-1111-1111" not in str(baggage.get_all(propagator.extract(spaced)))
