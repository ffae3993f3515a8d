"""otelfin's composite text-map propagator.

Injects the configured formats (default W3C ``traceparent``/``tracestate`` + W3C baggage);
extracts W3C Trace Context, B3 single and B3 multi and W3C baggage whatever the inject list, in
one pass over the carrier. Precedence: a valid W3C parent wins; an absent or invalid one falls
back to B3 (single before multi, as the B3 spec says). Baggage entries whose key names a secret
are dropped, and card numbers in values are masked, both when baggage arrives and when it
leaves. Member properties (``key=value;ttl=30``) travel on with their entry: OpenTelemetry's
baggage holds plain values, so otelfin keeps them beside it in the context (under its own key,
with the value they came with) and writes them again while the entry still has that value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.baggage import _BAGGAGE_KEY
from opentelemetry.context import Context, create_key, get_current
from opentelemetry.propagators.textmap import (
    CarrierT,
    DefaultGetter,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation import _SPAN_KEY

from otelfin import _internal
from otelfin.propagation import _carriers, _formats
from otelfin.scrub import (
    ScrubOptions,
    current_options,
    find_pans,
    is_secret_key,
    may_hold_pan,
    scrub_text,
)

__all__ = ["INJECT_FORMATS", "OtelfinPropagator"]

#: Inject formats otelfin implements itself; any other name is loaded from the
#: ``opentelemetry_propagator`` entry points (``jaeger``, ``xray``, ...).
INJECT_FORMATS = ("tracecontext", "baggage", "b3", "b3multi", "none")

_WANTED = frozenset(
    {
        "traceparent",
        "tracestate",
        "baggage",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-sampled",
        "x-b3-flags",
    }
)
# Baggage member properties by key, with the value they arrived with: {key: (value, "ttl=30")}.
_PROPERTIES_KEY = create_key("otelfin-baggage-properties")
Collector = Callable[[Any, frozenset[str]], "_carriers.Collected"]

# Getters of the official instrumentations whose carriers otelfin reads itself (one pass,
# case-insensitive, bytes-tolerant): pika's getter returns bytes values untouched and lists no
# keys, so without this a bytes traceparent or a "Traceparent" key would start a new trace.
_KNOWN_GETTERS = {
    "opentelemetry.instrumentation.wsgi.WSGIGetter": _carriers.wsgi_environ_getter.collect,
    "opentelemetry.instrumentation.asgi.ASGIGetter": _carriers.asgi_scope_getter.collect,
    "opentelemetry.instrumentation.pika.utils._PikaGetter": _carriers.amqp_headers_getter.collect,
    # bytes.decode() on every value (raises on non-UTF-8) and case-sensitive names:
    "opentelemetry.instrumentation.kafka.utils.KafkaContextGetter": (
        _carriers.kafka_headers_getter.collect
    ),
    "opentelemetry.instrumentation.confluent_kafka.utils.KafkaContextGetter": (
        _carriers.kafka_headers_getter.collect
    ),
}
# Setters that append: injecting into a forwarded record's headers left two traceparents.
_KNOWN_SETTERS: dict[str, Setter[Any]] = {
    "opentelemetry.instrumentation.kafka.utils.KafkaContextSetter": (
        _carriers.kafka_headers_setter
    ),
    "opentelemetry.instrumentation.confluent_kafka.utils.KafkaContextSetter": (
        _carriers.kafka_headers_setter
    ),
}
_setters: dict[type, Setter[Any] | None] = {}
# The four trace-flag values otelfin keeps (sampled, random), built once: TraceFlags is an
# immutable int, and constructing one per extract costs more than the lookup.
_TRACE_FLAGS = tuple(TraceFlags(bits) for bits in range(4))


def _setter_for(setter: Setter[Any]) -> Setter[Any]:
    kind = type(setter)
    try:
        found = _setters[kind]
    except KeyError:
        found = _KNOWN_SETTERS.get(f"{kind.__module__}.{kind.__qualname__}")
        if len(_setters) < 256:
            _setters[kind] = found
    return setter if found is None else found


_collectors: dict[type, Collector | None] = {}
_HEADERS_COLLECT = _carriers.headers_getter.collect


def _collector_for(getter: Getter[Any]) -> Collector | None:
    kind = type(getter)
    try:
        return _collectors[kind]
    except KeyError:
        pass
    found: Collector | None
    if isinstance(getter, _carriers.CarrierGetter):
        found = getter.collect
    elif kind is DefaultGetter:
        found = _carriers.headers_getter.collect
    else:
        found = _KNOWN_GETTERS.get(f"{kind.__module__}.{kind.__qualname__}")
    if len(_collectors) < 256:
        _collectors[kind] = found
    return found


def _generic_collect(getter: Getter[Any], carrier: Any) -> _carriers.Collected:
    """For any other getter: its keys (case-insensitively), then the canonical names."""
    out: _carriers.Collected = {}
    try:
        keys = getter.keys(carrier) or []
    except Exception:  # a getter without keys() still has get()
        keys = []
    for key in keys:
        name = key.lower() if isinstance(key, str) else None
        if name in _WANTED and name not in out:
            values = getter.get(carrier, key)
            if values:
                for value in values:
                    _carriers._add(out, name, value)
    for name in _WANTED - out.keys():
        values = getter.get(carrier, name)
        if values:
            for value in values:
                _carriers._add(out, name, value)
    return out


# --- baggage scrubbing -------------------------------------------------------------------------


def _clean_value(value: str, options: ScrubOptions) -> str | None:
    """``value`` with card numbers masked; None to drop the entry."""
    return scrub_text(value, options=options)


# Parsed tracestate and baggage by raw header. Baggage ("tenant=acme,channel=web") and often
# tracestate repeat from request to request, so a hit skips parsing and scrubbing. Entries are
# shared between contexts, which is safe because OpenTelemetry never mutates a TraceState or a
# baggage dict in place. Bounded: cleared when full. Only baggage that needed no card-number
# masking is cached, keyed also on the scrubber's options object, so reconfigured secret names
# take effect at once.
_CACHE_MAX = 512
# Memo tables (pure functions of their key), not pillar state.
_ts_cache: dict[str, _formats.W3CTraceState] = {}
_bg_cache: dict[str, tuple[object, dict[str, str], dict[str, tuple[str, str]]]] = {}


def _tracestate(values: list[str] | None) -> _formats.W3CTraceState:
    if not values:
        return _formats.parse_tracestate(values)
    header = values[0] if len(values) == 1 else ",".join(values)
    state = _ts_cache.get(header)
    if state is None:
        if len(header) > _formats.MAX_TRACESTATE_LENGTH:
            return _formats.parse_tracestate((header,))
        state = _formats.LazyTraceState(header)
        if len(_ts_cache) >= _CACHE_MAX:
            _ts_cache.clear()
        _ts_cache[header] = state
    return state


def _baggage(
    values: list[str], options: ScrubOptions
) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Scrubbed baggage entries and their properties (key -> (value, properties))."""
    header = values[0] if len(values) == 1 else ",".join(values)
    cached = _bg_cache.get(header)
    if cached is not None and cached[0] is options:
        return cached[1], cached[2]
    entries, raw_properties = _formats.parse_baggage_members((header,))
    if not entries:
        return entries, {}
    properties: dict[str, tuple[str, str]] = {}
    # A card number in a value is one in the raw header too ("=" and "," end a digit run),
    # unless escaped; a secret pair needs a value holding "=" or ":". Keys are checked one by
    # one below. Only then is each entry cleaned (the whole-header scrub_text this replaces
    # cost more than the rest of extract on unique headers).
    pairs = len(entries)
    if raw_properties:
        pairs += sum(p.count("=") for p in raw_properties.values())
    if (
        "%" in header
        or ":" in header
        or header.count("=") > pairs
        or (may_hold_pan(header) and find_pans(header))  # the cheap check rules most out
    ):
        entries = dict(_clean_entries(entries.items(), options))
        for key, props in raw_properties.items():
            clean = _clean_properties(props, options)
            if clean and key in entries:
                properties[key] = (entries[key], clean)
        return entries, properties
    for key in entries:
        if is_secret_key(key, options):
            entries = {k: v for k, v in entries.items() if not is_secret_key(k, options)}
            break
    for key, props in raw_properties.items():
        clean = _clean_properties(props, options)
        if clean and key in entries:
            properties[key] = (entries[key], clean)
    if len(_bg_cache) >= _CACHE_MAX:
        _bg_cache.clear()
    _bg_cache[header] = (options, entries, properties)
    return entries, properties


def _clean_properties(props: str, options: ScrubOptions) -> str:
    """Properties without secret-named ones; "" when one may hold a card number."""
    kept = []
    for prop in props.split(";"):
        if is_secret_key(prop.partition("=")[0], options):
            continue
        if _clean_value(prop, options) != prop:
            return ""  # masking could make it invalid: the entry travels without properties
        kept.append(prop)
    return ";".join(kept)


def _clean_entries(
    entries: Iterable[tuple[Any, Any]], options: ScrubOptions
) -> Iterator[tuple[str, str]]:
    for key, value in entries:
        try:
            name = str(key)
            raw = str(value)
        except Exception:  # an unprintable entry is dropped, the others still travel
            continue
        if is_secret_key(name, options):
            continue
        # A card number can sit in a key as well as in a value: both are masked.
        masked_name = _clean_value(name, options)
        text = _clean_value(raw, options)
        if masked_name is not None and text is not None:
            yield masked_name, text


class OtelfinPropagator(TextMapPropagator):
    """W3C Trace Context + W3C baggage (+ B3) in one propagator.

    Args:
        inject: formats to inject: ``tracecontext``, ``baggage``, ``b3`` (single header),
            ``b3multi``, ``none``, or the name of any installed ``opentelemetry_propagator``
            entry point (used for both inject and extract). Extraction of W3C, B3 single/multi
            and baggage is always on.
        scrub_options: what baggage is masked with, arriving and leaving (None: the process
            default, masking on); ``configure()`` hands over the scrub pillar's.

    Raises ``ValueError`` for a format that is neither built in nor installed.
    """

    def __init__(
        self,
        inject: Sequence[str] = ("tracecontext", "baggage"),
        *,
        scrub_options: ScrubOptions | None = None,
    ) -> None:
        #: Read once per extract or inject of baggage; replaced whole by use_scrub_options.
        self.scrub_options = scrub_options
        names = tuple(n.strip().lower() for n in inject if n.strip())
        self.formats = names
        self._w3c = "tracecontext" in names
        self._baggage = "baggage" in names
        self._b3 = "b3" in names
        self._b3multi = "b3multi" in names
        self._extra: list[TextMapPropagator] = [
            _load_entry_point(n) for n in names if n not in INJECT_FORMATS
        ]
        fields: set[str] = set()
        if self._w3c:
            fields |= {"traceparent", "tracestate"}
        if self._baggage:
            fields.add("baggage")
        if self._b3:
            fields.add("b3")
        if self._b3multi:
            fields |= {"x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}
        for extra in self._extra:
            fields |= set(extra.fields)
        self._fields = fields
        self._baggage_cache: tuple[object, object, str] = (None, None, "")

    def __repr__(self) -> str:
        return f"OtelfinPropagator(inject={list(self.formats)!r})"

    def use_scrub_options(self, options: ScrubOptions | None) -> None:
        """Mask baggage with ``options`` from the next call on (None: the process default)."""
        self.scrub_options = options
        # The header cached for the last baggage dict was masked with the old options. (An
        # inject racing with this call may cache one more for its dict: masked all the same.)
        self._baggage_cache = (None, None, "")

    @property
    def fields(self) -> set[str]:
        """The header names ``inject`` may set."""
        return set(self._fields)

    # -- extract ----------------------------------------------------------------------------

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        """A context carrying the remote parent and baggage found in ``carrier``.

        Never raises: a malformed or hostile carrier yields ``context`` unchanged (a new trace
        starts), and the failure is counted once through ``otelfin._internal.report``.
        """
        if context is None:
            context = Context()
        original = context
        try:
            for extra in self._extra:
                context = extra.extract(carrier, context, getter)
            collect = _HEADERS_COLLECT if getter is default_getter else _collector_for(getter)
            if collect is not None:
                headers = collect(carrier, _WANTED)
            else:
                headers = _generic_collect(getter, carrier)
            if not headers:
                return context
            values: dict[str, object] | None = None
            parent: SpanContext | None = None
            traceparent = headers.get("traceparent")
            if traceparent is not None and len(traceparent) == 1:
                parsed = _formats.parse_traceparent(traceparent[0])
                if parsed is not None:
                    state = _tracestate(headers.get("tracestate"))
                    parent = SpanContext(parsed[0], parsed[1], True, _TRACE_FLAGS[parsed[2]], state)
            if parent is None:
                parent = self._b3_parent(headers)
            if parent is not None:
                values = dict(context)
                values[_SPAN_KEY] = NonRecordingSpan(parent)
            baggage_values = headers.get("baggage")
            if baggage_values:
                cleaned, properties = _baggage(
                    baggage_values, self.scrub_options or current_options()
                )
                if cleaned:
                    existing = context.get(_BAGGAGE_KEY)
                    if existing is not None and isinstance(existing, (dict, Mapping)) and existing:
                        merged = dict(existing)
                        merged.update(cleaned)
                        cleaned = merged
                    if values is None:
                        values = dict(context)
                    values[_BAGGAGE_KEY] = cleaned
                    known = context.get(_PROPERTIES_KEY)
                    if isinstance(known, dict) and known:
                        kept = {k: v for k, v in known.items() if k not in properties}
                        properties = {**kept, **properties} if kept else properties
                    if properties:
                        values[_PROPERTIES_KEY] = properties
                    elif known:
                        values.pop(_PROPERTIES_KEY, None)
            if values is not None:
                context = Context(values)  # one copy for span and baggage together
            return context
        except Exception as exc:  # propagation never breaks the host
            _internal.report("propagation.extract", exc)
            return original

    @staticmethod
    def _b3_parent(headers: Mapping[str, list[str]]) -> SpanContext | None:
        parsed: tuple[int, int, int] | None = None
        single = headers.get("b3")
        if single:
            parsed = _formats.parse_b3_single(single[0])
        if parsed is None:
            trace_ids = headers.get("x-b3-traceid")
            span_ids = headers.get("x-b3-spanid")
            if trace_ids and span_ids:
                sampled = headers.get("x-b3-sampled")
                debug = headers.get("x-b3-flags")
                parsed = _formats.parse_b3_multi(
                    trace_ids[0],
                    span_ids[0],
                    sampled[0] if sampled else None,
                    debug[0] if debug else None,
                )
        if parsed is None:
            return None
        return SpanContext(parsed[0], parsed[1], True, _TRACE_FLAGS[parsed[2]])

    # -- inject -----------------------------------------------------------------------------

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """Write the configured formats for ``context`` (default: the current one)."""
        if context is None:
            context = get_current()
        if setter is not default_setter:
            setter = _setter_for(setter)
        try:
            span_context = trace.get_current_span(context).get_span_context()
            if span_context.is_valid:
                trace_id = span_context.trace_id
                span_id = span_context.span_id
                flags = span_context.trace_flags
                if self._w3c:
                    setter.set(
                        carrier, "traceparent", f"00-{trace_id:032x}-{span_id:016x}-{flags & 3:02x}"
                    )
                    state = span_context.trace_state
                    if state:
                        setter.set(carrier, "tracestate", _formats.format_tracestate(state))
                sampled = "1" if flags & 1 else "0"
                if self._b3:
                    setter.set(carrier, "b3", f"{trace_id:032x}-{span_id:016x}-{sampled}")
                if self._b3multi:
                    # Lower case, as B3 specifies for messaging and HTTP/2 and as
                    # OpenTelemetry's B3 propagators read from case-sensitive carriers. A
                    # forwarded dict may still hold an upstream "X-B3-TraceId": replaced, so
                    # a case-insensitive reader never finds the stale one.
                    b3_setter = _carriers.headers_setter if setter is default_setter else setter
                    b3_setter.set(carrier, "x-b3-traceid", f"{trace_id:032x}")
                    b3_setter.set(carrier, "x-b3-spanid", f"{span_id:016x}")
                    b3_setter.set(carrier, "x-b3-sampled", sampled)
            if self._baggage:
                baggage = context.get(_BAGGAGE_KEY)
                if isinstance(baggage, (dict, Mapping)) and baggage:
                    header = self._baggage_header(baggage, context.get(_PROPERTIES_KEY))
                    if header:
                        setter.set(carrier, "baggage", header)
        except Exception as exc:  # propagation never breaks the host
            _internal.report("propagation.inject", exc)
        for extra in self._extra:
            try:
                extra.inject(carrier, context, setter)
            except Exception as exc:
                _internal.report(f"propagation.inject[{type(extra).__name__}]", exc)

    def _baggage_header(self, baggage: Mapping[str, object], properties: object) -> str:
        # OpenTelemetry never mutates a baggage dict stored in a context (set_baggage copies),
        # so the header of the last dict seen is reused while the same dict is injected again,
        # as for every outgoing call of one request. The cache holds the dict itself, so its
        # id cannot be reused by another object while cached.
        cached = self._baggage_cache
        if cached[0] is baggage and cached[1] is properties:
            return cached[2]
        options = self.scrub_options or current_options()
        props: dict[str, str] | None = None
        if isinstance(properties, dict) and properties:
            # a property belongs to the value it came with; a changed entry goes without it
            props = {k: p for k, (v, p) in properties.items() if baggage.get(k) == v}
        header = _formats.format_baggage(_clean_entries(baggage.items(), options), props)
        self._baggage_cache = (baggage, properties, header)
        return header


def _load_entry_point(name: str) -> TextMapPropagator:
    from importlib.metadata import entry_points

    for entry_point in entry_points(group="opentelemetry_propagator", name=name):
        propagator = entry_point.load()()
        if isinstance(propagator, TextMapPropagator):
            return propagator
    raise ValueError(
        f"unknown propagator {name!r}: otelfin implements {', '.join(INJECT_FORMATS)}; "
        "others must be installed as an 'opentelemetry_propagator' entry point"
    )
