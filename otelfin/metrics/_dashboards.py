"""Grafana dashboard JSON for otelfin's RED metrics, generated from code and committed.

One dashboard: request rate, error rate by error code, P99 per operation with exemplars
(Grafana links them to traces), the share of requests slower than the SLO, the tail share per
channel, and otelfin's own health (overflow, unregistered codes, internal errors).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from otelfin.metrics._buckets import le_text
from otelfin.metrics._red import DURATION_METRIC, ERRORS_METRIC
from otelfin.metrics._rules import _METRIC_NAME

__all__ = ["build_dashboard", "write_dashboards"]


def _panel(
    panel_id: int, title: str, exprs: list[tuple[str, str]], unit: str, x: int, y: int
) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "exemplar": "_bucket" in expr,
            }
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def build_dashboard(*, slo: float = 0.25, metric: str = DURATION_METRIC) -> dict[str, Any]:
    """The dashboard as a dict (Grafana schema 39)."""
    if not 0 < slo < math.inf:
        raise ValueError(f"slo must be a positive number of seconds, not {slo}")
    if not _METRIC_NAME.fullmatch(metric):
        raise ValueError(f"{metric!r} is not a Prometheus metric name")
    le = le_text(slo)
    sel = '{service=~"$service"}'
    bsel = '{service=~"$service"'
    panels = [
        _panel(
            1,
            "Requests per second",
            [
                (
                    f"sum by (operation) (rate({metric}_count{sel}[$__rate_interval]))",
                    "{{operation}}",
                )
            ],
            "reqps",
            0,
            0,
        ),
        _panel(
            2,
            "Errors per second by error code",
            [
                (
                    f"sum by (error_code) (rate({ERRORS_METRIC}{sel}[$__rate_interval]))",
                    "{{error_code}}",
                )
            ],
            "reqps",
            12,
            0,
        ),
        _panel(
            3,
            "P99 latency per operation",
            [
                (
                    "histogram_quantile(0.99, sum by (operation, le) "
                    f"(rate({metric}_bucket{sel}[$__rate_interval])))",
                    "{{operation}}",
                )
            ],
            "s",
            0,
            8,
        ),
        _panel(
            4,
            f"Share of requests slower than the SLO ({slo}s)",
            [
                (
                    f'1 - sum by (operation) (rate({metric}_bucket{bsel},le="{le}"}}'
                    f"[$__rate_interval])) / sum by (operation) "
                    f"(rate({metric}_count{sel}[$__rate_interval]))",
                    "{{operation}}",
                )
            ],
            "percentunit",
            12,
            8,
        ),
        _panel(
            5,
            "Share of the slow tail by channel",
            [
                (
                    f"(sum by (channel) (rate({metric}_count{sel}[$__rate_interval])) - "
                    f'sum by (channel) (rate({metric}_bucket{bsel},le="{le}"}}'
                    "[$__rate_interval]))) / ignoring(channel) group_left "
                    f"(sum(rate({metric}_count{sel}[$__rate_interval])) - "
                    f'sum(rate({metric}_bucket{bsel},le="{le}"}}[$__rate_interval])))',
                    "{{channel}}",
                )
            ],
            "percentunit",
            0,
            16,
        ),
        _panel(
            6,
            "otelfin health",
            [
                (
                    "sum by (metric) (rate(otelfin_metric_overflow_total[5m]))",
                    "overflow {{metric}}",
                ),
                (
                    "sum by (code) (rate(otelfin_unregistered_error_codes_total[5m]))",
                    "unregistered {{code}}",
                ),
                ("sum by (where) (rate(otelfin_internal_errors_total[5m]))", "internal {{where}}"),
            ],
            "ops",
            12,
            16,
        ),
    ]
    return {
        "uid": "otelfin-red",
        "title": "otelfin: payments RED and P99 attribution",
        "tags": ["otelfin", "payments"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                },
                {
                    "name": "service",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": f"label_values({metric}_count, service)",
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": panels,
    }


def write_dashboards(
    directory: Path, *, slo: float = 0.25, metric: str = DURATION_METRIC
) -> list[Path]:
    """Write the dashboards into ``directory``; returns the paths written."""
    text = json.dumps(build_dashboard(slo=slo, metric=metric), indent=2, sort_keys=True)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "otelfin-red.json"
    path.write_text(text + "\n", encoding="utf-8")
    return [path]
