"""The P99 report as the table a person reads in five seconds."""

from __future__ import annotations

from otelfin.tools.metrics._report import AttributionReport, singular

__all__ = ["format_text"]


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def format_text(report: AttributionReport, promql: bool = True) -> str:
    """The table a person reads in five seconds."""
    share = report.slow / report.requests if report.requests else 0.0
    noun = report.counts
    scope = f" ({', '.join(report.operations)})" if report.operations else ""
    lines = [
        f"{report.metric}{scope}: P{report.quantile * 100:g} ~ {report.p99_seconds:.4g}s; "
        f"slow = above le={report.threshold_le}s",
        f"{_count(report.slow)} of {_count(report.requests)} "
        f"{singular(noun) if report.requests == 1 else noun} "
        f"{'is' if report.slow == 1 else 'are'} slow ({share:.2%})",
    ]
    lines += [f"note: {note}" for note in report.notes] + [""]
    header = ("label", "value", noun, "traffic", "slow", "tail", "lift", "exemplar")
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
