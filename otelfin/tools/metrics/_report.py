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

import http.client
import itertools
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otelfin.metrics import histogram_quantile, le_text
from otelfin.tools.metrics import _promql as q

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
    #: True when ``promql`` are the queries this report ran (against Prometheus); False when
    #: it read counts since start-up from a scrape or a file and they are the equivalent.
    promql_ran: bool = False

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
            "promql_ran": self.promql_ran,
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
    """GET a ``/metrics`` URL (asking for OpenMetrics, for exemplars) and parse it.

    Only ``http``/``https`` URLs; ``timeout`` bounds the whole request, not each read.
    """
    check_url(url, "--scrape")
    status, body = _fetch(url, {"Accept": _OPENMETRICS_ACCEPT}, timeout, f"cannot scrape {url}")
    if status != 200:
        raise ReportError(f"cannot scrape {url}: HTTP {status}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"cannot scrape {url}: not UTF-8 text (byte {exc.start})") from None
    return series_from_text(text, metric)


#: The largest HTTP body read from a /metrics URL or Prometheus (larger ones are refused).
MAX_BODY_BYTES = 64 << 20


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib also follows them to ftp://)."""

    def redirect_request(
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> Any:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.URLError(f"refused a redirect to {_short(newurl)}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def check_url(url: str, option: str) -> None:
    """Raise :class:`ReportError` unless ``url`` is an ``http://`` or ``https://`` URL.

    Nothing else is ever opened: a ``file://`` URL would read a local file and quote it.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        shown = parts.scheme + ":" if parts is not None and parts.scheme else _short(url)
        raise ReportError(f"{option} takes an http:// or https:// URL, not {shown!r}")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fetch(url: str, headers: dict[str, str], timeout: float, what: str) -> tuple[int, bytes]:
    """``(status, body)`` of a GET, within about ``timeout`` seconds overall and MAX_BODY_BYTES.

    Error statuses are returned, not raised; an unreachable or too slow server, a body that is
    too large or a refused redirect raise :class:`ReportError` starting with ``what``.
    """
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    request = urllib.request.Request(url, headers=headers)
    try:
        try:
            response = opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            response = exc  # an error status still has a body worth reading
        with response:
            status = int(response.status or 0)
            chunks: list[bytes] = []
            size = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no complete answer within {timeout:g}s (--timeout)")
                # read1: what has arrived, at most one socket read (each bounded by ``timeout``),
                # so a server trickling bytes is cut off soon after the deadline.
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ReportError(
                        f"{what}: the answer is larger than {MAX_BODY_BYTES >> 20} MiB"
                    )
                chunks.append(chunk)
    except ReportError:
        raise
    except TimeoutError as exc:
        detail = (
            str(exc) if "--timeout" in str(exc) else f"no answer within {timeout:g}s (--timeout)"
        )
        raise ReportError(f"{what}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ReportError(f"{what}: {_short(str(reason), 200)}") from None
    return status, b"".join(chunks)


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


def _slow_of(series: HistogramSeries, threshold: float) -> float:
    return _Indexed(series).slow(threshold)


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


def attribute(
    series: Sequence[HistogramSeries],
    by: Sequence[str],
    *,
    metric: str,
    quantile: float = 0.99,
    window: str = "5m",
    source: str = "",
) -> AttributionReport:
    """Rank every value of every ``by`` label by its share of the slow tail.

    Time is linear in the number of buckets (plus one sort of the distinct bounds).
    """
    if not 0 < quantile < 1:
        raise ReportError(f"quantile must be between 0 and 1, not {quantile}")
    if not by:
        raise ReportError("give at least one label to attribute by (--by)")
    _check_finite(series, metric)
    indexed = [_Indexed(s) for s in series]
    bounds = sorted({b for s in series for b in s.buckets})
    total = sum(s.count for s in series)
    if not bounds or total <= 0:
        raise ReportError(f"histogram {metric!r} has no observations")
    if not math.isfinite(total):
        raise ReportError(f"histogram {metric!r}: the counts add up to more than a float holds")
    position = {b: i for i, b in enumerate(bounds)}
    cumulative, slow_totals = _step_sums(indexed, position, len(bounds))
    p99 = histogram_quantile(quantile, bounds, [*cumulative, total])
    at = min(bisect_left(bounds, p99), len(bounds) - 1)
    notes: list[str] = []
    while slow_totals[at] == 0 and at > 0:
        # Coarse buckets: nothing lies above the bound over the P99. Step down so the tail
        # still has members, and say so.
        at -= 1
        notes.append(
            f"no request is above the bound over the P99; using le={le_text(bounds[at])} "
            "(buckets are too coarse here: see `otelfin buckets suggest`)"
        )
    threshold = bounds[at]
    threshold_le = next(
        (s.buckets[threshold][0] for s in series if threshold in s.buckets),
        le_text(threshold),
    )
    slow_of = [item.slow(threshold) for item in indexed]
    slow_total = sum(slow_of)
    rows: list[AttributionRow] = []
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


# --- Prometheus --------------------------------------------------------------------------


def _query(base: str, path: str, params: dict[str, str], timeout: float) -> Any:
    """The ``data`` of a Prometheus API answer; anything else is a :class:`ReportError`."""
    what = params.get("query", path)
    url = f"{base.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    status, raw = _fetch(
        url, {"Accept": "application/json"}, timeout, f"cannot query Prometheus at {base}"
    )
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        start = raw[:200].decode("utf-8", "replace").strip()
        kind = "an HTML page" if start[:1] == "<" else "something that is not JSON"
        if status != 200:
            raise ReportError(f"Prometheus at {base} answered HTTP {status} ({kind})") from None
        raise ReportError(f"Prometheus at {base} answered {what!r} with {kind}") from None
    if not isinstance(body, dict):
        raise ReportError(f"Prometheus at {base} answered {what!r} with JSON that is not an object")
    if status != 200 or body.get("status") != "success":
        detail = body.get("error")
        detail = _short(detail, 300) if isinstance(detail, str) else f"HTTP {status}"
        raise ReportError(f"Prometheus refused {what!r}: {detail}")
    if "data" not in body:
        raise ReportError(f"Prometheus at {base} answered {what!r} without 'data'")
    return body["data"]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def query(base: str, promql: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Run an instant PromQL query; returns the vector's ``[{"metric", "value"}]``.

    Every row is checked: ``metric`` an object of strings, ``value`` ``[time, "number"]``.
    """
    check_url(base, "--prometheus")
    data = _query(base, "/api/v1/query", {"query": promql}, timeout)
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise ReportError(f"expected an instant vector from {promql!r}")
    result = data.get("result")
    if not isinstance(result, list):
        raise ReportError(f"Prometheus answered {promql!r} without a result list")
    for row in result:
        if not (
            isinstance(row, dict)
            and isinstance(row.get("metric"), dict)
            and all(isinstance(v, str) for v in row["metric"].values())
            and isinstance(row.get("value"), list)
            and len(row["value"]) == 2
            and isinstance(row["value"][1], str)
        ):
            raise ReportError(
                f"Prometheus answered {promql!r} with a malformed sample: {_short(repr(row))}"
            )
        _sample_value(row, promql)
    return list(result)


def _sample_value(row: dict[str, Any], promql: str) -> float:
    """A sample's value (Prometheus sends numbers as strings: "1.5", "NaN", "+Inf")."""
    text = row["value"][1]
    try:
        return float(text)
    except ValueError:
        raise ReportError(
            f"Prometheus answered {promql!r} with the value {_short(text)!r}, not a number"
        ) from None


def _number(row: dict[str, Any], promql: str) -> float:
    """A count: NaN (no data in the window) is 0; infinite or negative is refused."""
    value = _sample_value(row, promql)
    if math.isnan(value):
        return 0.0
    if not math.isfinite(value) or value < 0:
        raise ReportError(
            f"Prometheus answered {promql!r} with the count {value}, not a finite number >= 0"
        )
    return value


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
    p99 = _sample_value(p99_rows[0], p99_query) if p99_rows else math.nan
    if math.isnan(p99):
        raise ReportError(f"no {metric} observations in the last {window} (is it scraped?)")
    if not math.isfinite(p99) or p99 < 0:
        raise ReportError(f"Prometheus answered {p99_query!r} with {p99}, not a latency")
    le_query = q.sum_by(["le"], q.rate(f"{metric}_bucket", window, fn="increase"))
    les = query(base, le_query, timeout)
    bounds = []
    for row in les:
        text = row["metric"].get("le")
        if text in (None, "+Inf"):
            continue
        try:
            bound = float(text)
        except ValueError:
            raise ReportError(
                f"Prometheus answered {le_query!r} with le={_short(text)!r}"
            ) from None
        if math.isfinite(bound):
            bounds.append((bound, text))
    bounds.sort()
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
        requests = {r["metric"].get(label, ""): _number(r, queries[1 + 2 * i]) for r in req_rows}
        slow = {r["metric"].get(label, ""): _number(r, queries[2 + 2 * i]) for r in slow_rows}
        total = sum(requests.values())
        slow_total = sum(slow.values())
        if not (math.isfinite(total) and math.isfinite(slow_total)):
            raise ReportError(
                f"the {metric} counts from Prometheus add up to more than a float holds"
            )
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
        promql_ran=True,
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
    # Exemplars are a bonus: a malformed answer yields none rather than failing the report.
    for series in data if isinstance(data, list) else []:
        if not isinstance(series, dict):
            continue
        labels = series.get("seriesLabels")
        exemplars = series.get("exemplars")
        if not isinstance(labels, dict) or not isinstance(exemplars, list):
            continue
        for exemplar in exemplars:
            if not isinstance(exemplar, dict) or not isinstance(exemplar.get("labels"), dict):
                continue
            trace_id = exemplar["labels"].get("trace_id")
            try:
                value = float(exemplar.get("value", 0))
            except (TypeError, ValueError):
                continue
            if (
                isinstance(trace_id, str)
                and trace_id
                and math.isfinite(value)
                and value > threshold
            ):
                found.append(({k: str(v) for k, v in labels.items()}, value, trace_id))
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
        f"{_count(report.slow)} of {_count(report.requests)} "
        f"{'request' if report.requests == 1 else 'requests'} "
        f"{'is' if report.slow == 1 else 'are'} slow ({share:.2%})",
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
    if promql and report.promql:
        if report.promql_ran:
            heading = "PromQL:"
        else:
            # A scrape or a file holds counts since each process started, not a window: the
            # queries were not run; they are what gives the same ranking in Prometheus.
            heading = "PromQL for the same report in Prometheus (not run here):"
        lines += ["", heading] + [f"  {q}" for q in report.promql]
    return "\n".join(lines)
