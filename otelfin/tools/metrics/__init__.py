"""Offline metrics tools: they read metrics rather than record them.

``otelfin p99 report`` (:func:`attribute` over an exposition file, a scrape or a Prometheus
server), the generated Prometheus recording/alerting rules (:func:`build_rules`) and the
Grafana dashboards (:func:`write_dashboards`), and bucket design per operation from histogram
counts (``otelfin buckets suggest --file``). Nothing here runs on a request path; the runtime
(RED instruments, labels, buckets, exemplars, the /metrics server) is :mod:`otelfin.metrics`,
which never imports this package. ``otelfin.metrics.offline`` is an alias of it.
"""

from __future__ import annotations

from otelfin.tools.metrics._dashboards import (
    DashboardPanel,
    build_dashboards,
    panel_queries,
    write_dashboards,
)
from otelfin.tools.metrics._http import scrape
from otelfin.tools.metrics._prometheus import from_prometheus
from otelfin.tools.metrics._report import AttributionReport, AttributionRow, attribute
from otelfin.tools.metrics._rules import (
    UNREGISTERED_CODES_METRIC,
    all_expressions,
    build_rules,
    rules_yaml,
)
from otelfin.tools.metrics._series import (
    HistogramSeries,
    ReportError,
    series_from_families,
    series_from_registry,
    series_from_text,
)
from otelfin.tools.metrics._suggest import (
    INF_FACTOR,
    OperationDesign,
    samples_from_buckets,
    series_from_prometheus,
    slo_hint,
    slos_setting,
    suggest_by_label,
)
from otelfin.tools.metrics._text import format_text

__all__ = [
    # P99 attribution
    "attribute",
    "format_text",
    "from_prometheus",
    "scrape",
    "series_from_families",
    "series_from_registry",
    "series_from_text",
    "AttributionReport",
    "AttributionRow",
    "HistogramSeries",
    "ReportError",
    # bucket design per operation from histogram counts
    "suggest_by_label",
    "samples_from_buckets",
    "series_from_prometheus",
    "slo_hint",
    "slos_setting",
    "OperationDesign",
    "INF_FACTOR",
    # rules and dashboards
    "build_rules",
    "rules_yaml",
    "all_expressions",
    "UNREGISTERED_CODES_METRIC",
    "DashboardPanel",
    "build_dashboards",
    "panel_queries",
    "write_dashboards",
]
