"""The Prometheus registry pushed as OTLP metrics (``OTEL_METRICS_EXPORTER=otlp``).

Why a bridge and not OpenTelemetry SDK instruments beside the Prometheus ones: the registry is
already the one place every observation lands (RED histograms with their SLO bucket bounds,
exemplars, the health counters, the application's own metrics). Mirroring it with SDK
instruments would record every observation twice on the request path (about a microsecond
each) and keep two copies of every series, which could disagree. The bridge costs nothing per
request: every ``metrics_export_interval`` (``OTEL_METRIC_EXPORT_INTERVAL``, 60 s) it reads the
registry once, as a scrape does, and hands the official OTLP exporter the same series:

* counters as monotonic cumulative sums (named as on ``/metrics``, ``_total`` included), gauges
  as gauges, histograms as explicit-bucket histograms with the very same bounds (``le``
  cumulative counts become OTLP's per-bucket counts) and each bucket's exemplar with its
  ``trace_id``/``span_id``;
* start times from the ``_created`` samples; ``service.instance.id`` per process, so the
  cumulative streams of several workers (gunicorn) stay apart.

Cumulative temporality makes a failed push lose nothing: the next push carries the totals, and
sending a point again never counts twice. Failures are counted in
``otelfin_otlp_export_failures_total{signal="metrics",reason}``.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from otelfin import _internal, _otlp

__all__ = ["MetricPusher", "metrics_data"]

_NANOS = 1_000_000_000


def _nanos(seconds: float) -> int:
    return int(seconds * _NANOS)


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _exemplar(sample: Any, labels: dict[str, str], now: int) -> Any:
    from opentelemetry.sdk.metrics import Exemplar

    ex = sample.exemplar
    if ex is None:
        return None
    ex_labels = dict(ex.labels)
    trace_id, span_id = ex_labels.pop("trace_id", None), ex_labels.pop("span_id", None)
    try:
        tid = int(trace_id, 16) if trace_id else None
        sid = int(span_id, 16) if span_id else None
    except ValueError:
        tid = sid = None
        ex_labels.update({"trace_id": str(trace_id), "span_id": str(span_id)})
    return Exemplar(
        filtered_attributes=ex_labels or None,
        value=float(ex.value),
        time_unix_nano=_nanos(ex.timestamp) if ex.timestamp else now,
        span_id=sid if tid is not None else None,
        trace_id=tid if sid is not None else None,
    )


def _metrics(families: Iterable[Any], start: int, now: int) -> list[Any]:
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        NumberDataPoint,
        Sum,
    )

    cumulative = AggregationTemporality.CUMULATIVE
    out: list[Any] = []
    for family in families:
        unit = family.unit or ("s" if family.name.endswith("_seconds") else "")
        created = {
            _key(s.labels): _nanos(s.value) for s in family.samples if s.name.endswith("_created")
        }
        if family.type == "counter":
            points = [
                NumberDataPoint(
                    attributes=dict(s.labels),
                    start_time_unix_nano=created.get(_key(s.labels), start),
                    time_unix_nano=now,
                    value=float(s.value),
                )
                for s in family.samples
                if s.name.endswith("_total")
            ]
            data: Any = Sum(points, cumulative, is_monotonic=True)
            out.append(Metric(family.name + "_total", family.documentation, unit, data))
        elif family.type in ("gauge", "info", "stateset", "unknown"):
            points = [
                NumberDataPoint(
                    attributes=dict(s.labels),
                    start_time_unix_nano=start,
                    time_unix_nano=now,
                    value=float(s.value),
                )
                for s in family.samples
                if not s.name.endswith("_created")
            ]
            out.append(Metric(family.name, family.documentation, unit, Gauge(points)))
        elif family.type == "histogram":
            hist = _histogram_points(family.samples, created, start, now, HistogramDataPoint)
            out.append(Metric(family.name, family.documentation, unit, Histogram(hist, cumulative)))
        # summaries and gauge histograms: otelfin makes none; left out rather than guessed
    return out


def _histogram_points(
    samples: Iterable[Any], created: dict[Any, int], start: int, now: int, point: Any
) -> list[Any]:
    series: dict[Any, dict[str, Any]] = {}
    for s in samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        entry = series.setdefault(
            _key(labels), {"labels": labels, "buckets": [], "count": 0.0, "sum": 0.0}
        )
        if s.name.endswith("_bucket"):
            entry["buckets"].append((float(s.labels["le"]), s.value, s))
        elif s.name.endswith("_count"):
            entry["count"] = s.value
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
    points = []
    for key, entry in series.items():
        buckets = sorted(entry["buckets"], key=lambda b: b[0])
        bounds = [b for b, _, _ in buckets if math.isfinite(b)]
        counts, previous = [], 0.0
        exemplars = []
        for _, cumulative_count, sample in buckets:
            counts.append(round(cumulative_count - previous))
            previous = cumulative_count
            ex = _exemplar(sample, entry["labels"], now)
            if ex is not None:
                exemplars.append(ex)
        if len(counts) == len(bounds):  # no +Inf bucket in the exposition: the rest is over
            counts.append(max(0, round(entry["count"] - previous)))
        points.append(
            point(
                attributes=entry["labels"],
                start_time_unix_nano=created.get(key, start),
                time_unix_nano=now,
                count=round(entry["count"]),
                sum=float(entry["sum"]),
                bucket_counts=counts,
                explicit_bounds=bounds,
                min=None,  # Prometheus histograms keep neither
                max=None,
                exemplars=exemplars,
            )
        )
    return points


def metrics_data(registry: Any, resource: Any, start_ns: int) -> Any:
    """The registry's series now, as the SDK's ``MetricsData`` the OTLP exporters take."""
    from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    now = time.time_ns()
    scope = ScopeMetrics(
        InstrumentationScope("otelfin"), _metrics(registry.collect(), start_ns, now), ""
    )
    return MetricsData([ResourceMetrics(resource, [scope], "")])


class MetricPusher:
    """Pushes ``registry`` every ``interval_seconds`` on a daemon thread, and on demand."""

    def __init__(
        self,
        registry: Any,
        factory: Callable[[], Any],
        service_name: str,
        interval_seconds: float,
    ) -> None:
        self.registry = registry
        self.factory = factory
        self.service_name = service_name
        self.interval = interval_seconds
        self._start(factory())

    def _start(self, exporter: Any) -> None:
        from opentelemetry.sdk.resources import Resource

        self.exporter = exporter
        self.resource = Resource.create(
            {"service.name": self.service_name, "service.instance.id": str(uuid.uuid4())}
        )
        self.start_ns = time.time_ns()
        self.push_lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="otelfin-otlp-metrics", daemon=True)
        self.thread.start()

    def forked(self) -> None:
        """In a forked child: its own exporter, thread and instance id (its own streams)."""
        if not self.stopped.is_set():
            self._start(self.factory())

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.push()

    def push(self, timeout_millis: float = 10_000) -> bool:
        """Export the registry now; True on success (a failure is counted)."""
        from opentelemetry.sdk.metrics.export import MetricExportResult

        with self.push_lock:
            try:
                data = metrics_data(self.registry, self.resource, self.start_ns)
                result = self.exporter.export(data, timeout_millis=timeout_millis)
            except Exception as exc:
                _internal.report("metrics.otlp_export", exc)
                _internal.otlp_export_failed("metrics", "exception", type(exc).__name__)
                return False
        if result is MetricExportResult.SUCCESS:
            return True
        _internal.otlp_export_failed("metrics", "failure", type(self.exporter).__name__)
        return False

    def flush(self, timeout_seconds: float) -> bool:
        """Push now, waiting at most ``timeout_seconds`` (a hanging collector is left to its
        own daemon thread)."""
        done = threading.Event()

        def run() -> None:
            if self.push(timeout_seconds * 1000):
                done.set()

        worker = threading.Thread(target=run, name="otelfin-otlp-metrics-flush", daemon=True)
        worker.start()
        worker.join(max(0.0, timeout_seconds))
        if worker.is_alive():
            _internal.otlp_export_failed("metrics", "timeout", "still running at the deadline")
        return done.is_set()

    def close(self, timeout_seconds: float) -> None:
        """A last push (bounded), then stop the thread and the exporter."""
        self.stopped.set()
        self.flush(timeout_seconds)
        stopper = threading.Thread(target=self._stop_exporter, daemon=True)
        stopper.start()
        stopper.join(1.0)

    def _stop_exporter(self) -> None:
        try:
            self.exporter.shutdown(timeout_millis=1000)
        except Exception as exc:
            _internal.report("metrics.otlp_shutdown", exc)


def start(registry: Any, factory: Callable[[], Any], service: str, interval: float) -> MetricPusher:
    """A new pusher, followed into forked children."""
    pusher = MetricPusher(registry, factory, service, interval)
    _otlp.follow(pusher, "metrics.otlp_after_fork")
    return pusher


def stop(pusher: MetricPusher, timeout_seconds: float) -> None:
    """Close ``pusher`` (a last bounded push) and forget it."""
    _otlp.forget(pusher)
    pusher.close(timeout_seconds)
