"""Span scrubbing for every processor on the provider, not only otelfin's exporter.

The SDK calls each processor's ``_on_ending(span)`` while the span is ending, before *any*
processor's ``on_end`` receives the finished span, and builds that finished span from the
span's fields afterwards. :class:`ScrubbingSpanProcessor` scrubs the span's name, attributes,
events (exception messages and stack traces), links and status description there, once, so
an application's own processors on a reused ``TracerProvider`` (its OTLP exporter, a console
exporter) only ever see masked data, whatever their position on the provider.

``_on_ending`` is an underscore hook of the SDK (present in opentelemetry-sdk 1.3x); where it
is missing, :func:`install` reports that and otelfin falls back to scrubbing at export time in
its own exporter, which then cannot cover the application's processors (the README says so;
``ScrubbingSpanExporter`` wraps those exporters by hand).
"""

from __future__ import annotations

import weakref
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor as _Multi
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, Status

from otelfin import _internal
from otelfin._scrub import scrub_attributes, scrub_text

__all__ = ["ScrubbingSpanProcessor", "ending_hook_supported", "install"]


def ending_hook_supported() -> bool:
    """True when this SDK calls ``_on_ending`` on span processors."""
    return callable(getattr(_Multi, "_on_ending", None))


def _scrub_event(event: Event) -> Event:
    attributes = event.attributes
    scrubbed = scrub_attributes(attributes)
    name = scrub_text(event.name)
    if scrubbed is attributes and name is event.name:
        return event
    return Event(name, scrubbed, event.timestamp)


def _scrub_link(link: Link) -> Link:
    attributes = link.attributes
    scrubbed = scrub_attributes(attributes)
    if scrubbed is attributes:
        return link
    return Link(link.context, scrubbed)


def _bounded_list(items: Any, old: Any) -> BoundedList[Any]:
    out: BoundedList[Any] = BoundedList(None)
    out.extend(items)
    out.dropped = getattr(old, "dropped", 0)
    return out


class ScrubbingSpanProcessor(SpanProcessor):
    """Scrubs each span of its provider in place as it ends (see the module docstring)."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def _on_ending(self, span: Span) -> None:
        try:
            self._scrub_in_place(span)
        except Exception as exc:
            _internal.report("logging.span_scrub", exc)

    @staticmethod
    def _scrub_in_place(span: Any) -> None:
        # This runs on the thread that ends the span, so it reads the SDK span's fields
        # directly (its public properties copy events and links on every access) and
        # replaces only what changed, keeping the dropped-item counts.
        name = span._name
        if name and len(name) >= 13:
            span._name = scrub_text(name)
        attributes = span._attributes
        if attributes:
            scrubbed = scrub_attributes(attributes)
            if scrubbed is not attributes:
                fresh = BoundedAttributes(attributes=dict(scrubbed or {}))
                fresh.dropped = getattr(attributes, "dropped", 0)
                span._attributes = fresh
        events = span._events
        if events:
            new_events = [_scrub_event(event) for event in events]
            if any(a is not b for a, b in zip(new_events, events, strict=True)):
                span._events = _bounded_list(new_events, events)
        links = span._links
        if links:
            new_links = [_scrub_link(link) for link in links]
            if any(a is not b for a, b in zip(new_links, links, strict=True)):
                span._links = _bounded_list(new_links, links)
        status = span._status
        if status.description and len(status.description) >= 13:
            description = scrub_text(status.description)
            if description is not status.description:
                span._status = Status(status.status_code, description)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_installed: weakref.WeakKeyDictionary[TracerProvider, ScrubbingSpanProcessor] = (
    weakref.WeakKeyDictionary()
)


def install(provider: Any) -> bool:
    """Add one :class:`ScrubbingSpanProcessor` to an SDK ``provider`` (idempotent).

    Returns True when every span of ``provider`` is now scrubbed as it ends.
    """
    if not isinstance(provider, TracerProvider) or not ending_hook_supported():
        return False
    if provider in _installed:
        return True
    processor = ScrubbingSpanProcessor()
    provider.add_span_processor(processor)
    _installed[provider] = processor
    return True
