"""``report.html``: one self-contained page (inline CSS and SVG, no script, no remote asset).

Five parts, each drawn from the demo's own artefacts: the trace waterfall of one payment (with
its channel), the P99 attribution table (its exemplar trace ids link to their waterfalls further
down), a latency histogram per channel with the SLO and that channel's P99 marked, the
breakdown by code of declines (``otelfin_request_declines_total``) and errors
(``otelfin_request_errors_total``), and the exemplar traces.
"""

from __future__ import annotations

import html
import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

from otelfin.metrics import histogram_quantile

__all__ = ["render"]

_CSS = "".join(
    (
        'body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;',
        "margin:24px;color:#1d2330;background:#fff}",
        "h1{font-size:22px;margin:0 0 4px}",
        "h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}",
        ".meta{color:#5b6473}",
        "table{border-collapse:collapse;font-variant-numeric:tabular-nums}",
        "th,td{padding:3px 10px;border-bottom:1px solid #eef0f4;text-align:right}",
        "th{background:#f5f7fa}",
        "td.l,th.l{text-align:left}",
        "tr.top td{background:#fff4e5;font-weight:600}",
        ".hist{display:inline-block;margin:0 18px 18px 0;vertical-align:top}",
        ".hist h3{font-size:14px;margin:0 0 2px}",
        "svg text{font:11px system-ui,sans-serif;fill:#1d2330}",
        ".legend span{display:inline-block;margin-right:14px}",
        ".sw{display:inline-block;width:10px;height:10px;margin-right:4px}",
        "code{background:#f5f7fa;padding:1px 4px;border-radius:3px}",
        "details{margin:6px 0}",
    )
)
_SERVICE_COLOURS = ("#3b6fd6", "#2f9e6a", "#c47a12", "#9a4fd0", "#d04f6a", "#1f8fa6", "#6b7a12")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _code(text: str) -> str:
    return f"<code>{_e(text)}</code>"


def _ms(nanos: float) -> str:
    return f"{nanos / 1e6:,.1f} ms"


def channel_of(trace: Any) -> str:
    """The payment channel of a trace: the first ``channel``/``*.channel`` attribute found."""
    for span in trace.spans:
        for key, value in span.attributes.items():
            if key == "channel" or key.endswith(".channel"):
                return str(value)
    return ""


def _trace_anchor(trace_id: str) -> str:
    return f"trace-{trace_id}"


def _waterfall(trace: Any, bar_class: str = "span-bar", svg_id: str = "waterfall") -> str:
    if trace is None:
        return "<p>No trace to show.</p>"
    colours = {s: _SERVICE_COLOURS[i % len(_SERVICE_COLOURS)] for i, s in enumerate(trace.services)}
    row_h, label_w, bar_w = 22, 430, 560
    total = max(trace.duration_ns, 1)
    height = row_h * len(trace.rows) + 24
    parts = [
        f'<svg id="{_e(svg_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{label_w + bar_w + 150}" '
        f'height="{height}" role="img" aria-label="trace waterfall">'
    ]
    for i, (depth, span) in enumerate(trace.rows):
        y = 4 + i * row_h
        x = label_w + (span.start_ns - trace.start_ns) / total * bar_w
        w = max(2.0, span.duration_ns / total * bar_w)
        colour = "#d2383f" if span.status == "ERROR" else colours[span.service]
        label = f"{span.service} · {span.name}"
        code = f" {span.error_code}" if span.error_code else ""
        parts.append(
            f'<text x="{4 + depth * 14}" y="{y + 15}">{_e(label[:64])}</text>'
            f'<rect class="{bar_class}" data-span-id="{_e(span.span_id)}" '
            f'data-service="{_e(span.service)}" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" '
            f'height="{row_h - 7}" rx="2" fill="{colour}"><title>{_e(span.name)}: '
            f"{_e(_ms(span.duration_ns))} ({_e(span.status)}{_e(code)})</title></rect>"
            f'<text x="{min(x + w + 4, label_w + bar_w + 4):.1f}" y="{y + 15}">'
            f"{_e(_ms(span.duration_ns))}{_e(code)}</text>"
        )
    parts.append(
        f'<text x="{label_w}" y="{height - 4}">0</text>'
        f'<text x="{label_w + bar_w - 40}" y="{height - 4}">{_e(_ms(total))}</text></svg>'
    )
    legend = "".join(
        f'<span><i class="sw" style="background:{c}"></i>{_e(s)}</span>' for s, c in colours.items()
    )
    channel = channel_of(trace)
    channel_text = f'channel <b class="channel">{_e(channel)}</b>, ' if channel else ""
    id_attr = ' id="trace-id"' if svg_id == "waterfall" else ""
    return (
        f'<p class="meta">trace <code{id_attr}>{_e(trace.trace_id)}</code>, {channel_text}'
        f"{_e(_ms(trace.duration_ns))}, {len(trace.rows)} spans, "
        f"{len(trace.services)} services</p>"
        f'<p class="legend">{legend}<span><i class="sw" style="background:#d2383f"></i>'
        f"error</span></p>{''.join(parts)}"
    )


def _exemplar_link(trace_id: str, shown: str | None, known: Mapping[str, Any]) -> str:
    """An exemplar trace id, linked to its waterfall on this page when the spans have it."""
    if trace_id == shown:
        return f'<a class="exemplar" href="#waterfall">{_code(trace_id)}</a>'
    if trace_id in known:
        return f'<a class="exemplar" href="#{_trace_anchor(trace_id)}">{_code(trace_id)}</a>'
    return _code(trace_id)


def _table(report: Any, shown: str | None = None, known: Mapping[str, Any] | None = None) -> str:
    known = known or {}
    noun = getattr(report, "counts", "requests")
    rows = []
    for label in dict.fromkeys(r.label for r in report.rows):
        items = [r for r in report.rows if r.label == label]
        for i, row in enumerate(items):
            cls = ' class="top"' if i == 0 and label == "channel" else ""
            rows.append(
                f'<tr{cls} data-label="{_e(row.label)}" data-value="{_e(row.value)}">'
                f'<td class="l">{_e(row.label)}</td><td class="l">{_e(row.value or chr(34) * 2)}'
                f"</td><td>{row.requests:,.0f}</td><td>{row.traffic_share:.1%}</td>"
                f"<td>{row.slow:,.0f}</td><td>{row.tail_share:.1%}</td><td>{row.lift:.1f}x</td>"
                f'<td class="l">{" ".join(_exemplar_link(t, shown, known) for t in row.exemplars)}'
                "</td></tr>"
            )
    share = report.slow / report.requests if report.requests else 0.0
    return (
        f'<p class="meta">P{report.quantile * 100:g} ≈ {report.p99_seconds:.3f} s; slow = above '
        f"le={_e(report.threshold_le)} s: {report.slow:,.0f} of {report.requests:,.0f} "
        f"{_e(noun)} ({share:.2%})</p>"
        '<table id="attribution"><tr><th class="l">label</th><th class="l">value</th>'
        f"<th>{_e(noun)}</th><th>traffic</th><th>slow</th><th>tail share</th><th>lift</th>"
        f'<th class="l">exemplar traces</th></tr>{"".join(rows)}</table>'
    )


def _exemplar_traces(report: Any, shown: str | None, known: Mapping[str, Any]) -> str:
    """A collapsed waterfall per exemplar trace of the table (the shown one excepted)."""
    ids = [t for t in dict.fromkeys(t for r in report.rows for t in r.exemplars) if t != shown]
    parts = []
    for trace_id in ids:
        trace = known.get(trace_id)
        if trace is None:
            continue
        parts.append(
            f'<details id="{_trace_anchor(trace_id)}"><summary><code>{_e(trace_id)}</code> '
            f"{_e(channel_of(trace))} {_e(_ms(trace.duration_ns))}</summary>"
            f"{_waterfall(trace, 'span-bar exemplar', f'waterfall-{trace_id}')}</details>"
        )
    if not parts:
        return "<p>No other exemplar trace in the spans file.</p>"
    return "".join(parts)


def _why(why: Any) -> str:
    """The ``traces why`` ranking: each hop's share of slow vs normal traces' critical path."""
    if why is None or not why.rows:
        return '<p class="meta">no traces to compare</p>'
    rows = []
    for i, row in enumerate(why.rows[:10]):
        cls = ' class="top"' if i == 0 and row.difference > 0 else ""
        rows.append(
            f'<tr{cls} data-key="{_e(row.key)}"><td class="l">{_e(row.key)}</td>'
            f"<td>{row.slow_share:.1%}</td><td>{row.normal_share:.1%}</td>"
            f"<td>{row.difference * 100:+.1f}</td><td>{row.slow_ms:,.1f}</td>"
            f"<td>{row.normal_ms:,.1f}</td></tr>"
        )
    headline = f"<p><strong>{_e(why.headline)}</strong></p>" if why.headline else ""
    return (
        f'<p class="meta">{why.slow + why.normal:,} traces: {why.slow:,} slow '
        f"({_e(why.threshold_source)}, {why.threshold_ms:,.1f} ms), {why.normal:,} normal; "
        "share of each trace's critical path, averaged per group "
        "(<code>otelfin traces why</code>)</p>"
        f'{headline}<table id="why"><tr><th class="l">{_e(why.by)}</th><th>slow</th>'
        "<th>normal</th><th>diff (pts)</th><th>slow ms/trace</th><th>normal ms/trace</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _per_bucket(bounds: Sequence[float], cumulative: Sequence[float], total: float) -> list[float]:
    counts, previous = [], 0.0
    for value in [*cumulative, total]:
        counts.append(max(0.0, value - previous))
        previous = value
    return counts


def _edges(i: int, bounds: Sequence[float]) -> tuple[float, float]:
    """Lower and upper edge of bucket ``i`` (``len(bounds)`` is the ``+Inf`` bucket)."""
    return (bounds[i - 1] if i > 0 else 0.0), (bounds[i] if i < len(bounds) else math.inf)


def _x_of(value: float, bounds: Sequence[float], shown: range, left: float, width: float) -> float:
    """Where ``value`` falls on an axis of the buckets ``shown``, each bucket equally wide."""
    for slot, i in enumerate(shown):
        low, high = _edges(i, bounds)
        if value <= high:
            fraction = (value - low) / (high - low) if low < high < math.inf else 0.5
            return left + (slot + max(0.0, fraction)) * width / len(shown)
    return left + (len(shown) - 0.5) * width / len(shown)


def _histograms(series: Sequence[Any], slo: float, operation: str | None) -> str:
    chosen = [s for s in series if operation is None or s.labels.get("operation") == operation]
    by_channel: dict[str, list[Any]] = {}
    for s in chosen:
        channel = s.labels.get("channel", "")
        if channel:
            by_channel.setdefault(channel, []).append(s)
    bounds = sorted({b for s in chosen for b in s.buckets})
    if not by_channel or not bounds:
        return "<p>No per-channel latency histogram in the exposition.</p>"
    data = {}
    for channel in sorted(by_channel):
        group = by_channel[channel]
        total = sum(s.count for s in group)
        cumulative = [sum(s.buckets.get(b, ("", 0.0))[1] for s in group) for b in bounds]
        p99 = histogram_quantile(0.99, bounds, [*cumulative, total]) if total else math.nan
        data[channel] = (total, _per_bucket(bounds, cumulative, total), p99)
    # The default layout has ~110 buckets from 1 ms to 60 s: draw the span that holds
    # requests, the SLO and the P99s (one empty bucket either side), so bars stay wide.
    marks = [bisect_left(bounds, v) for v in (slo, *(d[2] for d in data.values())) if v == v]
    occupied = [i for d in data.values() for i, count in enumerate(d[1]) if count > 0]
    first, last = min([*occupied, *marks]), max([*occupied, *marks])
    shown = range(max(0, first - 1), min(len(bounds), last + 1) + 1)
    out = []
    width, height, left, bottom = 330, 170, 34, 36
    plot_w, plot_h = width - left - 8, height - bottom - 18
    bar_w = plot_w / len(shown)
    every = math.ceil(16 / bar_w)  # a bound label every ~16 px at most
    for channel, (total, counts, p99) in data.items():
        peak = max(counts) or 1.0
        svg = [
            f'<svg class="histogram" data-channel="{_e(channel)}" '
            f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        ]
        for slot, i in enumerate(shown):
            h = counts[i] / peak * plot_h
            x = left + slot * bar_w
            svg.append(
                f'<rect class="bucket" x="{x + 1:.1f}" y="{18 + plot_h - h:.1f}" '
                f'width="{max(bar_w - 2, 1.0):.1f}" height="{h:.1f}" fill="#7d9be0"><title>'
                f"{counts[i]:,.0f}</title></rect>"
            )
            if (len(shown) - 1 - slot) % every:
                continue
            label = f"{bounds[i]:g}" if i < len(bounds) else "+Inf"
            svg.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 14}" text-anchor="end" '
                f'transform="rotate(-45 {x + bar_w / 2:.1f} {height - bottom + 14})">{label}</text>'
            )
        for cls, value, colour, text in (
            ("slo", slo, "#2f9e6a", f"SLO {slo:g}s"),
            ("p99", p99, "#d2383f", f"P99 {p99:.3g}s"),
        ):
            if math.isnan(value):
                continue
            x = _x_of(value, bounds, shown, left, plot_w)
            svg.append(
                f'<line class="{cls}" x1="{x:.1f}" x2="{x:.1f}" y1="14" y2="{18 + plot_h}" '
                f'stroke="{colour}" stroke-width="2" stroke-dasharray="4 2"/>'
                f'<text x="{x + 3 if x < left + plot_w * 0.7 else x - 3:.1f}" '
                f'y="{12 if cls == "slo" else 26}" fill="{colour}" '
                f'text-anchor="{"start" if x < left + plot_w * 0.7 else "end"}">'
                f"{_e(text)}</text>"
            )
        svg.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{18 + plot_h}" y2="{18 + plot_h}" '
            f'stroke="#5b6473"/><text x="2" y="26">{peak:,.0f}</text></svg>'
        )
        out.append(
            f'<div class="hist"><h3>{_e(channel)}</h3><div class="meta">{total:,.0f} requests, '
            f"P99 {p99:.3f} s</div>{''.join(svg)}</div>"
        )
    return "".join(out)


def _errors(exposition: str) -> str:
    """Requests by code: declines (a business "no") and errors (failures), apart."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
    from prometheus_client.parser import text_string_to_metric_families as parse_text

    from otelfin.metrics.names import DECLINES, ERRORS

    kinds = {ERRORS.removesuffix("_total"): "error", DECLINES.removesuffix("_total"): "declined"}
    by_code: dict[tuple[str, str], float] = {}
    operations: dict[tuple[str, str], set[str]] = {}
    try:
        if exposition.rstrip().endswith("# EOF"):
            families = list(parse_om(exposition))  # type: ignore[no-untyped-call]
        else:
            families = list(parse_text(exposition))
    except ValueError:
        families = []
    for family in families:
        outcome = kinds.get(family.name)
        if outcome is None:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            key = (outcome, sample.labels.get("error_code", ""))
            by_code[key] = by_code.get(key, 0.0) + sample.value
            operations.setdefault(key, set()).add(sample.labels.get("operation", ""))
    if not by_code:
        return "<p>No declines or errors recorded.</p>"
    peak = max(by_code.values()) or 1.0
    rows = []
    for (outcome, code), count in sorted(by_code.items(), key=lambda kv: (kv[0][0], -kv[1])):
        width = count / peak * 320
        colour = "#d2383f" if outcome == "error" else "#c9a227"
        rows.append(
            f'<tr class="error-code" data-code="{_e(code)}" data-outcome="{outcome}">'
            f'<td class="l">{outcome}</td><td class="l"><code>{_e(code)}</code></td>'
            f'<td>{count:,.0f}</td><td class="l"><svg width="330" height="14">'
            f'<rect x="0" y="2" width="{width:.1f}" height="10" fill="{colour}"/></svg></td>'
            f'<td class="l">{_e(", ".join(sorted(operations[(outcome, code)])))}</td></tr>'
        )
    return (
        '<table id="errors"><tr><th class="l">outcome</th><th class="l">error_code</th>'
        "<th>requests</th><th></th>"
        f'<th class="l">recorded by</th></tr>{"".join(rows)}</table>'
    )


def render(
    *,
    report: Any,
    trace: Any,
    series: Sequence[Any],
    slo: float,
    exposition: str,
    outcomes: dict[str, int],
    title: str,
    operation: str | None = "POST /v1/payments",
    traces: Mapping[str, Any] | None = None,
    why: Any = None,
) -> str:
    """The whole page as one string.

    ``traces`` (trace id -> trace) lets the table's exemplar ids link to their waterfalls;
    ``why`` is a ``traces why`` report (or None).
    """
    known = traces or {}
    shown = trace.trace_id if trace is not None else None
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
    if operation is not None and not any(s.labels.get("operation") == operation for s in series):
        operation = None
    scope = f"operation <code>{_e(operation)}</code>" if operation else "all operations"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{_e(title)}</h1><p class="meta">{_e(summary)}</p>'
        f"<h2>One payment, every hop</h2>{_waterfall(trace)}"
        f"<h2>Who makes the P99</h2>{_table(report, shown, known)}"
        f"<h2>Why the slow payments are slow</h2>{_why(why)}"
        f'<h2>Latency per channel</h2><p class="meta">{scope}; dashed lines: the SLO bound '
        f"and the channel's P99 (histogram_quantile)</p>{_histograms(series, slo, operation)}"
        f"<h2>Declines and errors by code</h2>{_errors(exposition)}"
        f"<h2>Exemplar traces</h2>{_exemplar_traces(report, shown, known)}"
        "</body></html>\n"
    )
