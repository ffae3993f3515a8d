"""The value walker: card numbers masked and secret-keyed entries redacted, at any depth."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, time
from enum import Enum
from typing import Any
from uuid import UUID

from otelfin.scrub._options import ScrubOptions, current_options
from otelfin.scrub._pan import PAN_MIN
from otelfin.scrub._secrets import REDACTED, classify_key, is_secret_key, key_verdict
from otelfin.scrub._sql import SQL_KEYS, redact_sql_secrets
from otelfin.scrub._text import MIN_LEN, scrub_text
from otelfin.scrub._url import scrub_query, scrub_url

__all__ = ["MAX_DEPTH", "URL_KEYS", "scrub_attributes", "scrub_value"]

#: Span attributes that hold a URL or part of one (OpenTelemetry HTTP semantic conventions,
#: old and new names), scrubbed with :func:`scrub_url` / :func:`scrub_query`. Every HTTP
#: client and server instrumentation writes these, so none of them needs its own hook.
URL_KEYS = {
    "http.url": "url",
    "url.full": "url",
    "url.original": "url",
    "http.target": "url",
    "url.path": "url",
    "http.route": "url",
    "url.query": "query",
    "url.fragment": "query",
}

#: Deeper structures are cut here; a cyclic or absurdly deep value must not blow the stack.
MAX_DEPTH = 32
_TYPE_CACHE_MAX = 4096
# Span attribute values repeat from request to request (host, scheme, route, user agent, peer
# address): a value the scrubber found clean once is remembered per options object
# (``ScrubOptions.clean_values``) and not scanned again. Values up to this length, this many
# per kind; a full memo starts over, so unique values (ids in a target) cost one dict
# insertion each and memory stays bounded.
_CLEAN_MAX_LEN = 512
_CLEAN_MAX = 2048
_TEXT, _URL_KIND, _QUERY = 0, 1, 2


def scrub_value(value: Any, *, options: ScrubOptions | None = None) -> Any:
    """``value`` with card numbers masked and secret-keyed entries redacted, at any depth.

    Strings are masked; integers and floats whose digits are a card number become masked
    strings (``4111111111111111.0`` -> ``"XXXXXXXXXXXX1111.0"``); dicts,
    lists, tuples, sets and frozensets are rebuilt only when something inside changed,
    otherwise the original object is returned. Dataclass instances and enum members, which a
    JSON encoder such as orjson writes field by field / by value, are scrubbed as those (a
    dict of the fields, the value) when something inside needed masking. Mapping keys a JSON
    object cannot hold (tuples, bytes, frozensets, ...) become their scrubbed text. Anything
    else passes unchanged. ``options`` defaults to :func:`~otelfin.scrub.current_options`.
    """
    return _value(value, options or current_options(), 0)


def _value(value: Any, opts: ScrubOptions, depth: int) -> Any:
    if isinstance(value, str):
        n = len(value)
        if n >= PAN_MIN or (n >= MIN_LEN and ("=" in value or ":" in value or "%" in value)):
            return scrub_text(value, options=opts)
        return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        # A card number held as a float is written 4111111111111111.0 by every JSON encoder.
        if not 1e12 <= abs(value) < 1e19 or value != value:
            return value
        text = repr(value)
        masked = scrub_text(text, options=opts)
        return value if masked is text else masked
    if isinstance(value, int):
        if -1_000_000_000_000 < value < 1_000_000_000_000:
            return value
        text = str(value)
        masked = scrub_text(text, options=opts)
        return value if masked is text else masked
    if depth >= MAX_DEPTH:
        containers = (Mapping, list, tuple, set, frozenset)
        return "[TRUNCATED]" if isinstance(value, containers) or _is_record(value) else value
    if isinstance(value, Mapping):
        return _scrub_mapping(value, opts, depth)
    if isinstance(value, (list, tuple)):
        items = [_value(v, opts, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (set, frozenset)):
        items = [_value(v, opts, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return type(value)(items) if all(_hashable(v) for v in items) else items
    if isinstance(value, Enum):
        inner = value.value
        scrubbed = _value(inner, opts, depth + 1)
        return value if scrubbed is inner else scrubbed
    if _is_record(value):
        try:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        except Exception:  # a field that cannot be read: the encoder's fallback renders it
            return value
        scrubbed = _scrub_mapping(fields, opts, depth)
        return value if scrubbed is fields else scrubbed
    return value


# A memo, not state: whether a type is a dataclass is a pure function of the type.
_record_types: dict[type, bool] = {}


def _is_record(value: Any) -> bool:
    """A dataclass instance (not the class itself); the answer is cached per type, because
    probing a type for ``__dataclass_fields__`` costs a failed attribute lookup (~0.3 us)."""
    kind = type(value)
    found = _record_types.get(kind)
    if found is None:
        found = dataclasses.is_dataclass(kind) and not isinstance(value, type)
        if len(_record_types) >= _TYPE_CACHE_MAX:
            _record_types.clear()
        _record_types[kind] = found
    return found


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _scrub_mapping(mapping: Mapping[Any, Any], opts: ScrubOptions, depth: int) -> Any:
    out: dict[Any, Any] | None = None
    for key, val in mapping.items():
        new_key: Any
        if isinstance(key, str):
            new_key = scrub_text(key, options=opts) if len(key) >= MIN_LEN else key
            secret = is_secret_key(key, opts)
        elif key is None or isinstance(key, (bool, float, date, time, UUID)):
            new_key = key  # JSON encoders write these as text themselves; no card number fits
            secret = False
        elif isinstance(key, Enum):
            # Written by value: masked only if that holds a card number.
            new_key = _value(key, opts, depth + 1)
            secret = False
        elif isinstance(key, int):
            new_key = _value(key, opts, depth + 1)  # JSON writes it as text: a card is masked
            secret = False
        else:
            new_key = _key_text(key, opts)  # b"password" is written as "password": judged as text
            secret = is_secret_key(new_key, opts)
        new = (REDACTED if val is not None else None) if secret else _value(val, opts, depth + 1)
        if new is not val or new_key is not key:
            if out is None:
                out = dict(mapping)
            if new_key is not key:
                del out[key]
            out[new_key] = new
    return mapping if out is None else out


def _key_text(key: Any, opts: ScrubOptions) -> str:
    """A key JSON cannot hold (tuple, bytes, frozenset, object) as scrubbed text."""
    try:
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    except Exception:
        return f"<unprintable {type(key).__name__}>"
    return scrub_text(text, options=opts)


def scrub_attributes(
    attributes: Mapping[str, Any] | None, options: ScrubOptions | None = None
) -> Mapping[str, Any] | None:
    """Span/event/link attributes with secrets redacted and card numbers masked.

    Returns the same mapping object when nothing changed.
    """
    if not attributes:
        return attributes
    opts = options or current_options()
    out: dict[str, Any] | None = None
    renamed: list[tuple[str, str]] | None = None
    cache = opts.key_cache
    clean_values = opts.clean_values
    # The SDK's BoundedAttributes takes a lock on every item read through the Mapping API;
    # its plain dict (read-only here) is three times faster to walk.
    items = getattr(attributes, "_dict", None)
    if not isinstance(items, dict):
        items = attributes
    for key, val in items.items():
        secret = cache.get(key)
        if secret is None:
            secret = key_verdict(key, opts)
        if secret:
            if secret is True:
                new: Any = val if val == REDACTED else REDACTED
            else:  # the key holds a card number: renamed below, its value scrubbed too
                renamed = renamed or []
                renamed.append((key, secret))
                new = REDACTED if classify_key(secret, opts) else _value(val, opts, 0)
        elif type(val) is str:
            if key in SQL_KEYS:  # a statement: secret literals go by column, not by value
                new = scrub_text(redact_sql_secrets(val, opts), options=opts)
            elif len(val) < MIN_LEN:
                continue
            else:
                url_kind = URL_KEYS.get(key)
                kind = _TEXT if url_kind is None else _QUERY if url_kind == "query" else _URL_KIND
                clean = clean_values[kind]
                if val in clean:
                    continue
                if kind == _TEXT:
                    new = scrub_text(val, options=opts)
                elif kind == _QUERY:
                    new = scrub_query(val, opts)
                else:
                    new = scrub_url(val, opts)
                if new is val and len(val) <= _CLEAN_MAX_LEN:
                    if len(clean) >= _CLEAN_MAX:
                        clean.clear()
                    clean[val] = None
                    continue
        elif isinstance(val, (list, tuple)):
            new = _value(tuple(val), opts, 0)
            if new is not val and all(a is b for a, b in zip(new, val, strict=True)):
                new = val
        else:
            new = _value(val, opts, 0)
        if new is not val:
            if out is None:
                out = dict(attributes)
            out[key] = new
    if renamed:
        if out is None:
            out = dict(attributes)
        for key, masked in renamed:
            out[masked] = out.pop(key)
    return attributes if out is None else out
