"""Writing a failed call's attributes and ``exception`` event onto an SDK span, cheaply.

A declined ``@traced`` call (a code the catalogue calls a business outcome) puts three
attributes and one event on its span. Through the SDK's public methods that was most of a
decline's cost beyond the span itself (callgrind, per call: three ``set_attribute`` 31k
instructions, each taking two locks and re-checking the value's type; ``add_event`` 48k, 28k of
it a ``BoundedAttributes`` re-checking each value through the ``Sequence``/``Mapping`` ABCs).
Here: 9k and 20k. The values are ``str`` otelfin made itself, which those checks can only keep
as they are, and the SDK's limits (attribute count, value length) are checked before writing:
when a limit could cut or drop anything, the span has ended, or the span is not the SDK's own
``Span`` (a subclass overriding the writers, another SDK), the public methods run instead, so
the span holds exactly what they would have put there.

This reads SDK internals (``_attributes``, ``_limits``, ``_lock``, ``_end_time``,
``_add_event``; listed with the reason in ``tests/test_architecture.py``'s ALLOWED_PRIVATE).
They stay in this module; every private name is read before anything is written, and a missing
one (another SDK release) turns the fast path off for that span type.
``tests/test_decline_fast_path.py`` compares the output with the public methods'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes

__all__ = ["add_text_event", "set_text_attributes"]

_WRITERS = ("set_attribute", "set_attributes", "add_event", "_add_event")
_FAST_TYPES_LIMIT = 64


class _State:
    """What this module decided once: which span types take the fast path, and the SDK's
    ``Event`` class (imported with the first span type decided, not with otelfin: start-up)."""

    __slots__ = ("event_class", "fast_types")

    def __init__(self) -> None:
        #: Span type -> whether its writers are the SDK Span's own (bounded).
        self.fast_types: dict[type, bool] = {}
        self.event_class: Any = None


_state = _State()


def _decide(cls: type) -> bool:
    try:
        from opentelemetry.sdk.trace import Event
        from opentelemetry.sdk.trace import Span as SdkSpan
    except ImportError:  # pragma: no cover - the SDK is a dependency
        return False
    _state.event_class = Event
    if not issubclass(cls, SdkSpan):
        return False
    return all(getattr(cls, name, None) is getattr(SdkSpan, name, object()) for name in _WRITERS)


def _is_fast(cls: type) -> bool:
    fast = _decide(cls)
    if len(_state.fast_types) < _FAST_TYPES_LIMIT:
        _state.fast_types[cls] = fast
    return fast


def _turn_off(cls: type) -> None:
    _state.fast_types[cls] = False


def _fits(values: Mapping[str, str], value_limit: int) -> bool:
    for value in values.values():  # noqa: SIM110 - a loop, no generator frame per call
        if len(value) > value_limit:
            return False
    return True


def _write_attributes(span: Any, items: Mapping[str, str]) -> bool:
    """``items`` onto the live span's attributes as ``set_attribute`` would put them; False
    when a limit or the span's state asks for the public method (nothing written then)."""
    attributes = span._attributes
    if type(attributes) is not BoundedAttributes:
        return False
    limit, value_limit = attributes.maxlen, attributes.max_value_len
    if value_limit is not None and not _fits(items, value_limit):
        return False
    with span._lock:
        if span._end_time is not None or attributes._immutable:
            return False  # the public method warns about the ended span
        values = attributes._dict
        if limit is not None and len(values) + len(items) > limit:
            return False  # it might have to drop the oldest: the SDK decides which
        with attributes._lock:
            for key, value in items.items():
                # A key set again moves to the end, as the SDK's mapping does it.
                values.pop(key, None)
                values[key] = value
    return True


def set_text_attributes(span: Any, items: Mapping[str, str]) -> None:
    """``span.set_attributes(items)`` for non-empty ``str`` keys and ``str`` values."""
    cls = type(span)
    fast = _state.fast_types.get(cls)  # spelled out: this runs on every decline
    if fast is None:
        fast = _is_fast(cls)
    if fast:
        try:
            if _write_attributes(span, items):
                return
        except AttributeError:  # an SDK without these internals: public methods from now on
            _turn_off(cls)
    span.set_attributes(items)


def add_text_event(span: Any, name: str, attributes: Mapping[str, str]) -> None:
    """``span.add_event(name, attributes)`` for non-empty ``str`` keys and ``str`` values."""
    cls = type(span)
    fast = _state.fast_types.get(cls)
    if fast is None:
        fast = _is_fast(cls)
    if fast:
        try:
            limits = span._limits
            limit = limits.max_event_attributes
            value_limit = limits.max_attribute_length
            add = span._add_event
            if (limit is None or len(attributes) <= limit) and (
                value_limit is None or _fits(attributes, value_limit)
            ):
                bounded = BoundedAttributes(limit, None, immutable=True, max_value_len=value_limit)
                bounded._dict.update(attributes)
                add(_state.event_class(name, bounded))
                return
        except AttributeError:
            _turn_off(cls)
    span.add_event(name, attributes)
