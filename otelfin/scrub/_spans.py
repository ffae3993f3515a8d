"""Span scrubbing: one processor (as spans end) and one exporter (as they leave).

:class:`ScrubbingSpanProcessor` scrubs every span of its provider as it ends. The SDK calls
each processor's ``_on_ending(span)`` while the span is ending, before *any* processor's
``on_end`` receives the finished span, and builds that finished span from the span's fields
afterwards; scrubbing there, once, means an application's own processors on a reused
``TracerProvider`` (its OTLP exporter, a console exporter) only ever see masked data,
whatever their position on the provider.

:class:`ScrubbingSpanExporter` scrubs at export time instead, off the request path when it
sits behind a batch processor. otelfin puts one in front of every exporter it drives
(``only_unscrubbed=True``: it steps aside while :func:`install_span_scrubbing` has a
processor scrubbing spans as they end, so each span is scrubbed exactly once); applications
wrap exporters otelfin cannot see with it.

``_on_ending`` is an underscore hook of the SDK (present in opentelemetry-sdk 1.3x); where it
is missing, :func:`install_span_scrubbing` returns False and scrubbing stays in the exporter.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor as _Multi
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, SpanContext, Status

from otelfin import _internal
from otelfin.scrub._options import ScrubOptions, current_options
from otelfin.scrub._pan import find_pans, may_hold_pan
from otelfin.scrub._text import MIN_LEN, scrub_text
from otelfin.scrub._walk import scrub_attributes

__all__ = [
    "ScrubbingSpanExporter",
    "ScrubbingSpanProcessor",
    "ending_hook_supported",
    "install_span_scrubbing",
    "scrub_span",
    "scrubbed_as_they_end",
]


def ending_hook_supported() -> bool:
    """True when this SDK calls ``_on_ending`` on span processors."""
    return callable(getattr(_Multi, "_on_ending", None))


def _scrub_event(event: Event, opts: ScrubOptions) -> Event:
    attributes = event.attributes
    scrubbed = scrub_attributes(attributes, opts)
    name = scrub_text(event.name, options=opts)
    if scrubbed is attributes and name is event.name:
        return event
    return Event(name, scrubbed, event.timestamp)


def _scrub_link(link: Link, opts: ScrubOptions) -> Link:
    attributes = link.attributes
    scrubbed = scrub_attributes(attributes, opts)
    if scrubbed is attributes:
        return link
    return Link(link.context, scrubbed)


def _bounded_list(items: Any, old: Any) -> BoundedList[Any]:
    out: BoundedList[Any] = BoundedList(None)
    out.extend(items)
    out.dropped = getattr(old, "dropped", 0)
    return out


#: The attribute a span carries when the scrubber failed on it and its content was withheld.
WITHHELD = "otelfin.scrub_failed"


def _withhold_in_place(span: Any) -> None:
    """Fail closed on an ending span the scrubber failed on: attributes, events, links and
    the status description are dropped and the span marked; its name is kept only if it
    scrubs."""
    try:
        span._name = scrub_text(span._name) if span._name else span._name
    except Exception:
        span._name = "withheld"
    span._attributes = BoundedAttributes(attributes={WITHHELD: True})
    span._events = _bounded_list([], span._events)
    span._links = _bounded_list([], span._links)
    span._status = Status(span._status.status_code)


def _withheld_copy(span: ReadableSpan) -> ReadableSpan:
    """A copy of ``span`` with only its identity, timing and kind: the scrubber failed on it."""
    try:
        name = scrub_text(span.name) if span.name else span.name
    except Exception:
        name = "withheld"
    return ReadableSpan(
        name=name,
        context=span.get_span_context(),
        parent=span.parent,
        resource=span.resource,
        attributes={WITHHELD: True},
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _scrub_or_withhold(span: ReadableSpan, opts: ScrubOptions) -> ReadableSpan:
    try:
        return scrub_span(span, opts)
    except Exception as exc:
        _internal.report("scrub.span_export", exc)
        return _withheld_copy(span)


class ScrubbingSpanProcessor(SpanProcessor):
    """Scrubs each span of its provider in place as it ends (see the module docstring).

    ``options`` fixes the settings; None (default) follows
    :func:`~otelfin.scrub.current_options` at each span.
    """

    def __init__(self, options: ScrubOptions | None = None) -> None:
        self.options = options

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def _on_ending(self, span: Span) -> None:
        try:
            self._scrub_in_place(span, self.options or current_options())
        except Exception as exc:
            _internal.report("scrub.span_ending", exc)
            try:
                _withhold_in_place(span)  # fail closed: nothing unscrubbed is exported
            except Exception as again:
                _internal.report("scrub.span_withhold", again)

    @staticmethod
    def _scrub_in_place(span: Any, opts: ScrubOptions) -> None:
        # This runs on the thread that ends the span, so it reads the SDK span's fields
        # directly (its public properties copy events and links on every access) and
        # replaces only what changed, keeping the dropped-item counts.
        context = span._context
        if context is not None and context.trace_state:
            clean = _clean_context(context)
            if clean is not context:
                span._context = clean
        name = span._name
        if name and len(name) >= MIN_LEN:
            span._name = scrub_text(name, options=opts)
        attributes = span._attributes
        if attributes:
            scrubbed = scrub_attributes(attributes, opts)
            if scrubbed is not attributes:
                fresh = BoundedAttributes(attributes=dict(scrubbed or {}))
                fresh.dropped = getattr(attributes, "dropped", 0)
                span._attributes = fresh
        events = span._events
        if events:
            new_events = [_scrub_event(event, opts) for event in events]
            if any(a is not b for a, b in zip(new_events, events, strict=True)):
                span._events = _bounded_list(new_events, events)
        links = span._links
        if links:
            new_links = [_scrub_link(link, opts) for link in links]
            if any(a is not b for a, b in zip(new_links, links, strict=True)):
                span._links = _bounded_list(new_links, links)
        status = span._status
        if status.description and len(status.description) >= MIN_LEN:
            description = scrub_text(status.description, options=opts)
            if description is not status.description:
                span._status = Status(status.status_code, description)


def _own(span: ReadableSpan, field: str, public: str) -> Sequence[Any]:
    """The span's own sequence ``field`` when it has one (an SDK span), else ``public``."""
    items = getattr(span, field, None)
    if isinstance(items, (BoundedList, list, tuple)):
        return items
    return getattr(span, public)  # type: ignore[no-any-return]


def scrub_span(span: ReadableSpan, options: ScrubOptions | None = None) -> ReadableSpan:
    """A copy of ``span`` with its name, attributes, events (exception message and stack trace
    included), links and status description scrubbed; the same span when nothing changed."""
    opts = options or current_options()
    name = scrub_text(span.name, options=opts) if span.name else span.name
    # The SDK's properties build a new view on every access: read each once. The attributes
    # are walked in the SDK's own mapping (scrub_attributes reads its plain dict): through
    # the ``attributes`` property's read-only proxy every item went through the Mapping
    # mixin, ~0.7 us an attribute.
    original_attributes = getattr(span, "_attributes", None)
    if original_attributes is None:
        original_attributes = span.attributes
    original_status = span.status
    original_context = span.get_span_context()
    context = _clean_context(original_context)
    attributes = scrub_attributes(original_attributes, opts)
    # An SDK span's ``events``/``links`` properties copy the list on every access; its own
    # lists are read (never changed) here, and most spans have neither.
    events: Sequence[Event] = _own(span, "_events", "events")
    new_events: list[Event] | None = None
    for i, event in enumerate(events if events else ()):
        ev_attrs = scrub_attributes(event.attributes, opts)
        ev_name = scrub_text(event.name, options=opts)
        if ev_attrs is not event.attributes or ev_name is not event.name:
            if new_events is None:
                new_events = list(events)
            new_events[i] = Event(ev_name, ev_attrs, event.timestamp)
    links: Sequence[Link] = _own(span, "_links", "links")
    new_links: list[Link] | None = None
    for i, link in enumerate(links if links else ()):
        link_attrs = scrub_attributes(link.attributes, opts)
        if link_attrs is not link.attributes:
            if new_links is None:
                new_links = list(links)
            new_links[i] = Link(link.context, link_attrs)
    status = original_status
    if status.description:
        description = scrub_text(status.description, options=opts)
        if description is not status.description:
            status = Status(status.status_code, description)
    if (
        name is span.name
        and attributes is original_attributes
        and new_events is None
        and new_links is None
        and status is original_status
        and context is original_context
    ):
        return span
    return ReadableSpan(
        name=name,
        context=context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=new_events if new_events is not None else tuple(events),
        links=new_links if new_links is not None else tuple(links),
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingSpanExporter(SpanExporter):
    """Wraps any exporter so every span it receives is scrubbed first.

    Use it for exporters an application added to its provider itself (a reused
    ``TracerProvider``), which otelfin cannot see::

        provider.add_span_processor(BatchSpanProcessor(ScrubbingSpanExporter(my_exporter)))

    ``options`` fixes the settings (None: :func:`~otelfin.scrub.current_options` at each
    export). ``only_unscrubbed=True`` passes spans through untouched while
    :func:`scrubbed_as_they_end` is true (otelfin's own exporters use it).
    """

    def __init__(
        self,
        inner: SpanExporter,
        options: ScrubOptions | None = None,
        *,
        only_unscrubbed: bool = False,
    ) -> None:
        self.inner = inner
        self.options = options
        self.only_unscrubbed = only_unscrubbed
        # Called between slices of a batch; otelfin's export pipeline puts its own here.
        self._pause: Callable[[], None] = _sleep_a_moment

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not (self.only_unscrubbed and _ending.on):
            opts = self.options or current_options()
            spans = _scrub_in_slices(spans, opts, self._pause)
        return self.inner.export(spans)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


#: Spans scrubbed between two GIL hand-overs on the export thread (~5 us each: ~0.15 ms).
SLICE = 32
_PAUSE_S = 0.0001


def _sleep_a_moment() -> None:
    time.sleep(_PAUSE_S)


def _scrub_in_slices(
    spans: Sequence[ReadableSpan],
    opts: ScrubOptions,
    pause: Callable[[], None] = _sleep_a_moment,
) -> list[ReadableSpan]:
    """Scrub ``spans`` in slices, calling ``pause`` between slices: by default a short sleep,
    so that a request thread waiting for the GIL gets it within ~0.2 ms (``time.sleep(0)``
    would hand it back at once).
    """
    out = [_scrub_or_withhold(s, opts) for s in spans[:SLICE]]
    for start in range(SLICE, len(spans), SLICE):
        pause()
        out.extend(_scrub_or_withhold(s, opts) for s in spans[start : start + SLICE])
    return out


class _Ending:
    """Whether spans reaching otelfin's exporters were scrubbed as they ended already."""

    on = False


_ending = _Ending()


def _clean_context(context: SpanContext | None) -> SpanContext | None:
    """``context`` without tracestate members that hold a card number (exported as
    ``traceState``); the same object when there are none."""
    if context is None or not context.trace_state:
        return context
    state = context.trace_state
    header = ",".join(f"{k}={v}" for k, v in state.items())
    if "%" not in header and not may_hold_pan(header):
        return context
    for key, value in list(state.items()):
        if find_pans(value) or find_pans(key) or ("%" in value and find_pans(unquote(value))):
            state = state.delete(key)
    return SpanContext(
        context.trace_id,
        context.span_id,
        context.is_remote,
        context.trace_flags,
        state,
    )


def scrubbed_as_they_end() -> bool:
    """True while otelfin's exporters leave scrubbing to an installed processor."""
    return _ending.on


# One instance serves every provider (configure() adds it once per provider); it keeps the
# options the scrub pillar handed it (use_ending_scrubber).
_PROCESSOR = ScrubbingSpanProcessor()


def use_ending_scrubber(
    provider: Any, *, as_they_end: bool, options: ScrubOptions | None = None
) -> ScrubbingSpanProcessor | None:
    """The one decision of where ``provider``'s spans are scrubbed: the processor to add to
    it when they are scrubbed as they end, or None for export-time scrubbing in otelfin's
    exporters (also where the SDK lacks the ending hook). ``configure()`` adds the processor
    itself, once per provider; it scrubs with ``options`` (None: the process default)."""
    done = as_they_end and isinstance(provider, TracerProvider) and ending_hook_supported()
    _ending.on = done
    _PROCESSOR.options = options
    return _PROCESSOR if done else None


# Providers :func:`install_span_scrubbing` added the processor to (configure() has its own
# bookkeeping of what it adds; this serves runs without configure()).
_added: weakref.WeakSet[TracerProvider] = weakref.WeakSet()


def install_span_scrubbing(provider: Any, *, as_they_end: bool) -> bool:
    """:func:`use_ending_scrubber`, and add its processor to ``provider`` (once), for a
    provider ``configure()`` does not manage (zero-code under another distro); True when
    spans are scrubbed as they end."""
    processor = use_ending_scrubber(provider, as_they_end=as_they_end)
    if processor is None:
        return False
    if provider not in _added:
        provider.add_span_processor(processor)
        _added.add(provider)
    return True


def reset() -> None:
    """Back to export-time scrubbing (spans still queued in a batch must be scrubbed)."""
    _ending.on = False
    _PROCESSOR.options = None
