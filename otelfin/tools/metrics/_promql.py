"""PromQL builders shared by the rules, the Grafana dashboards and ``otelfin p99 report``.

The slow-tail arithmetic (``count - bucket{le=SLO}``, its ratio, its share per label) used to
be written out in each of those three places, and one copy drifted into a query Prometheus
cannot parse. Every query otelfin emits is built here, so a fix lands everywhere at once and
the tests can parse each one with promtool.

``window`` is a PromQL range (``5m``) or a Grafana variable (``$__rate_interval``);
``selector`` is the inside of ``{...}`` without the braces (``service=~"$service"``).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "by_clause",
    "series",
    "rate",
    "sum_by",
    "quantile",
    "requests",
    "slow",
    "slow_ratio",
    "tail_share",
    "errors",
    "outcome_ratio",
    "or_zero",
]


def _merge(selector: str, extra: str) -> str:
    parts = [p for p in (selector, extra) if p]
    return "{" + ",".join(parts) + "}" if parts else ""


def by_clause(labels: Sequence[str]) -> str:
    """``by (a, b) `` or nothing."""
    return f"by ({', '.join(labels)}) " if labels else ""


def series(metric: str, selector: str = "", extra: str = "") -> str:
    """A metric with its label matchers: ``m{a="b",le="0.25"}``."""
    return metric + _merge(selector, extra)


def rate(metric: str, window: str, selector: str = "", extra: str = "", fn: str = "rate") -> str:
    """``rate(m{...}[window])`` (``fn="increase"`` for counts over the window)."""
    return f"{fn}({series(metric, selector, extra)}[{window}])"


def sum_by(labels: Sequence[str], expr: str) -> str:
    """``sum by (labels) (expr)``; ``sum(expr)`` without labels."""
    return f"sum {by_clause(labels)}({expr})" if labels else f"sum({expr})"


def quantile(
    q: float, metric: str, by: Sequence[str], window: str, selector: str = "", fn: str = "rate"
) -> str:
    """``histogram_quantile(q, sum by (by, le) (rate(metric_bucket[window])))``."""
    inner = rate(f"{metric}_bucket", window, selector, fn=fn)
    return f"histogram_quantile({q:g}, {sum_by([*by, 'le'], inner)})"


def requests(
    metric: str, by: Sequence[str], window: str, selector: str = "", fn: str = "rate"
) -> str:
    """Requests per second (or, with ``fn="increase"``, per window) by ``by``."""
    return sum_by(by, rate(f"{metric}_count", window, selector, fn=fn))


def slow(
    metric: str, by: Sequence[str], window: str, le: str, selector: str = "", fn: str = "rate"
) -> str:
    """Requests slower than the bucket bound ``le`` (exact: ``count - bucket{le}``)."""
    fast = sum_by(by, rate(f"{metric}_bucket", window, selector, f'le="{le}"', fn=fn))
    return f"{requests(metric, by, window, selector, fn)} - {fast}"


def slow_ratio(metric: str, by: Sequence[str], window: str, le: str, selector: str = "") -> str:
    """The share of requests slower than ``le`` by ``by``."""
    return f"({slow(metric, by, window, le, selector)}) / {requests(metric, by, window, selector)}"


def tail_share(metric: str, label: str, window: str, le: str, selector: str = "") -> str:
    """Each value of ``label``'s share of all slow requests (the P99 attribution, as a series).

    The right-hand side has no labels, so the division matches ``on()`` every left series
    (``group_left``: many on the left, one on the right).
    """
    left = slow(metric, [label], window, le, selector)
    right = slow(metric, [], window, le, selector)
    return f"({left}) / on() group_left() ({right})"


def errors(metric: str, by: Sequence[str], window: str, selector: str = "") -> str:
    """Errors per second by ``by`` from an errors counter."""
    return sum_by(by, rate(metric, window, selector))


def outcome_ratio(
    metric: str, outcome: str, by: Sequence[str], window: str, selector: str = ""
) -> str:
    """The share of requests whose ``outcome`` label is ``outcome`` (``error``, ``declined``).

    Both sides count the request histogram, so the ratio is of requests, each once; the error
    ratio leaves declines out by construction.
    """
    part = requests(metric, by, window, _merge_inner(selector, f'outcome="{outcome}"'))
    return f"{part} / {requests(metric, by, window, selector)}"


def _merge_inner(selector: str, extra: str) -> str:
    return ",".join(p for p in (selector, extra) if p)


def or_zero(expr: str) -> str:
    """``expr or vector(0)``: a health panel shows 0 (healthy) instead of "no data"."""
    return f"({expr}) or vector(0)"
