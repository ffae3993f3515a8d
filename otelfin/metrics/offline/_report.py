"""P99 attribution: which label values make the slow tail.

The slow threshold is the histogram's smallest bucket bound at or above the estimated P99, so
"slow requests" per series is exact (``count - bucket{le=threshold}``), with no interpolation.
Each value of each ``--by`` label is then ranked by its share of the slow requests
(``tail_share``) against its share of all requests (``traffic_share``); ``lift`` is their
ratio, so a value with 5% of traffic and 60% of the tail (lift 12) stands out at once.

Sources: an in-process registry, an exposition text (classic or OpenMetrics, which carries
exemplars), a ``/metrics`` URL, or a Prometheus server (over a time window, running the PromQL
the report prints).
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otelfin.metrics._buckets import histogram_quantile, le_text
from otelfin.metrics.offline import _promql as q

__all__ = [
    "ReportError",
    "HistogramSeries",
    "AttributionRow",
    "AttributionReport",
    "attribute",
    "series_from_families",
    "series_from_text",
    "series_from_registry",
    "scrape",
    "from_prometheus",
    "format_text",
]

_MAX_EXEMPLARS = 3
_OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0, text/plain; version=0.0.4"


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

    def as_dict(self) -> dict[str, Any]:
        """The ``--format json`` document."""
        return {
            "metric": self.metric,
            "source": self.source,
            "quantile": self.quantile,
            "p99_seconds": self.p99_seconds,
            "threshold_seconds": self.threshold_seconds,
            "requests": self.requests,
            "slow": self.slow,
            "rows": [row.as_dict() for row in self.rows],
            "promql": list(self.promql),
            "notes": list(self.notes),
        }


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


def scrape(url: str, metric: str, timeout: float = 10.0) -> list[HistogramSeries]:
    """GET a ``/metrics`` URL (asking for OpenMetrics, for exemplars) and parse it."""
    try:
        request = urllib.request.Request(url, headers={"Accept": _OPENMETRICS_ACCEPT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ReportError(f"cannot scrape {url}: {exc}") from None
    return series_from_text(text, metric)


def _promql(metric: str, by: Sequence[str], quantile: float, window: str, le: str) -> list[str]:
    queries = [q.quantile(quantile, metric, [], window)]
    for label in by:
        queries.append(q.requests(metric, [label], window, fn="increase"))
        queries.append(q.slow(metric, [label], window, le, fn="increase"))
    return queries


def _threshold(bounds: Sequence[float], p99: float) -> float:
    for bound in bounds:
        if bound >= p99:
            return bound
    return bounds[-1]


def _slow_of(series: HistogramSeries, threshold: float) -> float:
    entry = series.buckets.get(threshold)
    if entry is not None:
        return max(0.0, series.count - entry[1])
    # A series with other bounds (another version of the app): take its largest bound below
    # the threshold, which counts a little more as slow rather than inventing a split.
    below = [b for b in series.buckets if b <= threshold]
    fast = series.buckets[max(below)][1] if below else 0.0
    return max(0.0, series.count - fast)


def attribute(
    series: Sequence[HistogramSeries],
    by: Sequence[str],
    *,
    metric: str,
    quantile: float = 0.99,
    window: str = "5m",
    source: str = "",
) -> AttributionReport:
    """Rank every value of every ``by`` label by its share of the slow tail."""
    if not 0 < quantile < 1:
        raise ReportError(f"quantile must be between 0 and 1, not {quantile}")
    if not by:
        raise ReportError("give at least one label to attribute by (--by)")
    bounds = sorted({b for s in series for b in s.buckets})
    total = sum(s.count for s in series)
    if not bounds or total <= 0:
        raise ReportError(f"histogram {metric!r} has no observations")
    cumulative = [sum(_cum_at(s, b) for s in series) for b in bounds] + [total]
    p99 = histogram_quantile(quantile, bounds, cumulative)
    threshold = _threshold(bounds, p99)
    notes: list[str] = []
    while sum(_slow_of(s, threshold) for s in series) == 0 and bounds.index(threshold) > 0:
        # Coarse buckets: nothing lies above the bound over the P99. Step down so the tail
        # still has members, and say so.
        threshold = bounds[bounds.index(threshold) - 1]
        notes.append(
            f"no request is above the bound over the P99; using le={le_text(threshold)} "
            "(buckets are too coarse here: see `otelfin buckets suggest`)"
        )
    threshold_le = next(
        (s.buckets[threshold][0] for s in series if threshold in s.buckets),
        le_text(threshold),
    )
    slow_total = sum(_slow_of(s, threshold) for s in series)
    rows: list[AttributionRow] = []
    for label in by:
        requests: dict[str, float] = {}
        slow: dict[str, float] = {}
        exemplars: dict[str, list[tuple[float, str]]] = {}
        for s in series:
            value = s.labels.get(label, "")
            requests[value] = requests.get(value, 0.0) + s.count
            slow[value] = slow.get(value, 0.0) + _slow_of(s, threshold)
            for bound, observed, trace_id in s.exemplars:
                if bound > threshold or observed > threshold:
                    exemplars.setdefault(value, []).append((observed, trace_id))
        rows.extend(
            _rows(label, requests, slow, exemplars, total, slow_total),
        )
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
        promql=tuple(_promql(metric, by, quantile, window, threshold_le)),
        source=source,
        notes=tuple(notes),
    )


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


def _cum_at(series: HistogramSeries, bound: float) -> float:
    entry = series.buckets.get(bound)
    if entry is not None:
        return entry[1]
    below = [b for b in series.buckets if b <= bound]
    return series.buckets[max(below)][1] if below else 0.0


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


# --- Prometheus --------------------------------------------------------------------------


def _query(base: str, path: str, params: dict[str, str], timeout: float) -> Any:
    url = f"{base.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read().decode("utf-8")).get("error", str(exc))
        except (ValueError, OSError):
            detail = str(exc)
        raise ReportError(f"Prometheus refused {params.get('query', path)!r}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ReportError(f"cannot query Prometheus at {base}: {exc}") from None
    if body.get("status") != "success":
        raise ReportError(f"Prometheus error: {body.get('error', body)}")
    return body["data"]


def query(base: str, promql: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Run an instant PromQL query; returns the vector's ``[{"metric", "value"}]``."""
    data = _query(base, "/api/v1/query", {"query": promql}, timeout)
    if data.get("resultType") != "vector":
        raise ReportError(f"expected an instant vector from {promql!r}")
    return list(data["result"])


def _number(text: str) -> float:
    value = float(text)
    return 0.0 if math.isnan(value) else value


def from_prometheus(
    base: str,
    metric: str,
    by: Sequence[str],
    *,
    quantile: float = 0.99,
    window: str = "5m",
    timeout: float = 10.0,
) -> AttributionReport:
    """The report over the last ``window``, computed by the Prometheus at ``base``."""
    if not by:
        raise ReportError("give at least one label to attribute by (--by)")
    p99_query = q.quantile(quantile, metric, [], window)
    p99_rows = query(base, p99_query, timeout)
    if not p99_rows or math.isnan(float(p99_rows[0]["value"][1])):
        raise ReportError(f"no {metric} observations in the last {window} (is it scraped?)")
    p99 = float(p99_rows[0]["value"][1])
    les = query(
        base,
        q.sum_by(["le"], q.rate(f"{metric}_bucket", window, fn="increase")),
        timeout,
    )
    bounds = sorted(
        (float(row["metric"]["le"]), row["metric"]["le"])
        for row in les
        if row["metric"].get("le") not in (None, "+Inf")
    )
    if not bounds:
        raise ReportError(f"{metric} has no finite buckets")
    le_float = _threshold([b for b, _ in bounds], p99)
    le_label = next(text for b, text in bounds if b == le_float)
    queries = _promql(metric, by, quantile, window, le_label)
    rows: list[AttributionRow] = []
    total = 0.0
    slow_total = 0.0
    exemplars = _exemplars(base, metric, window, le_float, timeout)
    notes: list[str] = []
    for i, label in enumerate(by):
        req_rows = query(base, queries[1 + 2 * i], timeout)
        slow_rows = query(base, queries[2 + 2 * i], timeout)
        requests = {r["metric"].get(label, ""): _number(r["value"][1]) for r in req_rows}
        slow = {r["metric"].get(label, ""): _number(r["value"][1]) for r in slow_rows}
        total = sum(requests.values())
        slow_total = sum(slow.values())
        by_value: dict[str, list[tuple[float, str]]] = {}
        for labels, observed, trace_id in exemplars:
            by_value.setdefault(labels.get(label, ""), []).append((observed, trace_id))
        rows.extend(_rows(label, requests, slow, by_value, total, slow_total))
        if req_rows and not any(label in r["metric"] for r in req_rows):
            notes.append(f"no {metric} series has the label {label!r}")
    return AttributionReport(
        metric=metric,
        quantile=quantile,
        p99_seconds=p99,
        threshold_seconds=le_float,
        threshold_le=le_label,
        requests=total,
        slow=slow_total,
        rows=tuple(rows),
        promql=tuple(queries),
        source=base,
        notes=tuple(notes),
    )


def _exemplars(
    base: str, metric: str, window: str, threshold: float, timeout: float
) -> list[tuple[dict[str, str], float, str]]:
    """Slow exemplars from Prometheus (needs ``--enable-feature=exemplar-storage``); else []."""
    seconds = _duration_seconds(window)
    end = time.time()
    try:
        data = _query(
            base,
            "/api/v1/query_exemplars",
            {"query": f"{metric}_bucket", "start": f"{end - seconds:.3f}", "end": f"{end:.3f}"},
            timeout,
        )
    except ReportError:
        return []
    found = []
    for series in data or []:
        labels = series.get("seriesLabels", {})
        for exemplar in series.get("exemplars", []):
            trace_id = exemplar.get("labels", {}).get("trace_id")
            value = float(exemplar.get("value", 0))
            if trace_id and value > threshold:
                found.append((labels, value, trace_id))
    return found


def _duration_seconds(window: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    for unit in sorted(units, key=len, reverse=True):
        if window.endswith(unit):
            try:
                return float(window[: -len(unit)]) * units[unit]
            except ValueError:
                break
    raise ReportError(f"window {window!r} is not a Prometheus duration such as 5m or 1h")


# --- text ----------------------------------------------------------------------------------


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def format_text(report: AttributionReport, promql: bool = True) -> str:
    """The table a person reads in five seconds."""
    share = report.slow / report.requests if report.requests else 0.0
    lines = [
        f"{report.metric}: P{report.quantile * 100:g} ~ {report.p99_seconds:.4g}s; "
        f"slow = above le={report.threshold_le}s",
        f"{_count(report.slow)} of {_count(report.requests)} requests are slow ({share:.2%})",
    ]
    lines += [f"note: {note}" for note in report.notes] + [""]
    header = ("label", "value", "requests", "traffic", "slow", "tail", "lift", "exemplar")
    table = [header]
    for row in report.rows:
        table.append(
            (
                row.label,
                row.value or '""',
                _count(row.requests),
                f"{row.traffic_share:.1%}",
                _count(row.slow),
                f"{row.tail_share:.1%}",
                f"{row.lift:.1f}x",
                row.exemplars[0] if row.exemplars else "",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    right = {2, 3, 4, 5, 6}
    for r in table:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    if promql:
        lines += ["", "PromQL:"] + [f"  {q}" for q in report.promql]
    return "\n".join(lines)
