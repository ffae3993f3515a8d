"""Hostile baggage and carriers: no card number travels, no bad header breaks extract."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelfin import propagation as P
from otelfin import traced as traced_call

PAN = "4111111111111111"
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Unprintable:
    """A baggage value whose text cannot be rendered."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_card_number_in_app_baggage_key_is_masked_on_inject(spans: InMemorySpanExporter) -> None:
    """A card number in a baggage key the app set leaves the process masked."""
    ctx = baggage.set_baggage(PAN, "v")
    ctx = baggage.set_baggage(f"card {PAN}", "v", ctx)
    carrier: dict[str, str] = {}
    P.inject(carrier, context=ctx)
    assert PAN not in carrier["baggage"]
    assert "XXXXXXXXXXXX1111=v" in carrier["baggage"]


@pytest.mark.parametrize("header", [f"{PAN}=1,a=b", f"k%20{PAN}=1,a=b"])
def test_card_number_in_inbound_baggage_key_is_masked(
    spans: InMemorySpanExporter, header: str
) -> None:
    """A card number in an inbound baggage key (plain or percent-encoded) is masked."""
    entries = baggage.get_all(P.extract({"baggage": header}))
    assert entries["a"] == "b"
    assert not any(PAN in key for key in entries)
    assert any(key.endswith("XXXXXXXXXXXX1111") for key in entries)


def test_unprintable_baggage_value_drops_only_that_entry(spans: InMemorySpanExporter) -> None:
    """One baggage value whose __str__ raises: the other entries are still injected."""
    ctx = baggage.set_baggage("tenant", "acme")
    ctx = baggage.set_baggage("broken", Unprintable(), ctx)
    carrier: dict[str, str] = {}
    P.inject(carrier, context=ctx)
    assert carrier["baggage"] == "tenant=acme"


class _RaisingItems(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("hostile carrier")


_HOSTILE: list[tuple[str, Any, Getter[Any]]] = [
    ("int value", {"traceparent": 5}, P.headers_getter),
    ("None values", {"traceparent": None, "baggage": None}, P.headers_getter),
    ("duplicate traceparent", {"traceparent": [TP, TP]}, P.headers_getter),
    ("oversized", {"traceparent": TP + " " * 100_000}, P.headers_getter),
    ("binary", {"traceparent": b"\xff\xfe" * 30}, P.headers_getter),
    ("raising items()", _RaisingItems(traceparent=TP), P.headers_getter),
    ("int carrier", 5, P.headers_getter),
    ("grpc junk pairs", [("x",), 5, None, (b"traceparent", b"\xff")], P.grpc_metadata_getter),
    ("kafka bad utf-8", [("traceparent", b"\xc3\x28"), (None, b"x")], P.kafka_headers_getter),
    ("amqp nested table", {"traceparent": {"nested": TP}}, P.amqp_headers_getter),
    ("nats huge baggage", {"baggage": "a=" + "b" * 9000}, P.nats_headers_getter),
    ("wsgi int", {"HTTP_TRACEPARENT": 5}, P.wsgi_environ_getter),
    ("asgi junk", {"headers": [(b"traceparent", None), 7]}, P.asgi_scope_getter),
    ("asgi not a list", {"headers": 5}, P.asgi_scope_getter),
]


@pytest.mark.parametrize(("name", "carrier", "getter"), _HOSTILE, ids=[c[0] for c in _HOSTILE])
@pytest.mark.otelfin_internal_errors
def test_hostile_carrier_starts_new_trace(
    spans: InMemorySpanExporter, name: str, carrier: Any, getter: Getter[Any]
) -> None:
    """A malformed carrier never raises from extract and yields no parent and no baggage."""
    ctx = P.extract(carrier, getter)
    assert not trace.get_current_span(ctx).get_span_context().is_valid
    assert not baggage.get_all(ctx)


@pytest.mark.parametrize(
    "setter",
    [P.headers_setter, P.kafka_headers_setter, P.grpc_metadata_setter],
    ids=["headers", "kafka", "grpc"],
)
def test_inject_into_list_with_odd_entries(spans: InMemorySpanExporter, setter: Any) -> None:
    """A list carrier holding odd entries and a stale bytes-named traceparent: one new one."""
    carrier: list[Any] = [(), "junk", None, (b"traceparent", b"00-stale"), ("x-other", "1")]

    @traced_call
    def send() -> None:
        P.inject(carrier, setter)

    send()
    names = [p[0] for p in carrier if isinstance(p, tuple) and len(p) == 2]
    assert [n for n in names if n in ("traceparent", b"traceparent")] == ["traceparent"]
    assert () in carrier and "junk" in carrier
    assert ("x-other", "1") in carrier


def test_inject_into_dict_with_bytes_named_traceparent(spans: InMemorySpanExporter) -> None:
    """A dict carrier already holding a bytes-named traceparent ends up with exactly one."""
    carrier: dict[Any, Any] = {b"traceparent": b"00-stale", "x-other": "1"}

    @traced_call
    def send() -> None:
        P.inject(carrier, P.kafka_headers_setter)

    send()
    assert b"traceparent" not in carrier and "traceparent" in carrier
    assert carrier["x-other"] == "1"


@pytest.mark.parametrize(
    "header", ["note=password=hunter2", "note=token:hunter2", "ok=1,note=pwd=hunter2"]
)
def test_secret_pair_inside_a_baggage_value_is_redacted(header: str) -> None:
    """A key=value secret written inside a baggage value never survives extract (fast path)."""
    from opentelemetry import baggage

    from otelfin.propagation import OtelfinPropagator

    ctx = OtelfinPropagator(("tracecontext", "baggage")).extract({"baggage": header})
    assert "hunter2" not in repr(dict(baggage.get_all(ctx)))
