"""Bucket design per operation from histogram counts (``otelfin buckets suggest --file``).

:func:`otelfin.metrics.suggest_buckets` needs raw latencies; an exposition or a Prometheus
server only has cumulative bucket counts. Each bucket's count becomes that many representative
samples spread uniformly inside the bucket (what ``histogram_quantile`` assumes too), and the
``+Inf`` bucket's requests are placed at the top finite bound times :data:`INF_FACTOR`. The
design can therefore be no finer than the source buckets, and the tail above the top bound is
a guess: both are said in the output.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from otelfin.metrics import BucketDesign, suggest_buckets
from otelfin.tools.metrics import _promql as q
from otelfin.tools.metrics._prometheus import query
from otelfin.tools.metrics._series import HistogramSeries, ReportError

__all__ = [
    "INF_FACTOR",
    "OperationDesign",
    "samples_from_buckets",
    "series_from_prometheus",
    "suggest_by_label",
    "slo_hint",
    "slos_setting",
]

#: Requests in the +Inf bucket are placed at the top finite bound times this.
INF_FACTOR = 1.5
#: More representative samples than this per value are scaled down (the shape is kept).
_MAX_SAMPLES = 50_000
_MIN_SAMPLES = 200
_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


@dataclass(frozen=True)
class OperationDesign:
    """The design for one value of the ``--by`` label, or why there is none."""

    value: str
    requests: float
    design: BucketDesign | None
    slo_hint: float | None
    #: The +Inf requests were placed here (seconds); None when the +Inf bucket was empty.
    inf_placed_at: float | None = None
    skipped: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "value": self.value,
            "requests": self.requests,
            "design": self.design.as_dict() if self.design is not None else None,
            "slo_hint": self.slo_hint,
            "inf_placed_at": self.inf_placed_at,
            "skipped": self.skipped or None,
        }


def slo_hint(p99: float) -> float:
    """The smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k) at or above ``p99``."""
    if not (math.isfinite(p99) and p99 > 0):
        raise ValueError(f"p99 must be a positive number of seconds, not {p99!r}")
    exponent = math.floor(math.log10(p99))
    for step in _NICE:
        value = float(f"{step * 10.0**exponent:.6g}")
        if value >= p99 * (1 - 1e-9):
            return value
    return float(f"{10.0 ** (exponent + 1):.6g}")


def samples_from_buckets(
    bounds: Sequence[float], cumulative: Sequence[float], *, inf_factor: float = INF_FACTOR
) -> list[float]:
    """Representative latencies for a histogram: each bucket's count spread uniformly in it.

    ``bounds`` are the finite upper bounds (increasing), ``cumulative`` their cumulative counts
    followed by the total (the ``+Inf`` count). Counts are rounded (Prometheus ``increase()``
    gives fractions) and scaled down proportionally above 50,000 samples.
    """
    if len(cumulative) != len(bounds) + 1:
        raise ValueError("cumulative needs one count per bound plus the +Inf count")
    counts: list[float] = []
    previous = 0.0
    for value in cumulative:
        counts.append(max(0.0, value - previous))
        previous = max(previous, value)
    total = sum(counts)
    scale = _MAX_SAMPLES / total if total > _MAX_SAMPLES else 1.0
    samples: list[float] = []
    lower = 0.0
    for i, count in enumerate(counts):
        k = round(count * scale)
        if i < len(bounds):
            upper = bounds[i]
            samples.extend(lower + (upper - lower) * (j + 0.5) / k for j in range(k))
            lower = upper
        else:
            samples.extend([bounds[-1] * inf_factor] * k)
    return samples


def _cumulative_at(series: HistogramSeries, bound: float) -> float:
    below = [b for b in series.buckets if b <= bound]
    return series.buckets[max(below)][1] if below else 0.0


def suggest_by_label(
    series: Sequence[HistogramSeries],
    label: str,
    *,
    count: int = 12,
    quantile: float = 0.99,
    inf_factor: float = INF_FACTOR,
) -> list[OperationDesign]:
    """One :func:`suggest_buckets` design per value of ``label``, largest traffic first.

    Raises :class:`ReportError` when the histogram has no observations or no value has enough
    requests for a design (at least 200); values with too few are returned as skipped.
    """
    groups: dict[str, list[HistogramSeries]] = {}
    for s in series:
        groups.setdefault(s.labels.get(label, ""), []).append(s)
    results: list[OperationDesign] = []
    for value, members in groups.items():
        bounds = sorted({b for s in members for b in s.buckets})
        total = sum(s.count for s in members)
        if not bounds or total <= 0:
            continue
        cumulative = [sum(_cumulative_at(s, b) for s in members) for b in bounds] + [total]
        inf_count = total - cumulative[-2]
        placed = bounds[-1] * inf_factor if inf_count > 0.5 else None
        samples = samples_from_buckets(bounds, cumulative, inf_factor=inf_factor)
        if len(samples) < _MIN_SAMPLES:
            results.append(
                OperationDesign(
                    value, total, None, None, placed, f"only {len(samples)} requests (needs 200)"
                )
            )
            continue
        try:
            design = suggest_buckets(samples, count, quantile=quantile)
        except ValueError as exc:
            results.append(OperationDesign(value, total, None, None, placed, str(exc)))
            continue
        hint = slo_hint(design.p99_seconds)
        results.append(OperationDesign(value, total, design, hint, placed))
    if not results:
        raise ReportError("the histogram has no observations")
    if all(r.design is None for r in results):
        reasons = "; ".join(f"{r.value or '(none)'}: {r.skipped}" for r in results)
        raise ReportError(f"no {label} value has enough observations for a design ({reasons})")
    results.sort(key=lambda r: (-r.requests, r.value))
    return results


#: Characters that break the ``name=seconds,...`` list or a double-quoted shell word.
_UNPASTABLE = set(',\n"$`\\')


def slos_setting(designs: Sequence[OperationDesign]) -> tuple[str, tuple[str, ...]]:
    """The ``OTELFIN_METRICS_OPERATION_SLOS="op=0.01,..."`` line, and the values left out of it.

    A value that is empty, padded with spaces or holds a comma, quote, ``$``, backquote or
    backslash cannot be written in that list (or the double-quoted shell word): it is left out.
    """
    pairs: list[str] = []
    left_out: list[str] = []
    for d in designs:
        if d.slo_hint is None:
            continue
        if not d.value or d.value != d.value.strip() or _UNPASTABLE & set(d.value):
            left_out.append(d.value)
            continue
        pairs.append(f"{d.value}={d.slo_hint:g}")
    return f'OTELFIN_METRICS_OPERATION_SLOS="{",".join(pairs)}"', tuple(left_out)


def series_from_prometheus(
    base: str, metric: str, by: str, *, window: str = "1h", timeout: float = 10.0
) -> list[HistogramSeries]:
    """Bucket increases of ``metric`` over ``window`` per ``by`` value, from Prometheus.

    Only ``http``/``https`` base URLs are accepted (``ReportError`` otherwise).
    """
    parsed = urllib.parse.urlsplit(base)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ReportError(
            f"--prometheus needs an http(s) URL such as http://127.0.0.1:9090, not {base!r}"
        )
    promql = q.sum_by(["le", by], q.rate(f"{metric}_bucket", window, fn="increase"))
    rows = query(base, promql, timeout)
    by_value: dict[str, HistogramSeries] = {}
    for row in rows:
        labels = row.get("metric", {})
        le = labels.get("le")
        if le is None:
            continue
        try:
            bound = float(le)
            value = float(row["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise ReportError(f"unexpected answer from Prometheus to {promql!r}") from None
        if math.isnan(value):
            continue
        key = labels.get(by, "")
        s = by_value.setdefault(key, HistogramSeries(labels={by: key}))
        if math.isinf(bound):
            s.count = max(s.count, value)
        else:
            s.buckets[bound] = (le, value)
    if not by_value:
        raise ReportError(f"no {metric} observations in the last {window} (is it scraped?)")
    return list(by_value.values())
