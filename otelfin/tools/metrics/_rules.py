"""Prometheus recording and alerting rules for otelfin's metrics.

* recording: P99 per service/operation, request and error rates, and the ratio of requests
  slower than the SLO over 5m/30m/1h/6h (exact, because the SLO is a bucket bound);
* recording: the error ratio (requests with ``outcome="error"``: declines are not errors)
  over the same windows, and each channel's decline ratio over 1h;
* alerting: multi-window SLO burn rate (fast: 14.4x over 1h and 5m; slow: 6x over 6h and
  30m, the Google SRE workbook's pairs) for latency and for errors, a channel whose decline
  ratio jumps against its own last day (an acquirer outage often shows as declines, not 5xx),
  unregistered error codes in logs, metric overflow (a label hit its series cap) and failures
  otelfin contained.

Every ratio counts requests from the request histogram (``otelfin_request_duration_seconds``:
entry operations, each once), the same series ``otelfin p99 report`` and the dashboards read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import yaml

from otelfin._settings import DEFAULT_SLO
from otelfin.metrics import (
    DURATION_METRIC,
    ERRORS_METRIC,
    check_slo_bound,
    default_buckets,
    names,
)
from otelfin.tools.metrics import _promql as q

__all__ = ["build_rules", "rules_yaml", "all_expressions", "UNREGISTERED_CODES_METRIC"]

#: Defined by otelfin.logging: events dropped or tagged for an unregistered error code.
UNREGISTERED_CODES_METRIC = names.UNREGISTERED_CODES
OVERFLOW_METRIC = names.OVERFLOW
INTERNAL_ERRORS_METRIC = names.INTERNAL_ERRORS
_SLO_WINDOWS = ("5m", "30m", "1h", "6h")
#: The decline-ratio rule fires when a channel's last hour is this many times its last day...
DECLINE_JUMP = 2.0
#: ...and at least this share of its requests were declined (a quiet channel's noise stays out).
DECLINE_FLOOR = 0.05


# Prometheus' own grammar for metric and label names: anything else makes rules promtool rejects.
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def build_rules(
    *,
    slo: float = DEFAULT_SLO,
    objective: float = 0.99,
    quantile: float = 0.99,
    metric: str = DURATION_METRIC,
    by: Sequence[str] = ("service", "operation"),
    buckets: Sequence[float] | None = None,
    bounds_from: str = "the histogram",
) -> dict[str, Any]:
    """The rule file as a dict (``{"groups": [...]}``) ready for YAML.

    ``slo`` must be one of ``buckets``, the bounds of ``metric`` (``ValueError`` naming the
    nearest ones otherwise: an ``le`` that is no bound matches no series and the burn-rate
    alerts could never fire); ``buckets=None`` means the default layout of a service whose
    SLO is ``slo`` (:func:`~otelfin.metrics.default_buckets`), which has it. ``bounds_from``
    says where the bounds came from, for the message;
    ``objective`` is the share of requests that must be faster than the SLO (0.99: an error
    budget of 1%).
    """
    if not 0 < objective < 1:
        raise ValueError(f"objective must be between 0 and 1, not {objective}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1, not {quantile}")
    if not by:
        raise ValueError("rules need at least one label to aggregate by")
    if not _METRIC_NAME.fullmatch(metric):
        raise ValueError(f"{metric!r} is not a Prometheus metric name")
    for label in by:
        if not _LABEL_NAME.fullmatch(label):
            raise ValueError(f"{label!r} is not a Prometheus label name")
    if not (isinstance(slo, (int, float)) and 0 < slo < math.inf):
        raise ValueError(f"slo must be a positive number of seconds, not {slo}")
    le = check_slo_bound(slo, default_buckets(slo) if buckets is None else buckets, bounds_from)
    level = "_".join(by)
    base = metric.removesuffix("_seconds")
    budget = 1 - objective
    recording: list[dict[str, Any]] = [
        {
            "record": f"{level}:{metric}:p{quantile * 100:g}_5m".replace(".", "_"),
            "expr": q.quantile(quantile, metric, by, "5m"),
        },
        {
            "record": f"{level}:{base}_requests:rate5m",
            "expr": q.requests(metric, by, "5m"),
        },
        {
            "record": f"{level}:{ERRORS_METRIC.removesuffix('_total')}:rate5m",
            "expr": q.errors(ERRORS_METRIC, by, "5m"),
        },
    ]
    for window in _SLO_WINDOWS:
        recording.append(
            {
                "record": f"{level}:{base}_slow:ratio_rate{window}",
                "expr": q.slow_ratio(metric, by, window, le),
            }
        )
    for window in _SLO_WINDOWS:
        recording.append(
            {
                "record": f"{level}:{base}_errors:ratio_rate{window}",
                "expr": q.outcome_ratio(metric, "error", by, window),
            }
        )
    channel_level = ["service", "channel"]
    declines = f"service_channel:{base}_declines:ratio_rate1h"
    recording.append(
        {"record": declines, "expr": q.outcome_ratio(metric, "declined", channel_level, "1h")}
    )

    def slow(window: str) -> str:
        return f"{level}:{base}_slow:ratio_rate{window}"

    def failed(window: str) -> str:
        return f"{level}:{base}_errors:ratio_rate{window}"

    alerts: list[dict[str, Any]] = [
        {
            "alert": "OtelfinLatencySLOFastBurn",
            "expr": f"{slow('1h')} > {14.4 * budget:g} and {slow('5m')} > {14.4 * budget:g}",
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": f"{{{{ $labels.operation }}}} burns its {slo}s latency budget 14x "
                "too fast",
                "description": f"More than {14.4 * budget:.1%} of requests are slower than "
                f"{slo}s over 1h and 5m (objective {objective:.2%}). Run "
                f"`otelfin p99 report --prometheus URL --metric {metric} --by operation,channel`.",
            },
        },
        {
            "alert": "OtelfinLatencySLOSlowBurn",
            "expr": f"{slow('6h')} > {6 * budget:g} and {slow('30m')} > {6 * budget:g}",
            "for": "15m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": f"{{{{ $labels.operation }}}} burns its {slo}s latency budget 6x "
                "too fast",
                "description": f"More than {6 * budget:.1%} of requests are slower than {slo}s "
                "over 6h and 30m.",
            },
        },
        {
            "alert": "OtelfinErrorBudgetFastBurn",
            "expr": f"{failed('1h')} > {14.4 * budget:g} and {failed('5m')} > {14.4 * budget:g}",
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.operation }} fails requests 14x faster than its error "
                "budget allows",
                "description": f"More than {14.4 * budget:.1%} of requests end with "
                'outcome="error" (5xx, unhandled exceptions, codes of severity error/critical) '
                f"over 1h and 5m (objective {objective:.2%}). Declines are not counted.",
            },
        },
        {
            "alert": "OtelfinErrorBudgetSlowBurn",
            "expr": f"{failed('6h')} > {6 * budget:g} and {failed('30m')} > {6 * budget:g}",
            "for": "15m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.operation }} fails requests 6x faster than its error "
                "budget allows",
                "description": f'More than {6 * budget:.1%} of requests end with outcome="error" '
                "over 6h and 30m. Declines are not counted.",
            },
        },
        {
            "alert": "OtelfinDeclineRatioJump",
            "expr": f"{declines} > {DECLINE_JUMP:g} * avg_over_time({declines}[1d] offset 1h) "
            f"and {declines} > {DECLINE_FLOOR:g}",
            "for": "10m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Channel {{ $labels.channel }} declines {{ $value | humanizePercentage "
                "}} of its requests, over twice its usual share",
                "description": f"The last hour's decline ratio is more than {DECLINE_JUMP:g}x the "
                f"channel's average over the day before, and above {DECLINE_FLOOR:.0%}. An "
                "acquirer or issuer outage often shows as declines, not as 5xx. Run "
                f"`otelfin p99 report --prometheus URL --metric {metric} --by channel,outcome`.",
            },
        },
        {
            "alert": "OtelfinUnregisteredErrorCodes",
            "expr": f"sum by (job, code) (increase({UNREGISTERED_CODES_METRIC}[15m])) > 0",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Logs use error code {{ $labels.code }}, which is not in the catalogue",
                "description": "Register the code in the service catalogue (otelfin codes lint) "
                "or fix the call site; under policy 'drop' these events are lost.",
            },
        },
        {
            "alert": "OtelfinMetricOverflow",
            "expr": f"sum by (job, metric) (increase({OVERFLOW_METRIC}[15m])) > 0",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.metric }} hit its series cap; new label values fold "
                "into 'other'",
                "description": "A label is taking unbounded values. Find it and move it to "
                "span attributes, or raise metrics_max_series if the values are bounded.",
            },
        },
        {
            "alert": "OtelfinInternalErrors",
            "expr": f"sum by (job, where) (increase({INTERNAL_ERRORS_METRIC}[15m])) > 0",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "otelfin contained failures at {{ $labels.where }}",
                "description": "Telemetry is incomplete (the host is unaffected); see the "
                "first warning on the 'otelfin' logger.",
            },
        },
    ]
    return {
        "groups": [
            {"name": "otelfin-recording", "rules": recording},
            {"name": "otelfin-alerts", "rules": alerts},
        ]
    }


def rules_yaml(rules: dict[str, Any]) -> str:
    """The rule file text."""
    header = "# Generated by `otelfin rules build`; regenerate rather than edit.\n"
    return header + yaml.safe_dump(rules, sort_keys=False, width=120)


def all_expressions(rules: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, expr)`` of every rule (for evaluating each one in tests and CI)."""
    found = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.append((rule.get("record") or rule.get("alert"), rule["expr"]))
    return found
