"""Grafana dashboards for otelfin's metrics, built with Grafana's ``grafana-foundation-sdk``.

Three dashboards, importable into Grafana 10+ and committed under ``dashboards/``:

* ``otelfin-service-overview``: request rate, the error ratio (``outcome="error"``: declines
  excluded) and the decline ratio per channel, errors and declines by ``error_code``,
  P50/P90/P99 per operation (route) with exemplars, so a point on the P99 opens its trace,
  and the share of requests slower than the SLO;
* ``otelfin-p99-attribution``: each channel's, operation's and outcome's share of the slow
  tail, errors by code, and the SLO burn rate over the multi-window pairs the alerts use;
* ``otelfin-pipeline-health``: unregistered error codes (the events the catalogue policy
  dropped or tagged), spans dropped and export failures by reason, metric overflow and every
  failure otelfin contained.

Datasource, service and SLO are template variables. Every query comes from
:mod:`otelfin.tools.metrics._promql`, the module the rules and ``otelfin p99 report`` use;
:func:`panel_queries` lists them with the variables filled in so tests can parse each one with
promtool and run it against a real Prometheus.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otelfin._settings import DEFAULT_SLO
from otelfin.metrics import (
    DURATION_METRIC,
    ERRORS_METRIC,
    check_slo_bound,
    default_buckets,
    le_text,
    names,
)
from otelfin.tools.metrics import _promql as q
from otelfin.tools.metrics._rules import (
    _METRIC_NAME,
    INTERNAL_ERRORS_METRIC,
    OVERFLOW_METRIC,
    UNREGISTERED_CODES_METRIC,
)

__all__ = ["DashboardPanel", "build_dashboards", "panel_queries", "write_dashboards"]

_WINDOW = "$__rate_interval"
_SELECTOR = 'service=~"$service"'
_SLO_CHOICES = (0.1, 0.25, 0.5, 1.0, 2.5)
#: What promtool and a test Prometheus see in place of the Grafana variables.
_CHECK_VALUES = {"$__rate_interval": "5m", "$service": ".*"}


@dataclass(frozen=True)
class DashboardPanel:
    """One panel's definition: title, unit, description and ``(expr, legend)`` targets."""

    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]
    description: str = ""
    exemplars: bool = False


def _overview(metric: str) -> list[DashboardPanel]:
    by_op = ["operation"]
    return [
        DashboardPanel(
            "Requests per second by operation",
            "reqps",
            ((q.requests(metric, by_op, _WINDOW, _SELECTOR), "{{operation}}"),),
        ),
        DashboardPanel(
            "Error ratio by operation (declines excluded)",
            "percentunit",
            ((q.outcome_ratio(metric, "error", by_op, _WINDOW, _SELECTOR), "{{operation}}"),),
            'Requests with outcome="error" (5xx, unhandled exceptions, codes of severity '
            "error/critical) over all requests. A decline (a code of severity info/warning, a "
            "4xx answered on purpose) is a business outcome, not an error.",
        ),
        DashboardPanel(
            "Decline ratio by channel",
            "percentunit",
            (
                (
                    q.outcome_ratio(metric, "declined", ["channel"], _WINDOW, _SELECTOR),
                    "{{channel}}",
                ),
            ),
            'Requests with outcome="declined" over all requests, per channel. A channel whose '
            "ratio jumps against its usual level (an acquirer saying no to everything) fires "
            "OtelfinDeclineRatioJump.",
        ),
        DashboardPanel(
            "Errors per second by error code",
            "reqps",
            ((q.errors(ERRORS_METRIC, ["error_code"], _WINDOW, _SELECTOR), "{{error_code}}"),),
            'Requests with outcome="error" by catalogue code; `unclassified` carries no code.',
        ),
        DashboardPanel(
            "Declines per second by error code",
            "reqps",
            (
                (
                    q.errors(names.DECLINES, ["error_code"], _WINDOW, _SELECTOR),
                    "{{error_code}}",
                ),
            ),
            'Requests with outcome="declined" by catalogue code (PAY-006, PAY-012, ...).',
        ),
        DashboardPanel(
            "Latency P50 / P90 / P99 by operation",
            "s",
            tuple(
                (
                    q.quantile(p, metric, by_op, _WINDOW, _SELECTOR),
                    f"p{p * 100:g} {{{{operation}}}}",
                )
                for p in (0.5, 0.9, 0.99)
            ),
            "Exemplars carry trace_id: set the Prometheus datasource's exemplar link to your "
            "tracing datasource (internal link, label trace_id) to open a P99 point's trace.",
            exemplars=True,
        ),
        DashboardPanel(
            "Share of requests slower than the SLO ($slo s)",
            "percentunit",
            ((q.slow_ratio(metric, by_op, _WINDOW, "$slo", _SELECTOR), "{{operation}}"),),
        ),
    ]


def _attribution(metric: str, objective: float) -> list[DashboardPanel]:
    panels = [
        DashboardPanel(
            f"Share of the slow tail by {label}",
            "percentunit",
            ((q.tail_share(metric, label, _WINDOW, "$slo", _SELECTOR), f"{{{{{label}}}}}"),),
            f"Requests slower than the SLO bucket ($slo s), split by {label}: the value that "
            "owns most of the tail is what makes the P99. `otelfin p99 report` ranks the same.",
        )
        for label in ("channel", "operation", "outcome")
    ]
    dependency = names.DEPENDENCY.removesuffix("_total")
    panels.append(
        DashboardPanel(
            "Share of the slow dependency calls by system",
            "percentunit",
            ((q.tail_share(dependency, "system", _WINDOW, "$slo", _SELECTOR), "{{system}}"),),
            "Outgoing calls (databases, gRPC, HTTP, brokers) slower than the SLO bucket, split "
            "by the system called: which dependency the slow requests were waiting on.",
        )
    )
    panels.append(
        DashboardPanel(
            "Dependency P99 by system and peer",
            "s",
            (
                (
                    q.quantile(0.99, dependency, ["system", "peer"], _WINDOW, _SELECTOR),
                    "{{system}} {{peer}}",
                ),
            ),
            exemplars=True,
        )
    )
    errors = q.errors(ERRORS_METRIC, ["error_code"], _WINDOW, _SELECTOR)
    total = q.errors(ERRORS_METRIC, [], _WINDOW, _SELECTOR)
    panels.append(
        DashboardPanel(
            "Share of errors by error code",
            "percentunit",
            ((f"({errors}) / on() group_left() ({total})", "{{error_code}}"),),
        )
    )
    budget = 1 - objective
    panels.append(
        DashboardPanel(
            f"Error budget burn rate (objective {objective:.2%} without error)",
            "x",
            tuple(
                (
                    f"({q.outcome_ratio(metric, 'error', [], window, _SELECTOR)}) / {budget:g}",
                    window,
                )
                for window in ("5m", "1h", "6h")
            ),
            'Requests with outcome="error" over all requests, over the budget: declines do not '
            "burn it. The fast-burn alert fires above 14.4 over 1h and 5m, the slow one above 6 "
            "over 6h and 30m.",
        )
    )
    panels.append(
        DashboardPanel(
            f"SLO burn rate (objective {objective:.2%} faster than $slo s)",
            "x",
            tuple(
                (f"({q.slow_ratio(metric, [], window, '$slo', _SELECTOR)}) / {budget:g}", window)
                for window in ("5m", "1h", "6h")
            ),
            "1 = spending the error budget exactly as fast as allowed; the fast-burn alert "
            "fires above 14.4 over 1h and 5m, the slow one above 6 over 6h and 30m.",
        )
    )
    panels.append(
        DashboardPanel(
            "P99 against the SLO",
            "s",
            (
                (q.quantile(0.99, metric, [], _WINDOW, _SELECTOR), "P99"),
                ("vector($slo)", "SLO"),
            ),
            exemplars=True,
        )
    )
    return panels


def _health() -> list[DashboardPanel]:
    def rate_by(metric: str, label: str, selector: str = "") -> str:
        return q.or_zero(q.errors(metric, [label], "5m", selector))

    return [
        DashboardPanel(
            "Unregistered or missing error codes (log events dropped/tagged)",
            "ops",
            ((rate_by(UNREGISTERED_CODES_METRIC, "code"), "{{code}}"),),
            "Counted by the catalogue policy; under `drop` these events are not in the logs.",
        ),
        DashboardPanel(
            "Spans dropped, by reason",
            "ops",
            ((rate_by(names.SPANS_DROPPED, "reason"), "{{reason}}"),),
            "queue_full: the export queue was full; export_failed: the exporter failed; "
            "shutdown: not exported by the shutdown or exit deadline. These spans are lost.",
        ),
        DashboardPanel(
            "Span export failures, by reason",
            "ops",
            ((rate_by(names.SPAN_EXPORT_FAILURES, "reason"), "{{reason}}"),),
            "failure: the exporter reported failure (a collector answering 500, refusing the "
            "connection); exception: it raised; timeout: still running at the shutdown deadline.",
        ),
        DashboardPanel(
            "Metric overflow (series cap hit, folded into 'other')",
            "ops",
            ((rate_by(OVERFLOW_METRIC, "metric"), "{{metric}}"),),
        ),
        DashboardPanel(
            "Failures otelfin contained, by place",
            "ops",
            ((rate_by(INTERNAL_ERRORS_METRIC, "where"), "{{where}}"),),
            "The host was unaffected; the first of each kind is on the 'otelfin' logger.",
        ),
    ]


def _definitions(metric: str, objective: float) -> dict[str, tuple[str, list[DashboardPanel]]]:
    return {
        "otelfin-service-overview": ("otelfin: service overview", _overview(metric)),
        "otelfin-p99-attribution": ("otelfin: P99 attribution", _attribution(metric, objective)),
        "otelfin-pipeline-health": ("otelfin: pipeline health", _health()),
    }


def _check(
    slo: float,
    metric: str,
    objective: float,
    buckets: Sequence[float] | None = None,
    bounds_from: str = "the histogram",
) -> None:
    if not 0 < slo < math.inf:
        raise ValueError(f"slo must be a positive number of seconds, not {slo}")
    # The $slo variable becomes le="<slo>": it must be a bound, as in the rules.
    check_slo_bound(slo, default_buckets(slo) if buckets is None else buckets, bounds_from)
    if not _METRIC_NAME.fullmatch(metric):
        raise ValueError(f"{metric!r} is not a Prometheus metric name")
    if not 0 < objective < 1:
        raise ValueError(f"objective must be between 0 and 1, not {objective}")


def panel_queries(
    *, slo: float = DEFAULT_SLO, metric: str = DURATION_METRIC, objective: float = 0.99
) -> Iterator[tuple[str, str, str]]:
    """``(dashboard uid, panel title, expr)`` for every target, variables filled in."""
    _check(slo, metric, objective)
    values = {**_CHECK_VALUES, "$slo": le_text(slo)}
    for uid, (_, panels) in _definitions(metric, objective).items():
        for panel in panels:
            for expr, _legend in panel.targets:
                for name in sorted(values, key=len, reverse=True):
                    expr = expr.replace(name, values[name])
                yield uid, panel.title, expr


def _build(
    uid: str,
    title: str,
    panels: list[DashboardPanel],
    slo: float,
    metric: str,
    bounds: Sequence[float],
) -> Any:
    from grafana_foundation_sdk.builders import common as gc
    from grafana_foundation_sdk.builders import dashboard as gd
    from grafana_foundation_sdk.builders import prometheus, timeseries
    from grafana_foundation_sdk.models import common as cm
    from grafana_foundation_sdk.models.dashboard import (
        DataSourceRef,
        VariableOption,
        VariableRefresh,
    )

    datasource = DataSourceRef(type_val="prometheus", uid="${datasource}")
    slo_text = le_text(slo)
    # Only choices that are bounds of the histogram: any other le matches no series.
    offered = {le_text(c) for c in _SLO_CHOICES if c in set(bounds)}
    choices = sorted(offered | {slo_text}, key=float)
    builder = (
        gd.Dashboard(title)
        .uid(uid)
        .tags(["otelfin", "payments"])
        .editable()
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(gd.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            gd.QueryVariable("service")
            .label("service")
            .datasource(datasource)
            .query(f"label_values({metric}_count, service)")
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .current(VariableOption(text="All", value="$__all", selected=True))
        )
        .with_variable(
            gd.CustomVariable("slo")
            .label("SLO (s, a bucket bound)")
            .values(",".join(choices))
            .current(VariableOption(text=slo_text, value=slo_text, selected=True))
        )
    )
    for number, panel in enumerate(panels, 1):
        built = (
            timeseries.Panel()
            .id(number)
            .title(panel.title)
            .unit(panel.unit)
            .datasource(datasource)
            .height(8)
            .span(12)
            .legend(
                gc.VizLegendOptions()
                .show_legend(True)
                .display_mode(cm.LegendDisplayMode.LIST)
                .placement(cm.LegendPlacement.BOTTOM)
            )
            .tooltip(
                gc.VizTooltipOptions()
                .mode(cm.TooltipDisplayMode("multi"))
                .sort(cm.SortOrder.DESCENDING)
            )
        )
        if panel.description:
            built = built.description(panel.description)
        for i, (expr, legend) in enumerate(panel.targets):
            target = (
                prometheus.Dataquery()
                .ref_id(chr(ord("A") + i))
                .expr(expr)
                .legend_format(legend)
                .exemplar(panel.exemplars and "_bucket" in expr)
                .datasource(datasource)
            )
            built = built.with_target(target)
        builder = builder.with_panel(built)
    return builder.build()


def build_dashboards(
    *,
    slo: float = DEFAULT_SLO,
    metric: str = DURATION_METRIC,
    objective: float = 0.99,
    buckets: Sequence[float] | None = None,
    bounds_from: str = "the histogram",
) -> dict[str, str]:
    """``{file name: JSON text}`` for the three dashboards (deterministic: sorted keys).

    ``slo`` must be one of ``buckets`` (the service's bounds; None: the default layout of a
    service with that SLO), as for the rules.
    """
    _check(slo, metric, objective, buckets, bounds_from)
    bounds = default_buckets(slo) if buckets is None else tuple(buckets)
    try:
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
    except ImportError as exc:
        raise ImportError(
            "otelfin dashboards build needs grafana-foundation-sdk (Python 3.11+): "
            "pip install 'otelfin[dashboards]'"
        ) from exc
    out = {}
    for uid, (title, panels) in _definitions(metric, objective).items():
        model = _build(uid, title, panels, slo, metric, bounds)
        out[f"{uid}.json"] = json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
    return out


def write_dashboards(
    directory: Path,
    *,
    slo: float = DEFAULT_SLO,
    metric: str = DURATION_METRIC,
    objective: float = 0.99,
    buckets: Sequence[float] | None = None,
    bounds_from: str = "the histogram",
) -> list[Path]:
    """Write the dashboards into ``directory``; returns the paths written."""
    files = build_dashboards(
        slo=slo, metric=metric, objective=objective, buckets=buckets, bounds_from=bounds_from
    )
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
