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
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor as _Multi
from opentelemetry.sdk.util import BoundedList

from otelfin import _internal
from otelfin._scrub import scrub_span

__all__ = ["ScrubbingSpanProcessor", "ending_hook_supported", "install"]


def ending_hook_supported() -> bool:
    """True when this SDK calls ``_on_ending`` on span processors."""
    return callable(getattr(_Multi, "_on_ending", None))


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
            scrubbed = scrub_span(span)
            if scrubbed is span:
                return
            # The span is read-only through its API once ending; its fields are replaced
            # (names as in the SDK's ReadableSpan), keeping the dropped-item counts.
            target: Any = span
            target._name = scrubbed.name
            old_attributes = target._attributes
            attributes = BoundedAttributes(attributes=dict(scrubbed.attributes or {}))
            attributes.dropped = getattr(old_attributes, "dropped", 0)
            target._attributes = attributes
            target._events = _bounded_list(scrubbed.events, target._events)
            target._links = _bounded_list(scrubbed.links, target._links)
            target._status = scrubbed.status
        except Exception as exc:
            _internal.report("logging.span_scrub", exc)

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
