"""P99 attribution: which label values make the slow tail.

The slow threshold is the histogram's smallest bucket bound at or above the estimated P99, so
"slow requests" per series is exact (``count - bucket{le=threshold}``), with no interpolation.
Each value of each ``--by`` label is then ranked by its share of the slow requests
(``tail_share``) against its share of all requests (``traffic_share``); ``lift`` is their
ratio, so a value with 5% of traffic and 60% of the tail (lift 12) stands out at once.

Sources: an in-process registry, an exposition text (classic or OpenMetrics, which carries
exemplars) or a ``/metrics`` URL (:mod:`._series`, :mod:`._http`), or a Prometheus server over
a time window, running the PromQL the report prints (:mod:`._prometheus`). The text table is
:mod:`._text`.

What it counts: the default histogram, ``otelfin_request_duration_seconds``, holds requests
(entry operations, each once), so the report answers for requests; ``operations`` scopes it to
some of them (``--operation``). Every count says its noun (:func:`counted`): requests for the
request histogram, calls for the function and dependency histograms, observations otherwise.
Label groups are ordered by what they explain: a label whose values split the tail (the
highest lift) first, a label with a single value last.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from otelfin.metrics import histogram_quantile, le_text
from otelfin.metrics import names as _names
from otelfin.tools.metrics import _promql as q
from otelfin.tools.metrics._series import HistogramSeries, ReportError

__all__ = [
    "AttributionRow",
    "AttributionReport",
    "attribute",
    "counted",
    "select_operations",
    "operations_selector",
]

_NOUNS = {
    _names.DURATION: "requests",
    _names.FUNCTION_DURATION: "calls",
    _names.DEPENDENCY: "calls",
}


def counted(metric: str) -> str:
    """What one observation of ``metric`` is: ``requests``, ``calls`` or ``observations``."""
    return _NOUNS.get(metric, "observations")


def singular(noun: str) -> str:
    """``requests`` -> ``request``."""
    return noun[:-1] if noun.endswith("s") else noun


_MAX_EXEMPLARS = 3


@dataclass(frozen=True)
class AttributionRow:
    """One value of one ``--by`` label."""

    label: str
    value: str
    requests: float
    slow: float
    traffic_share: float
    tail_share: float
    lift: float
    exemplars: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "requests": self.requests,
            "count": self.requests,
            "slow": self.slow,
            "traffic_share": self.traffic_share,
            "tail_share": self.tail_share,
            "lift": self.lift,
            "exemplars": list(self.exemplars),
        }


@dataclass(frozen=True)
class AttributionReport:
    """The P99 estimate, the slow threshold, and the ranked rows."""

    metric: str
    quantile: float
    p99_seconds: float
    threshold_seconds: float
    threshold_le: str
    requests: float
    slow: float
    rows: tuple[AttributionRow, ...]
    promql: tuple[str, ...]
    source: str = ""
    notes: tuple[str, ...] = ()
    #: True when ``promql`` are the queries this report ran (against Prometheus); False when
    #: it read counts since start-up from a scrape or a file and they are the equivalent.
    promql_ran: bool = False
    #: What the counts count (``requests``, ``calls``, ``observations``: :func:`counted`).
    counts: str = "requests"
    #: The operations the report was scoped to (empty: all of the metric's).
    operations: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The ``--format json`` document."""
        return {
            "metric": self.metric,
            "counts": self.counts,
            "operations": list(self.operations),
            "source": self.source,
            "quantile": self.quantile,
            "p99_seconds": self.p99_seconds,
            "threshold_seconds": self.threshold_seconds,
            "requests": self.requests,
            "total": self.requests,
            "slow": self.slow,
            "rows": [row.as_dict() for row in self.rows],
            "promql": list(self.promql),
            "promql_ran": self.promql_ran,
            "notes": list(self.notes),
        }


def _promql(
    metric: str, by: Sequence[str], quantile: float, window: str, le: str, selector: str = ""
) -> list[str]:
    queries = [q.quantile(quantile, metric, [], window, selector)]
    for label in by:
        queries.append(q.requests(metric, [label], window, selector, fn="increase"))
        queries.append(q.slow(metric, [label], window, le, selector, fn="increase"))
    return queries


def select_operations(
    series: Sequence[HistogramSeries], operations: Sequence[str], metric: str
) -> list[HistogramSeries]:
    """The series of the given operations (all of them when ``operations`` is empty).

    An operation no series has is a :class:`ReportError` naming the ones there are.
    """
    if not operations:
        return list(series)
    known = {s.labels.get("operation", "") for s in series}
    missing = [op for op in operations if op not in known]
    if missing:
        have = ", ".join(repr(op) for op in sorted(known)[:20]) or "none"
        raise ReportError(f"no {metric} series has operation {missing[0]!r} (operations: {have})")
    wanted = set(operations)
    return [s for s in series if s.labels.get("operation", "") in wanted]


def operations_selector(operations: Sequence[str]) -> str:
    """The PromQL matcher for ``operations`` (none: every series)."""
    if not operations:
        return ""
    if len(operations) == 1:
        return f"operation={json.dumps(operations[0])}"
    # PromQL regexes are RE2, anchored; escape each name's metacharacters.
    pattern = "|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", op) for op in operations)
    return f"operation=~{json.dumps(pattern)}"


def ordered(groups: list[list[AttributionRow]]) -> list[AttributionRow]:
    """Label groups, the most explanatory first: highest lift, a single-valued label last."""
    ranked = sorted(
        groups,
        key=lambda rows: (len(rows) <= 1, -max((r.lift for r in rows), default=0.0)),
    )
    return [row for rows in ranked for row in rows]


def _threshold(bounds: Sequence[float], p99: float) -> float:
    for bound in bounds:
        if bound >= p99:
            return bound
    return bounds[-1]


class _Indexed:
    """One series' bounds sorted once, so "the count at or below a bound" is a bisection."""

    __slots__ = ("bounds", "counts", "series")

    def __init__(self, series: HistogramSeries) -> None:
        self.series = series
        self.bounds = sorted(series.buckets)
        self.counts = [series.buckets[b][1] for b in self.bounds]

    def fast(self, threshold: float) -> float:
        """The cumulative count of the series' largest bound at or below ``threshold``."""
        # A series with other bounds (another version of the app) takes its largest bound
        # below the threshold, which counts a little more as slow rather than inventing a split.
        i = bisect_right(self.bounds, threshold)
        return self.counts[i - 1] if i else 0.0

    def slow(self, threshold: float) -> float:
        return max(0.0, self.series.count - self.fast(threshold))


def _step_sums(
    indexed: Sequence[_Indexed], position: Mapping[float, int], size: int
) -> tuple[list[float], list[float]]:
    """Per global bound: the summed cumulative counts and the summed slow counts.

    Each series is a step function of the bound (constant between its own bounds), so both
    sums are built from the steps with one prefix sum: linear in the number of buckets. (The
    direct way, every series at every bound, was quadratic: minutes for a 2.6 MB exposition
    whose series had bounds of their own.)
    """
    cum_steps = [0.0] * size
    slow_steps = [0.0] * size
    slow_base = 0.0
    for item in indexed:
        total = item.series.count
        previous_cum = 0.0
        previous_slow = max(0.0, total)
        slow_base += previous_slow
        for bound, count in zip(item.bounds, item.counts, strict=True):
            i = position[bound]
            cum_steps[i] += count - previous_cum
            slow = max(0.0, total - count)
            slow_steps[i] += slow - previous_slow
            previous_cum, previous_slow = count, slow
    cumulative = list(itertools.accumulate(cum_steps))
    slow_totals = [slow_base + s for s in itertools.accumulate(slow_steps)]
    return cumulative, slow_totals


def thin_tail(slow: float, total: float, quantile: float) -> bool:
    """Whether the tail above the bound over the P99 is too thin to rank.

    The tail is what lies above the bound over the P99. When that holds fewer than half of the
    requests a P99 leaves above it (none, or one of 500 in a bucket 20% wide), a ranking of it
    would rest on a request or two: the report steps down a bound, so the tail has members.
    """
    return slow <= 0 or slow < 0.5 * (1 - quantile) * total


def step_down_note(bounds: Sequence[float], at: int, metric: str, above: float = 0.0) -> str:
    """Why the slow threshold is ``bounds[at]``, one bound under the one over the P99
    (``above``: how many were over that one, fewer than half the tail a P99 leaves)."""
    wide = bounds[at + 1] > 1.25 * bounds[at] if bounds[at] > 0 else True
    what = counted(metric)
    over = (
        f"no {singular(what)} is above the bound over the P99"
        if above <= 0
        else f"only {above:g} {what if above != 1 else singular(what)} above the bound over the "
        "P99 (fewer than half the tail it leaves)"
    )
    return f"{over}; using le={le_text(bounds[at])} " + (
        "(buckets are too coarse here: see `otelfin buckets suggest`)"
        if wide
        else "(the P99 lies in the slowest occupied bucket: the requests above this bound are "
        "the slowest ones)"
    )


def attribute(
    series: Sequence[HistogramSeries],
    by: Sequence[str],
    *,
    metric: str,
    quantile: float = 0.99,
    window: str = "5m",
    source: str = "",
    operations: Sequence[str] = (),
) -> AttributionReport:
    """Rank every value of every ``by`` label by its share of the slow tail.

    Time is linear in the number of buckets (plus one sort of the distinct bounds).
    """
    if not 0 < quantile < 1:
        raise ReportError(f"quantile must be between 0 and 1, not {quantile}")
    if not by:
        raise ReportError("give at least one label to attribute by (--by)")
    series = select_operations(series, operations, metric)
    _check_finite(series, metric)
    indexed = [_Indexed(s) for s in series]
    bounds = sorted({b for s in series for b in s.buckets})
    total = sum(s.count for s in series)
    if not bounds or total <= 0:
        raise ReportError(f"histogram {metric!r} has no {counted(metric)}")
    if not math.isfinite(total):
        raise ReportError(f"histogram {metric!r}: the counts add up to more than a float holds")
    position = {b: i for i, b in enumerate(bounds)}
    cumulative, slow_totals = _step_sums(indexed, position, len(bounds))
    p99 = histogram_quantile(quantile, bounds, [*cumulative, total])
    at = min(bisect_left(bounds, p99), len(bounds) - 1)
    notes: list[str] = []
    while at > 0 and thin_tail(slow_totals[at], total, quantile):
        above = slow_totals[at]
        at -= 1
        notes.append(step_down_note(bounds, at, metric, above))
    threshold = bounds[at]
    threshold_le = next(
        (s.buckets[threshold][0] for s in series if threshold in s.buckets),
        le_text(threshold),
    )
    slow_of = [item.slow(threshold) for item in indexed]
    slow_total = sum(slow_of)
    groups: list[list[AttributionRow]] = []
    for label in by:
        requests: dict[str, float] = {}
        slow: dict[str, float] = {}
        exemplars: dict[str, list[tuple[float, str]]] = {}
        for s, slow_count in zip(series, slow_of, strict=True):
            value = s.labels.get(label, "")
            requests[value] = requests.get(value, 0.0) + s.count
            slow[value] = slow.get(value, 0.0) + slow_count
            for bound, observed, trace_id in s.exemplars:
                if bound > threshold or observed > threshold:
                    exemplars.setdefault(value, []).append((observed, trace_id))
        groups.append(_rows(label, requests, slow, exemplars, total, slow_total))
    rows = ordered(groups)
    notes = notes[-1:] + _missing_labels(by, [s.labels for s in series], metric)
    return AttributionReport(
        metric=metric,
        quantile=quantile,
        p99_seconds=p99,
        threshold_seconds=threshold,
        threshold_le=threshold_le,
        requests=total,
        slow=slow_total,
        rows=tuple(rows),
        promql=tuple(
            _promql(metric, by, quantile, window, threshold_le, operations_selector(operations))
        ),
        counts=counted(metric),
        operations=tuple(operations),
        source=source,
        notes=tuple(notes),
    )


def _check_finite(series: Sequence[HistogramSeries], metric: str) -> None:
    """Counts must be finite and non-negative (an exposition can say NaN, +Inf or -5)."""
    for s in series:
        counts = [s.count, *(count for _, count in s.buckets.values())]
        if not all(math.isfinite(c) and c >= 0 for c in counts):
            raise ReportError(
                f"histogram {metric!r} series {_labels_text(s.labels)} has a count that is "
                "not a finite number >= 0"
            )


def _labels_text(labels: Mapping[str, str]) -> str:
    text = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return text if len(text) <= 80 else text[:77] + "..."


def _missing_labels(
    by: Sequence[str], label_sets: Sequence[Mapping[str, str]], metric: str
) -> list[str]:
    """A note per ``by`` label that no series carries (a typo reports one empty value)."""
    present = {name for labels in label_sets for name in labels}
    return [
        f"no {metric} series has the label {label!r} (labels: {', '.join(sorted(present))})"
        for label in by
        if label not in present
    ]


def _rows(
    label: str,
    requests: dict[str, float],
    slow: dict[str, float],
    exemplars: dict[str, list[tuple[float, str]]],
    total: float,
    slow_total: float,
) -> list[AttributionRow]:
    rows = []
    for value, count in requests.items():
        traffic_share = count / total if total else 0.0
        tail_share = slow.get(value, 0.0) / slow_total if slow_total else 0.0
        lift = tail_share / traffic_share if traffic_share else 0.0
        slowest = sorted(exemplars.get(value, []), reverse=True)
        ids = tuple(dict.fromkeys(trace for _, trace in slowest))[:_MAX_EXEMPLARS]
        rows.append(
            AttributionRow(
                label=label,
                value=value,
                requests=count,
                slow=slow.get(value, 0.0),
                traffic_share=traffic_share,
                tail_share=tail_share,
                lift=lift,
                exemplars=ids,
            )
        )
    rows.sort(key=lambda r: (-r.tail_share, -r.lift, r.value))
    return rows
