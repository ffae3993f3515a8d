"""Parsers and formatters for the W3C Trace Context, W3C Baggage and B3 header formats.

Hand-written rather than delegated to OpenTelemetry's propagators for two reasons, both
measured: OpenTelemetry's ``TraceState`` applies the 2020 key grammar and drops the whole
tracestate for keys the current W3C grammar allows (``foo@``, ``foo@@bar``, long tenant or
vendor parts) and for duplicate keys, which fails 3 tests of the W3C suite; and running three
separate propagators over one request reads the carrier once per header name and builds a new
context per baggage entry, which is most of the extract cost. Every parser here returns None
(or an empty result) for anything invalid and never raises on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, unquote

from opentelemetry.trace import TraceState

from otelfin.scrub import find_pans, may_hold_pan

__all__ = [
    "MAX_BAGGAGE_LENGTH",
    "MAX_TRACESTATE_MEMBERS",
    "LazyTraceState",
    "W3CTraceState",
    "format_baggage",
    "format_tracestate",
    "parse_b3_multi",
    "parse_b3_single",
    "parse_baggage",
    "parse_baggage_members",
    "parse_traceparent",
    "parse_tracestate",
    "without_card_numbers",
]

#: Limits from the W3C specifications; larger inbound values are ignored, never truncated
#: into something the sender did not mean.
MAX_TRACEPARENT_LENGTH = 512
MAX_TRACESTATE_MEMBERS = 32
MAX_TRACESTATE_LENGTH = 8192  # inbound: whole tracestate (all headers) larger than this is dropped
MAX_TRACESTATE_OUT = 512  # outbound: the spec lets a vendor trim beyond 512 characters
MAX_BAGGAGE_LENGTH = 8192
MAX_BAGGAGE_MEMBERS = 180
MAX_BAGGAGE_PAIR = 4096
MAX_B3_LENGTH = 128
# Optional whitespace may make an inbound header longer than 8192 characters although the
# members themselves fit; such a header is still read, but work is bounded at this many.
MAX_BAGGAGE_RAW = 4 * MAX_BAGGAGE_LENGTH

_OWS = " \t"
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# The common case, a version-00 header of exactly 55 characters: validated by one regex
# without groups; its flags are read from a table instead of a third int().
_TRACEPARENT_00 = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_FLAG_BITS = {f"{i:02x}": i & 0x03 for i in range(256)}
# The key grammar of the current Trace Context draft, which the W3C suite tests: a lower-case
# letter or digit, then up to 255 of lcalpha / digit / _ - * / @ (multi-tenant keys included).
_TS_KEY = r"[a-z0-9][a-z0-9_\-*/@]{0,255}"
_TS_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_TS_MEMBER = re.compile(f"({_TS_KEY})=({_TS_VALUE})")
# A whole header of valid members with optional whitespace around commas and no empty members:
# the common case, validated with one regex; findall then cannot mis-split it, because a value
# may contain neither "," nor "=".
_TS_LIST = re.compile(f"[ \t]*{_TS_KEY}={_TS_VALUE}(?:[ \t]*,[ \t]*{_TS_KEY}={_TS_VALUE})*[ \t]*")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_HEX_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
_BAGGAGE_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAGGAGE_VALUE = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_BAGGAGE_PAIR = r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=([\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*)"
# Plain "k=v,k=v" (no whitespace, no properties): one regex validates, findall splits.
_BAGGAGE_SIMPLE = re.compile(f"{_BAGGAGE_PAIR}(?:,{_BAGGAGE_PAIR})*")
_BAGGAGE_PAIRS = re.compile(_BAGGAGE_PAIR)
# "+" is always encoded: OpenTelemetry Python decodes a literal "+" as a space.
_KEY_SAFE = "!#$&'*-.^_`|~"
_VALUE_SAFE = "!#$&'()*-./:<>?@[]^_`{|}~"


class W3CTraceState(TraceState):
    """A ``TraceState`` holding members already validated by :func:`parse_tracestate`.

    OpenTelemetry's constructor re-validates with an older key grammar and would drop members
    the current W3C grammar allows; this subclass only skips that second check. ``add``,
    ``update`` and ``delete`` still return plain (validating) ``TraceState`` objects.
    """

    def __init__(self, entries: Iterable[tuple[str, str]] | None = None) -> None:
        self._dict = dict(entries or ())

    @classmethod
    def of(cls, members: dict[str, str]) -> W3CTraceState:
        """Wrap ``members`` (already validated, not copied)."""
        state = cls.__new__(cls)
        state._dict = members
        return state


_EMPTY_TRACESTATE = W3CTraceState()


class LazyTraceState(W3CTraceState):
    """A tracestate kept as its raw header until first read, then parsed once.

    Most services only hand tracestate on to the next hop, and many never do: deferring the
    parse keeps it off the extract path. The result is exactly :func:`parse_tracestate`'s
    (an invalid header reads as empty), whenever it is first looked at.
    """

    def __init__(self, header: str) -> None:
        self._header = header

    def __getattr__(self, name: str) -> dict[str, str]:
        # Called only while ``_dict`` is not set yet: the first read parses and stores it,
        # and every later read is a plain attribute (a property would cost a call on each
        # of the TraceState methods' reads).
        if name != "_dict":
            raise AttributeError(name)
        parsed = parse_tracestate((self._header,))._dict
        self._dict = parsed
        return parsed


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """``(trace_id, span_id, flags)`` from a traceparent value, or None if invalid.

    Follows the spec's versioning rules: version ``ff`` is invalid; version ``00`` must be
    exactly 55 characters; a higher version may carry more fields after a ``-``. Only the
    sampled and random bits of the flags are kept, so unknown bits are never re-emitted.
    """
    if len(value) == 55 and _TRACEPARENT_00.fullmatch(value) is not None:
        trace_id = int(value[3:35], 16)
        span_id = int(value[36:52], 16)
        if not trace_id or not span_id:
            return None
        return trace_id, span_id, _FLAG_BITS[value[53:55]]
    if len(value) != 55:
        if len(value) > MAX_TRACEPARENT_LENGTH:
            return None
        value = value.strip(_OWS)
        if len(value) < 55:
            return None
    if _TRACEPARENT.match(value) is None:
        return None
    version = value[:2]
    if version == "00":
        if len(value) != 55:
            return None
    elif version == "ff" or (len(value) > 55 and value[55] != "-"):
        return None
    trace_id = int(value[3:35], 16)
    span_id = int(value[36:52], 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(value[53:55], 16) & 0x03


def parse_tracestate(values: Sequence[str] | None) -> W3CTraceState:
    """The members of one or more tracestate header values, combined in order.

    Any invalid member discards the whole tracestate (the spec's rule), as do more than 32
    members or an oversized header. Empty members and empty headers are skipped; for a
    duplicate key the first member is kept.
    """
    if not values:
        return _EMPTY_TRACESTATE
    header = values[0] if len(values) == 1 else ",".join(values)
    if len(header) > MAX_TRACESTATE_LENGTH:
        return _EMPTY_TRACESTATE
    if _TS_LIST.fullmatch(header) is not None:
        pairs = _TS_MEMBER.findall(header)
    else:
        pairs = []
        for raw in header.split(","):
            member = raw.strip(_OWS)
            if not member:
                continue
            match = _TS_MEMBER.fullmatch(member)
            if match is None:
                return _EMPTY_TRACESTATE
            pairs.append(match.groups())
    if not pairs or len(pairs) > MAX_TRACESTATE_MEMBERS:
        return _EMPTY_TRACESTATE
    members = dict(pairs)
    if len(members) != len(pairs):  # duplicate keys: keep the first of each
        members = {}
        for key, value in pairs:
            members.setdefault(key, value)
    if "%" in header or may_hold_pan(header):
        members = without_card_numbers(members)
    return W3CTraceState.of(members)


def without_card_numbers(members: Mapping[str, str]) -> dict[str, str]:
    """``members`` less every tracestate member whose key or value holds a card number.

    The W3C spec lets a hop delete a member for security reasons ("Delete a key/value pair"
    in the header-format chapter); masking would change another vendor's value, so the
    member goes whole.
    """
    return {k: v for k, v in members.items() if not _holds_card(v) and not find_pans(k)}


def _holds_card(value: str) -> bool:
    return bool(find_pans(value)) or ("%" in value and bool(find_pans(unquote(value))))


def format_tracestate(state: Mapping[str, str]) -> str:
    """The tracestate header for ``state``, trimmed to 512 characters as the spec allows.

    Trimming first drops members longer than 128 characters, then members from the end.
    """
    header = ",".join([f"{k}={v}" for k, v in state.items()])
    if "%" in header or may_hold_pan(header):  # an application's own state: no card leaves
        state = without_card_numbers(state)
        header = ",".join([f"{k}={v}" for k, v in state.items()])
    if len(header) <= MAX_TRACESTATE_OUT:
        return header
    items = [f"{k}={v}" for k, v in state.items() if len(k) + len(v) + 1 <= 128]
    while items and len(",".join(items)) > MAX_TRACESTATE_OUT:
        items.pop()
    return ",".join(items)


def _b3_ids(trace_hex: str, span_hex: str) -> tuple[int, int] | None:
    if _HEX_ID.fullmatch(trace_hex) is None or _HEX16.fullmatch(span_hex) is None:
        return None
    trace_id = int(trace_hex, 16)  # a 64-bit id is the low half of a 128-bit one
    span_id = int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id


def parse_b3_single(value: str) -> tuple[int, int, int] | None:
    """``(trace_id, span_id, flags)`` from a ``b3`` header, or None.

    ``{trace}-{span}[-{sampling}[-{parent}]]``; sampling ``1`` or ``d`` (debug) means sampled,
    ``0`` not sampled, absent means deferred, which otelfin treats as sampled so the local
    sampler's parent-based decision keeps the trace (OpenTelemetry's B3 propagator drops it).
    A sampling-only header (``0``) carries no parent.
    """
    if len(value) > MAX_B3_LENGTH:
        return None
    parts = value.strip(_OWS).split("-")
    if len(parts) < 2 or len(parts) > 4:
        return None
    ids = _b3_ids(parts[0], parts[1])
    if ids is None:
        return None
    flags = 1
    if len(parts) >= 3:
        sampling = parts[2]
        if sampling == "0":
            flags = 0
        elif sampling not in ("1", "d"):
            return None
        if len(parts) == 4 and _HEX16.fullmatch(parts[3]) is None:
            return None
    return ids[0], ids[1], flags


def parse_b3_multi(
    trace_hex: str, span_hex: str, sampled: str | None, debug: str | None
) -> tuple[int, int, int] | None:
    """``(trace_id, span_id, flags)`` from ``X-B3-*`` values, or None.

    ``X-B3-Flags: 1`` (debug) forces sampling; ``X-B3-Sampled`` is ``1``/``true`` or
    ``0``/``false``; absent means deferred (treated as sampled, as for ``b3``).
    """
    if len(trace_hex) > MAX_B3_LENGTH or len(span_hex) > MAX_B3_LENGTH:
        return None
    ids = _b3_ids(trace_hex.strip(_OWS), span_hex.strip(_OWS))
    if ids is None:
        return None
    flags = 1
    if debug is not None and debug.strip(_OWS) == "1":
        flags = 1
    elif sampled is not None:
        flag = sampled.strip(_OWS).lower()
        if flag in ("0", "false"):
            flags = 0
        elif flag not in ("1", "true", "d"):
            return None
    return ids[0], ids[1], flags


def parse_baggage(values: Sequence[str]) -> dict[str, str]:
    """Baggage entries from one or more header values; invalid members are skipped.

    Keys and values are percent-decoded; member properties are left out (see
    :func:`parse_baggage_members`). Optional whitespace around ``,``, ``;`` and ``=`` is
    irrelevant to every limit: headers whose members take over 8192 characters in total are
    ignored whole, as are members over 4096 characters and members after the 180th.
    """
    return parse_baggage_members(values)[0]


def _baggage_member(member: str) -> tuple[str, str, str] | None:
    """``(key, raw value, properties)`` of one member, OWS removed; None when invalid."""
    head, _, props = member.partition(";")
    name, sep, raw_value = head.partition("=")
    if not sep:
        return None
    name = name.strip(_OWS)
    raw_value = raw_value.strip(_OWS)
    if _BAGGAGE_KEY.fullmatch(name) is None or _BAGGAGE_VALUE.fullmatch(raw_value) is None:
        return None
    if not props:
        return name, raw_value, ""
    kept: list[str] = []
    for prop in props.split(";"):
        prop_key, prop_sep, prop_value = prop.partition("=")
        prop_key = prop_key.strip(_OWS)
        if _BAGGAGE_KEY.fullmatch(prop_key) is None:
            return None  # one bad property makes the member invalid, as in OpenTelemetry
        if prop_sep:
            prop_value = prop_value.strip(_OWS)
            if _BAGGAGE_VALUE.fullmatch(prop_value) is None:
                return None
            kept.append(f"{prop_key}={prop_value}")
        else:
            kept.append(prop_key)
    return name, raw_value, ";".join(kept)


def parse_baggage_members(values: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(entries, properties)`` from one or more baggage header values.

    ``entries`` is :func:`parse_baggage`'s result; ``properties`` maps a key whose member
    carried properties (``key=value;ttl=30;flag``) to them, validated and written without
    optional whitespace (``ttl=30;flag``), still percent-encoded, ready to be sent on.
    """
    header = values[0] if len(values) == 1 else ",".join(values)
    if len(header) > MAX_BAGGAGE_LENGTH and (
        len(header) > MAX_BAGGAGE_RAW or (" " not in header and "\t" not in header)
    ):
        return {}, {}
    properties: dict[str, str] = {}
    if len(header) <= MAX_BAGGAGE_LENGTH and _BAGGAGE_SIMPLE.fullmatch(header) is not None:
        pairs = _BAGGAGE_PAIRS.findall(header)
    else:
        pairs = []
        length = -1  # the header's length without optional whitespace
        for member in header.split(","):
            parsed = _baggage_member(member)
            if parsed is None:
                length += 1 + len(member.strip(_OWS))
                continue
            name, raw_value, props = parsed
            size = len(name) + 1 + len(raw_value) + (len(props) + 1 if props else 0)
            length += 1 + size
            if size > MAX_BAGGAGE_PAIR:
                continue
            if len(pairs) < MAX_BAGGAGE_MEMBERS:
                pairs.append((name, raw_value))
                if props:
                    properties[name] = props
                else:
                    properties.pop(name, None)  # the last duplicate wins, as for its value
        if length > MAX_BAGGAGE_LENGTH:
            return {}, {}
    if len(pairs) > MAX_BAGGAGE_MEMBERS:
        pairs = pairs[:MAX_BAGGAGE_MEMBERS]
    if "%" not in header and len(header) <= MAX_BAGGAGE_PAIR:
        return dict(pairs), properties  # nothing to decode and no member can be too long
    entries: dict[str, str] = {}
    for name, raw_value in pairs:
        if len(name) + 1 + len(raw_value) > MAX_BAGGAGE_PAIR:
            continue
        key = unquote(name) if "%" in name else name
        entries[key] = unquote(raw_value) if "%" in raw_value else raw_value
        if key != name and name in properties:
            properties[key] = properties.pop(name)
    return entries, properties


def format_baggage(
    entries: Iterable[tuple[str, str]], properties: Mapping[str, str] | None = None
) -> str:
    """The baggage header for already-scrubbed ``(key, value)`` pairs, within W3C limits.

    ``properties`` (from :func:`parse_baggage_members`, already scrubbed) are appended to
    the member of their key.
    """
    parts: list[str] = []
    length = -1
    for key, value in entries:
        member = quote(key, safe=_KEY_SAFE) + "=" + quote(value, safe=_VALUE_SAFE)
        if properties:
            props = properties.get(key)
            if props:
                member += ";" + props
        if len(member) > MAX_BAGGAGE_PAIR:
            continue
        if len(parts) >= MAX_BAGGAGE_MEMBERS or length + 1 + len(member) > MAX_BAGGAGE_LENGTH:
            break
        parts.append(member)
        length += 1 + len(member)
    return ",".join(parts)
