"""The offline room of the metrics pillar: tools that read metrics rather than record them.

``otelfin p99 report`` (:func:`attribute` over an exposition file, a scrape or a Prometheus
server), the generated Prometheus recording/alerting rules (:func:`build_rules`) and the
Grafana dashboards (:func:`write_dashboards`). Nothing here runs on a request path; the
runtime room (RED instruments, labels, buckets, exemplars, the /metrics server) is
:mod:`otelfin.metrics` itself.
"""

from __future__ import annotations

from otelfin.metrics.offline._dashboards import (
    DashboardPanel,
    build_dashboards,
    panel_queries,
    write_dashboards,
)
from otelfin.metrics.offline._report import (
    AttributionReport,
    AttributionRow,
    HistogramSeries,
    ReportError,
    attribute,
    format_text,
    from_prometheus,
    scrape,
    series_from_families,
    series_from_registry,
    series_from_text,
)
from otelfin.metrics.offline._rules import (
    UNREGISTERED_CODES_METRIC,
    all_expressions,
    build_rules,
    rules_yaml,
)
from otelfin.metrics.offline._suggest import (
    INF_FACTOR,
    OperationDesign,
    samples_from_buckets,
    series_from_prometheus,
    slo_hint,
    slos_setting,
    suggest_by_label,
)

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
