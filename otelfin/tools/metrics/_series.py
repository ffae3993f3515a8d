"""Histogram series read from an exposition (classic text or OpenMetrics) or a registry.

The input of every report: a :class:`HistogramSeries` per label set, with cumulative bucket
counts and the exemplars (trace ids) the exposition carried.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ReportError",
    "HistogramSeries",
    "series_from_families",
    "series_from_text",
    "series_from_registry",
]


class ReportError(Exception):
    """The report cannot be made: no such metric, no data, an unreachable source."""


@dataclass
class HistogramSeries:
    """One labelled series of a histogram: cumulative bucket counts and slow exemplars."""

    labels: dict[str, str]
    #: finite upper bound -> (le label text, cumulative count)
    buckets: dict[float, tuple[str, float]] = field(default_factory=dict)
    count: float = 0.0
    #: (upper bound, trace id) for every bucket exemplar seen (+Inf is math.inf)
    exemplars: list[tuple[float, float, str]] = field(default_factory=list)


def _le_value(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ReportError(f"bucket bound le={text!r} is not a number") from None


def series_from_families(families: Iterable[Any], metric: str) -> list[HistogramSeries]:
    """The series of histogram ``metric`` from prometheus_client metric families."""
    found = False
    by_key: dict[tuple[tuple[str, str], ...], HistogramSeries] = {}
    for family in families:
        if family.name != metric:
            continue
        found = True
        if family.type not in ("histogram", "gaugehistogram"):
            raise ReportError(f"metric {metric!r} is a {family.type}, not a histogram")
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            key = tuple(sorted(labels.items()))
            series = by_key.get(key)
            if series is None:
                series = by_key[key] = HistogramSeries(labels=labels)
            if sample.name.endswith("_bucket"):
                le_label = sample.labels.get("le", "")
                bound = _le_value(le_label)
                if math.isinf(bound):
                    series.count = max(series.count, sample.value)
                else:
                    series.buckets[bound] = (le_label, sample.value)
                exemplar = getattr(sample, "exemplar", None)
                if exemplar is not None:
                    trace_id = exemplar.labels.get("trace_id")
                    if trace_id:
                        series.exemplars.append((bound, exemplar.value, trace_id))
            elif sample.name.endswith("_count"):
                series.count = max(series.count, sample.value)
    if not found:
        raise ReportError(f"no histogram named {metric!r} in the exposition")
    return list(by_key.values())


def series_from_text(text: str, metric: str) -> list[HistogramSeries]:
    """Parse a classic-text or OpenMetrics exposition (``# EOF``-terminated)."""
    try:
        if text.rstrip().endswith("# EOF"):
            from prometheus_client.openmetrics.parser import (
                text_string_to_metric_families as parse_openmetrics,
            )

            families = list(parse_openmetrics(text))  # type: ignore[no-untyped-call]
        else:
            from prometheus_client.parser import text_string_to_metric_families

            families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ReportError(f"cannot parse the exposition: {exc}") from None
    return series_from_families(families, metric)


def series_from_registry(registry: Any, metric: str) -> list[HistogramSeries]:
    """The series of ``metric`` straight from a ``CollectorRegistry`` (exemplars included)."""
    return series_from_families(registry.collect(), metric)
