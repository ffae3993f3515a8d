"""Containment around exporters: their failures are counted and reported once, and a call
that may hang runs on a daemon thread within a deadline."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otelfin import _internal
from otelfin.scrub import ScrubbingSpanExporter, ScrubOptions

__all__ = ["GuardedExporter", "exporter_name"]


def exporter_name(exporter: SpanExporter) -> str:
    """The class name reports and counters give ``exporter``: the built exporter's behind a
    :class:`~otelfin._exporters._otlp.DeferredSpanExporter`."""
    name = getattr(exporter, "exporter_name", None)
    return name if isinstance(name, str) else type(exporter).__name__


class _Contained(SpanExporter):
    """Shutdown and flush of a wrapped exporter ``inner``, its failures contained and counted
    (export is each subclass's own)."""

    inner: SpanExporter

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception as exc:
            _internal.report(f"exporter.shutdown[{exporter_name(self.inner)}]", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return bool(self.inner.force_flush(timeout_millis))
        except Exception as exc:
            _internal.report(f"exporter.force_flush[{exporter_name(self.inner)}]", exc)
            return False


class GuardedExporter(_Contained):
    """Scrubs spans once, then exports; an exporter failure is counted, logged once, contained.

    Scrubbing is :class:`~otelfin.scrub.ScrubbingSpanExporter`'s, which steps aside when the
    spans were scrubbed as they ended already. It scrubs with ``options`` (None: the process
    default, masking on); the pipeline is built before the scrub pillar, so ``configure()``
    hands that pillar's options over afterwards with :meth:`use_scrub_options`.
    """

    def __init__(
        self,
        inner: SpanExporter,
        options: ScrubOptions | None = None,
        *,
        pause: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self._scrubbing = ScrubbingSpanExporter(inner, options, only_unscrubbed=True)
        if pause is not None:
            self._scrubbing._pause = pause  # the export pipeline's: it knows the backlog

    def use_scrub_options(self, options: ScrubOptions | None) -> None:
        """Scrub with ``options`` from the next export on (None: the process default)."""
        self._scrubbing.options = options  # one reference, replaced whole

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            return self._scrubbing.export(spans)
        except Exception as exc:
            _internal.report(f"exporter.export[{exporter_name(self.inner)}]", exc)
            return SpanExportResult.FAILURE


def _within(call: Callable[[], Any], timeout_millis: float, name: str) -> bool:
    """Run ``call`` on a daemon thread and wait at most ``timeout_millis``; True if it finished.

    The SDK's ``BatchSpanProcessor.force_flush`` ignores its timeout and its ``shutdown`` waits
    for the export in flight, and an OTLP export retries for up to its own 10 s timeout per
    batch, so a hanging collector made ``shutdown(timeout_millis=1000)`` take 49 s. A thread
    left behind here is a daemon: it never delays the exit, and exports it attempts after the
    deadline fail at once (:class:`_Accounts`).
    """
    if timeout_millis <= 0:
        return False
    worker = threading.Thread(target=_contained(call, name), name=f"otelfin-{name}", daemon=True)
    worker.start()
    worker.join(timeout_millis / 1000)
    return not worker.is_alive()


def _contained(call: Callable[[], Any], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            call()
        except Exception as exc:
            _internal.report(f"processor.{name}", exc)

    return run
