"""OTLP trace requests written straight to the protobuf wire format, for OTLP/HTTP export.

Why hand-written: the official ``encode_spans`` builds a protobuf message object for every
span, attribute, value, event and link in Python, then serializes the tree; on the benchmark
machine that was ~30-40 us a span on the export thread, most of what export cost (the e2e
benchmark's export thread: ~150 us a request for 3 spans). No library writes OTLP from SDK
spans faster: the protobuf runtime's C serializer is fast, but filling its messages from
Python is the slow part, and that is what the official encoder does. This module writes the
same bytes directly: varint-prefixed fields joined into one ``bytes``, with the key and
short-string attribute fields of recurring attributes kept ready (bounded caches): 7.5 us a
span against 36.9 for the official encoder (``benchmarks/bench_span_encoding.py``).

It follows the official encoder (opentelemetry-exporter-otlp-proto-common 1.4x) field for
field, including what that encoder leaves out: spans grouped by resource, then by scope, in
order of first appearance (equal resources and scopes merge, as the official dict keys do);
the resource's attributes only (no dropped count), the scope's name, version and attributes
with the scope's ``schema_url`` on ``ScopeSpans``; span and link ``flags`` with the
has-is-remote bit always set and the is-remote bit from the parent's (a link's own) context;
links without their trace state; a ``None`` attribute value as an empty ``AnyValue``. The
output is byte for byte the official ``SerializePartialToString()`` for the spans it accepts
(tests/test_wire_encoder.py checks that, and decoded equality, on handmade and generated
spans).

What it does not know it refuses (:class:`Refused`, or any exception: an attribute value of
an unknown type, an int outside int64, a string that is not valid UTF-8); the caller then
encodes that batch with the official encoder, which has its own answer for each (it drops the
attribute and logs, or fails the batch).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from operator import index
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

__all__ = ["Refused", "encode_request"]


class Refused(ValueError):
    """A value this encoder does not write; the official encoder takes the batch instead."""


_SMALL = tuple(bytes((i,)) for i in range(128))
_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT32_MAX = 2**32 - 1

# The official encoder's SpanKind map (SPAN_KIND_INTERNAL = 1, ...).
_KIND = {
    SpanKind.INTERNAL: b"0\x01",
    SpanKind.SERVER: b"0\x02",
    SpanKind.CLIENT: b"0\x03",
    SpanKind.PRODUCER: b"0\x04",
    SpanKind.CONSUMER: b"0\x05",
}
# Span.flags (field 16) and Link.flags (field 6), fixed32: SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE
# (0x100), with SPAN_FLAGS_CONTEXT_IS_REMOTE (0x200) when the context is remote.
_SPAN_FLAGS_LOCAL = b"\x85\x01\x00\x01\x00\x00"
_SPAN_FLAGS_REMOTE = b"\x85\x01\x00\x03\x00\x00"
_LINK_FLAGS_LOCAL = b"\x35\x00\x01\x00\x00"
_LINK_FLAGS_REMOTE = b"\x35\x00\x03\x00\x00"
_BOOL = {True: b"\x10\x01", False: b"\x10\x00"}


def _varint(n: int) -> bytes:
    """``n`` (0 <= n < 2**64) as a base-128 varint."""
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: ``tag``, the length of ``body``, ``body``."""
    n = len(body)
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + body


def _count(tag: bytes, n: int) -> bytes:
    """A uint32 field (a dropped count): nothing when 0, as proto3 writes it."""
    if not n:
        return b""
    if not 0 < n <= _UINT32_MAX:
        raise Refused(f"count out of uint32 range: {n!r}")
    return tag + _varint(n)


def _int64(value: int) -> bytes:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise Refused("int attribute outside int64")
    return b"\x18" + _varint(value if value >= 0 else value + (1 << 64))


def _any_value(value: Any) -> bytes:
    """The body of an ``AnyValue`` holding ``value``, in the official encoder's type order."""
    kind = type(value)
    if kind is str:
        return _field(b"\n", value.encode())
    if kind is bool:
        return _BOOL[value]
    if kind is int:
        return _int64(value)
    if kind is float:
        return b"!" + _pack_double(value)
    if kind is tuple or kind is list:
        return _field(b"*", b"".join([_field(b"\n", _any_value(v)) for v in value]))
    return _any_value_slow(value)


def _any_value_slow(value: Any) -> bytes:
    # Subclasses and the rarer types, tested in the official encoder's order (bool before int;
    # str and bytes before Sequence; Sequence before Mapping).
    if value is None:
        return b""
    if isinstance(value, bool):
        return _BOOL[bool(value)]
    if isinstance(value, str):
        return _field(b"\n", str.encode(value))
    if isinstance(value, int):
        return _int64(index(value))
    if isinstance(value, float):
        return b"!" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(b":", bytes(value))
    if isinstance(value, Sequence):
        return _field(b"*", b"".join([_field(b"\n", _any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        pairs = [_field(b"\n", _key_value(str(k), v)) for k, v in value.items()]
        return _field(b"2", b"".join(pairs))
    raise Refused(f"attribute value of type {type(value).__name__}")


# Recurring keys and short string values, ready written. Each cache is cleared when full, so
# memory stays bounded whatever the attribute cardinality.
_CACHE_MAX = 4096
_SHORT = 128
_keys: dict[str, bytes] = {}
_span_attrs: dict[tuple[str, str | int], bytes] = {}


def _key(key: str) -> bytes:
    """The ``key`` field of a ``KeyValue`` (nothing for an empty key, as proto3 writes it)."""
    written = _keys.get(key)
    if written is None:
        if type(key) is not str:
            raise Refused("attribute key is not a str")
        written = _field(b"\n", key.encode()) if key else b""
        if len(_keys) >= _CACHE_MAX:
            _keys.clear()
        _keys[key] = written
    return written


def _key_value(key: str, value: Any) -> bytes:
    return _key(key) + _field(b"\x12", _any_value(value))


def _attributes(tag: bytes, attributes: Any) -> list[bytes]:
    """Each attribute as a ``KeyValue`` field with ``tag``."""
    if not attributes:
        return []
    return [_field(tag, _key_value(k, v)) for k, v in attributes.items()]


def _span_attributes(attributes: Any) -> list[bytes]:
    """A span's attributes as ``Span.attributes`` fields (tag 9); ints and string values up
    to :data:`_SHORT` characters come from (and go to) the cache (an int and a str are never
    equal keys; bools and floats, which compare equal to ints, are never cached)."""
    if not attributes:
        return []
    out = []
    cache = _span_attrs
    for k, v in attributes.items():
        kind = type(v)
        if kind is int or (kind is str and len(v) <= _SHORT):
            written = cache.get((k, v))
            if written is None:
                written = _field(b"J", _key_value(k, v))
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[(k, v)] = written
            out.append(written)
        else:
            out.append(_field(b"J", _key_value(k, v)))
    return out


def _fixed64(tag: bytes, value: int | None) -> bytes:
    return tag + _pack_fixed64(value) if value else b""


def _string(tag: bytes, value: str | None) -> bytes:
    return _field(tag, value.encode()) if value else b""


def _event(event: Any) -> bytes:
    return b"".join(
        [
            _fixed64(b"\x09", event.timestamp),
            _string(b"\x12", event.name),
            *_attributes(b"\x1a", event.attributes),
            _count(b"\x20", event.dropped_attributes),
        ]
    )


def _link(link: Any) -> bytes:
    context = link.context
    return b"".join(
        [
            b"\n\x10" + context.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + context.span_id.to_bytes(8, "big"),
            *_attributes(b'"', link.attributes),
            _count(b"\x28", link.dropped_attributes),
            _LINK_FLAGS_REMOTE if context.is_remote else _LINK_FLAGS_LOCAL,
        ]
    )


_STATUS_UNSET = b"z\x00"


def _status(status: Any) -> bytes:
    if status is None:
        return b""
    code = status.status_code.value
    description = status.description
    if not code and not description:
        return _STATUS_UNSET
    body = _string(b"\x12", description) + (b"\x18" + _varint(code) if code else b"")
    return _field(b"z", body)


def _trace_state(state: Any) -> bytes:
    if not state:
        return b""
    return _string(b"\x1a", ",".join([f"{key}={value}" for key, value in state.items()]))


_names: dict[str, bytes] = {}


def _name(name: str | None) -> bytes:
    """``Span.name`` (field 5), recurring names from a bounded cache."""
    written = _names.get(name)  # type: ignore[arg-type]
    if written is None:
        written = _string(b"*", name)
        if type(name) is str and len(name) <= _SHORT:
            if len(_names) >= _CACHE_MAX:
                _names.clear()
            _names[name] = written
    return written


def _sdk_fields(span: ReadableSpan) -> tuple[Any, Any, Any]:
    """A span's attributes, events and links, as plain containers when it is the SDK's own
    ``ReadableSpan`` (what its processors export): its public properties copy events and links
    and wrap attributes in a read-only proxy read item by item through Python calls, ~2-3 us a
    span of the ~8 this encoder spends. Any other span goes through the public properties."""
    if type(span) is not ReadableSpan:
        return span.attributes, span.events, span.links
    attributes = span._attributes
    if type(attributes) is BoundedAttributes:
        attributes = attributes._dict
    return attributes, span._events, span._links


def encode_span(span: ReadableSpan) -> bytes:
    """The body of one OTLP ``Span`` message for ``span``."""
    context = span.get_span_context()
    if context is None:
        raise Refused("span without a context")
    parent = span.parent
    attributes, events, links = _sdk_fields(span)
    start, end = span.start_time, span.end_time
    parts = [
        b"\n\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
        _trace_state(context.trace_state),
        b'"\x08' + parent.span_id.to_bytes(8, "big") if parent else b"",
        _name(span.name),
        _KIND[span.kind],
        b"9" + _pack_fixed64(start) if start else b"",
        b"A" + _pack_fixed64(end) if end else b"",
        *_span_attributes(attributes),
        _count(b"P", span.dropped_attributes),
    ]
    if events:
        parts.extend([_field(b"Z", _event(event)) for event in events])
    parts.append(_count(b"`", span.dropped_events))  # all dropped: no events, a count
    if links:
        parts.extend([_field(b"j", _link(link)) for link in links])
    parts.append(_count(b"p", span.dropped_links))
    parts.append(_status(span.status))
    parts.append(_SPAN_FLAGS_REMOTE if parent and parent.is_remote else _SPAN_FLAGS_LOCAL)
    return b"".join(parts)


def _resource(resource: Any) -> bytes:
    """``ResourceSpans.resource`` (always present) for ``resource``."""
    return _field(b"\n", b"".join(_attributes(b"\n", resource.attributes)))


def _scope(scope: Any) -> bytes:
    """``ScopeSpans.scope`` (always present, empty for no scope)."""
    if scope is None:
        return b"\n\x00"
    body = [
        _string(b"\n", scope.name),
        _string(b"\x12", scope.version),
        *_attributes(b"\x1a", scope.attributes),
    ]
    return _field(b"\n", b"".join(body))


def encode_request(
    spans: Sequence[ReadableSpan],
    *,
    slice_size: int = 0,
    pause: Callable[[], object] | None = None,
) -> bytes:
    """``spans`` as one serialized ``ExportTraceServiceRequest``.

    With ``slice_size`` and ``pause``, ``pause()`` runs after every ``slice_size`` spans
    encoded (the caller's GIL hand-over). Raises (:class:`Refused` or the error met) on a span
    it does not encode.
    """
    # resource -> scope -> encoded spans; each distinct object is hashed once (the SDK's
    # Resource hashes a JSON dump of its attributes), equal ones merge as dict keys do.
    groups: dict[Any, dict[Any, list[bytes]]] = {}
    by_object: dict[tuple[int, int], list[bytes]] = {}
    keep_alive = []
    every = slice_size if slice_size > 0 and pause is not None else 0
    for i, span in enumerate(spans):
        if every and i and not i % every:
            pause()  # type: ignore[misc]  # every is 0 when pause is None
        resource = span.resource
        scope = span.instrumentation_scope or None
        ident = (id(resource), id(scope))
        bucket = by_object.get(ident)
        if bucket is None:
            keep_alive.append((resource, scope))
            scopes = groups.setdefault(resource, {})
            bucket = scopes.setdefault(scope, [])
            by_object[ident] = bucket
        bucket.append(_field(b"\x12", encode_span(span)))
    out = []
    for resource, scopes in groups.items():
        scope_spans = [
            _field(
                b"\x12",
                b"".join(
                    [
                        _scope(scope),
                        *written,
                        _string(b"\x1a", scope.schema_url if scope else None),
                    ]
                ),
            )
            for scope, written in scopes.items()
        ]
        body = b"".join([_resource(resource), *scope_spans, _string(b"\x1a", resource.schema_url)])
        out.append(_field(b"\n", body))
    return b"".join(out)
