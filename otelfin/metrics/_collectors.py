"""Custom collectors: series computed at scrape time, so they cost nothing per call."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, Metric

from otelfin import _internal
from otelfin.metrics import names
from otelfin.scrub import scrub_text

__all__ = [
    "ExportHealthCollector",
    "InternalErrorsCollector",
    "OtlpHealthCollector",
    "RequestsCollector",
]


class _Source(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class RequestsCollector:
    """``<prefix>_requests_total``, derived from a duration histogram's ``_count``.

    A histogram's ``_count`` already counts every request; a separate counter would double the
    per-call cost for the same number. This collector republishes the count under the
    conventional RED name at scrape time. ``source`` is the histogram itself or, in
    multiprocess mode, a ``MultiProcessCollector`` (the count then covers every worker).
    """

    def __init__(self, source: _Source, histogram_name: str, name: str, documentation: str):
        self._source = source
        self._histogram = histogram_name
        self._name = name
        self._documentation = documentation

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterator[Metric]:
        family: CounterMetricFamily | None = None
        for metric in self._source.collect():
            if metric.name != self._histogram:
                continue
            for sample in metric.samples:
                if not sample.name.endswith("_count"):
                    continue
                if family is None:
                    family = CounterMetricFamily(
                        self._name, self._documentation, labels=list(sample.labels)
                    )
                family.add_metric(list(sample.labels.values()), sample.value)
        yield family if family is not None else CounterMetricFamily(self._name, self._documentation)


class InternalErrorsCollector:
    """``otelfin_internal_errors_total{where}``: failures otelfin contained (never raised).

    Mirrors :func:`otelfin._internal.internal_error_counts`; ``where`` names a code site in
    otelfin, so its values are bounded. In multiprocess mode it reports only the process that
    serves ``/metrics``.
    """

    name = names.INTERNAL_ERRORS_BASE

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self._doc)]

    _doc = "Failures inside otelfin that were contained instead of reaching the host, by place."

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self._doc, labels=["where"])
        for where, count in sorted(_internal.internal_error_counts().items()):
            family.add_metric([scrub_text(where)], float(count))
        yield family


class _DropsAndFailures:
    """A collector of two counter families, what a pipeline dropped and its failed exports."""

    _DROPPED: str
    _FAILURES: str
    _DROPPED_DOC: str
    _FAILURES_DOC: str

    def describe(self) -> list[Metric]:
        return [
            CounterMetricFamily(self._DROPPED, self._DROPPED_DOC),
            CounterMetricFamily(self._FAILURES, self._FAILURES_DOC),
        ]


class ExportHealthCollector(_DropsAndFailures):
    """``otelfin_spans_dropped_total{reason}`` and ``otelfin_span_export_failures_total{reason}``.

    Mirrors :func:`otelfin._internal.export_health`, counted where otelfin hands spans to the
    exporter (the SDK's batch processor does not publish its drops). ``reason`` is one of a few
    fixed words; every reason is always present (0 until it happens) so an alert on
    ``increase(...)`` sees the first drop.
    """

    _DROPPED = names.SPANS_DROPPED_BASE
    _FAILURES = names.SPAN_EXPORT_FAILURES_BASE
    _DROPPED_DOC = "Spans that never reached the exporter, by reason."
    _FAILURES_DOC = "Span export calls that failed, by reason."
    DROP_REASONS = ("queue_full", "export_failed", "shutdown")
    FAILURE_REASONS = ("failure", "exception", "timeout")

    def collect(self) -> Iterator[Metric]:
        dropped, failures = _internal.export_health()
        for name, doc, reasons, counts in (
            (self._DROPPED, self._DROPPED_DOC, self.DROP_REASONS, dropped),
            (self._FAILURES, self._FAILURES_DOC, self.FAILURE_REASONS, failures),
        ):
            family = CounterMetricFamily(name, doc, labels=["reason"])
            for reason in sorted({*reasons, *counts}):
                family.add_metric([reason], float(counts.get(reason, 0)))
            yield family


class OtlpHealthCollector(_DropsAndFailures):
    """``otelfin_logs_dropped_total{reason}`` and ``otelfin_otlp_export_failures_total{signal,
    reason}``: what the OTLP export of logs and metrics lost or failed (registered while
    ``OTEL_LOGS_EXPORTER``/``OTEL_METRICS_EXPORTER`` is ``otlp``; every reason present from 0).

    Metrics are exported cumulatively, so a failed metrics export loses nothing (the next one
    carries the totals): only its failure is counted.
    """

    _DROPPED = names.LOGS_DROPPED_BASE
    _FAILURES = names.OTLP_EXPORT_FAILURES_BASE
    _DROPPED_DOC = "Log records bound for OTLP that never reached the collector, by reason."
    _FAILURES_DOC = "OTLP export calls of logs and metrics that failed, by signal and reason."

    def __init__(self, signals: tuple[str, ...]) -> None:
        self.signals = signals

    def collect(self) -> Iterator[Metric]:
        dropped, failures = _internal.otlp_health()
        if "logs" in self.signals:
            family = CounterMetricFamily(self._DROPPED, self._DROPPED_DOC, labels=["reason"])
            for reason in sorted({*ExportHealthCollector.DROP_REASONS, *dropped}):
                family.add_metric([reason], float(dropped.get(reason, 0)))
            yield family
        family = CounterMetricFamily(
            self._FAILURES, self._FAILURES_DOC, labels=["signal", "reason"]
        )
        keys = {(s, r) for s in self.signals for r in ExportHealthCollector.FAILURE_REASONS}
        for signal, reason in sorted(keys | set(failures)):
            family.add_metric([signal, reason], float(failures.get((signal, reason), 0)))
        yield family


def safe_unregister(registry: Any, collector: Any) -> None:
    """Unregister if registered; never raises (shutdown paths)."""
    if registry is None or collector is None:
        return
    with contextlib.suppress(KeyError):
        registry.unregister(collector)
