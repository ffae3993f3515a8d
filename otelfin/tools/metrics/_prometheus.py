"""The P99 report computed by a Prometheus server: its HTTP API, answers checked."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from otelfin.tools.metrics import _promql as q
from otelfin.tools.metrics._http import _fetch, _short, check_url
from otelfin.tools.metrics._report import (
    AttributionReport,
    AttributionRow,
    _promql,
    _rows,
    _threshold,
    counted,
    operations_selector,
    ordered,
    step_down_note,
    thin_tail,
)
from otelfin.tools.metrics._series import ReportError

__all__ = ["from_prometheus", "query"]


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
    operations: Sequence[str] = (),
) -> AttributionReport:
    """The report over the last ``window``, computed by the Prometheus at ``base``."""
    if not by:
        raise ReportError("give at least one label to attribute by (--by)")
    selector = operations_selector(operations)
    p99_query = q.quantile(quantile, metric, [], window, selector)
    p99_rows = query(base, p99_query, timeout)
    p99 = _sample_value(p99_rows[0], p99_query) if p99_rows else math.nan
    if math.isnan(p99):
        scope = f" of operation {', '.join(operations)}" if operations else ""
        raise ReportError(
            f"no {metric} {counted(metric)}{scope} in the last {window} (is it scraped?)"
        )
    if not math.isfinite(p99) or p99 < 0:
        raise ReportError(f"Prometheus answered {p99_query!r} with {p99}, not a latency")
    le_query = q.sum_by(["le"], q.rate(f"{metric}_bucket", window, selector, fn="increase"))
    les = query(base, le_query, timeout)
    bounds: list[tuple[float, str]] = []
    cumulative: dict[float, float] = {}
    everything = math.nan
    for row in les:
        text = row["metric"].get("le")
        if text is None:
            continue
        if text == "+Inf":
            everything = _number(row, le_query)
            continue
        try:
            bound = float(text)
        except ValueError:
            raise ReportError(
                f"Prometheus answered {le_query!r} with le={_short(text)!r}"
            ) from None
        if math.isfinite(bound):
            bounds.append((bound, text))
            cumulative[bound] = _number(row, le_query)
    bounds.sort()
    if not bounds:
        raise ReportError(f"{metric} has no finite buckets")
    le_float = _threshold([b for b, _ in bounds], p99)
    at = [b for b, _ in bounds].index(le_float)
    notes: list[str] = []
    while (
        at > 0
        and math.isfinite(everything)
        and thin_tail(everything - cumulative[bounds[at][0]], everything, quantile)
    ):
        above = everything - cumulative[bounds[at][0]]
        at -= 1  # the same step down as attribute()
        notes.append(step_down_note([b for b, _ in bounds], at, metric, above))
    notes = notes[-1:]
    le_float, le_label = bounds[at]
    queries = _promql(metric, by, quantile, window, le_label, selector)
    groups: list[list[AttributionRow]] = []
    total = 0.0
    slow_total = 0.0
    exemplars = _exemplars(base, metric, window, le_float, timeout, selector)
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
        groups.append(_rows(label, requests, slow, by_value, total, slow_total))
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
        rows=tuple(ordered(groups)),
        counts=counted(metric),
        operations=tuple(operations),
        promql=tuple(queries),
        source=base,
        notes=tuple(notes),
        promql_ran=True,
    )


def _exemplars(
    base: str, metric: str, window: str, threshold: float, timeout: float, selector: str = ""
) -> list[tuple[dict[str, str], float, str]]:
    """Slow exemplars from Prometheus (needs ``--enable-feature=exemplar-storage``); else []."""
    seconds = _duration_seconds(window)
    end = time.time()
    try:
        data = _query(
            base,
            "/api/v1/query_exemplars",
            {
                "query": q.series(f"{metric}_bucket", selector),
                "start": f"{end - seconds:.3f}",
                "end": f"{end:.3f}",
            },
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
