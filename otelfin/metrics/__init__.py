"""Metrics: RED metrics from ``@traced``, bucket design, label policy, exemplars, P99 reports.

``otelfin.configure()`` hands ``@traced`` a call observer that records
``otelfin_request_duration_seconds`` (with ``otelfin_requests_total`` derived from it) and
``otelfin_request_errors_total``, and serves ``/metrics`` when ``metrics_port`` is set.
Pillar options (``configure(**more)``):

``metrics_registry``
    a ``CollectorRegistry`` (default: prometheus_client's global one).
``metrics_labels``
    extra labels taken from span attributes (default ``("channel",)``), checked by the label
    policy; ``metrics_allow_labels`` names reviewed extra names.
``metrics_slo`` / ``metrics_p99`` / ``metrics_timeouts`` / ``metrics_buckets``
    bucket design for the duration histogram (default SLO: ``otelfin._settings.DEFAULT_SLO``;
    timeouts: the service's client timeouts, default the round values ``ROUND_TIMEOUTS``).
``metrics_max_series``
    per-metric series cap (default 1000).
``metrics_exemplars``
    attach trace exemplars (default True; off in multiprocess mode).
``metrics_addr``
    bind address of the ``/metrics`` server (default ``0.0.0.0``).
"""

from __future__ import annotations

import errno
import logging
import threading
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry

from otelfin import _internal
from otelfin._keep import keep_rules
from otelfin.metrics._buckets import (
    DEFAULT_PROMETHEUS_BUCKETS,
    ROUND_TIMEOUTS,
    check_slo_bound,
    default_buckets,
    histogram_quantile,
    latency_buckets,
    le_text,
    nearest_bounds,
    operation_buckets,
)
from otelfin.metrics._collectors import (
    ExportHealthCollector,
    InternalErrorsCollector,
    RequestsCollector,
    safe_unregister,
)
from otelfin.metrics._labels import (
    ALLOWED_LABELS,
    DEFAULT_MAX_SERIES,
    DENIED_LABELS,
    OTHER,
    LabelPolicyError,
    SeriesGuard,
    check_label_names,
    forget_overflow_counter,
    overflow_counter,
)
from otelfin.metrics._red import (
    DURATION_METRIC,
    ERRORS_METRIC,
    REQUESTS_METRIC,
    CallRecorder,
    RedMetrics,
    is_multiprocess,
    latency_histogram,
    red_metrics,
)
from otelfin.metrics._transport import TransportMetricsProcessor
from otelfin.pillar import Installed

if TYPE_CHECKING:
    from otelfin.metrics._design import (
        BucketDesign,
        WindowAccuracy,
        evaluate_buckets,
        suggest_buckets,
    )
    from otelfin.metrics._server import MetricsServer, multiprocess_registry, start_metrics_server
    from otelfin.pillar import Config, Tracing

_log = logging.getLogger("otelfin")

__all__ = [
    # bucket design
    "latency_buckets",
    "default_buckets",
    "check_slo_bound",
    "nearest_bounds",
    "operation_buckets",
    "suggest_buckets",
    "evaluate_buckets",
    "histogram_quantile",
    "le_text",
    "BucketDesign",
    "WindowAccuracy",
    "DEFAULT_PROMETHEUS_BUCKETS",
    "ROUND_TIMEOUTS",
    # instruments and label policy
    "latency_histogram",
    "red_metrics",
    "RedMetrics",
    "CallRecorder",
    "check_label_names",
    "LabelPolicyError",
    "SeriesGuard",
    "overflow_counter",
    "ALLOWED_LABELS",
    "DENIED_LABELS",
    "DEFAULT_MAX_SERIES",
    "OTHER",
    "DURATION_METRIC",
    "REQUESTS_METRIC",
    "ERRORS_METRIC",
    # exposition
    "start_metrics_server",
    "multiprocess_registry",
    "MetricsServer",
    "InternalErrorsCollector",
    "ExportHealthCollector",
    "RequestsCollector",
    "is_multiprocess",
    "current_metrics",
    "metrics_server",
    "TransportMetricsProcessor",
]


class _State:
    __slots__ = (
        "export_health",
        "internal",
        "key",
        "lock",
        "metrics",
        "otlp_health",
        "otlp_health_key",
        "pusher",
        "pusher_key",
        "recorder",
        "said_preferences",
        "server",
        "server_key",
        "server_registry",
        "service_name",
    )

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.key: tuple[Any, ...] | None = None
        self.metrics: RedMetrics | None = None
        self.recorder: CallRecorder | None = None
        self.internal: InternalErrorsCollector | None = None
        self.export_health: ExportHealthCollector | None = None
        self.server: MetricsServer | None = None
        self.server_key: tuple[Any, ...] | None = None
        self.server_registry: CollectorRegistry | None = None
        self.service_name = ""
        #: OTLP export of the registry (OTEL_METRICS_EXPORTER=otlp) and its settings.
        self.pusher: Any = None
        self.pusher_key: tuple[Any, ...] | None = None
        #: otelfin_logs_dropped_total / otelfin_otlp_export_failures_total, while OTLP is on.
        self.otlp_health: Any = None
        self.otlp_health_key: tuple[Any, ...] | None = None
        #: Temporality preferences already warned about (once per process each).
        self.said_preferences: set[str] = set()


_state = _State()

#: Names whose module loads on first use: bucket design from samples (``otelfin buckets
#: suggest``) and the ``/metrics`` server (``metrics_port``), which configure() does not need
#: in a service that only builds the default layouts and serves no port of its own.
_LAZY = {
    "BucketDesign": "_design",
    "WindowAccuracy": "_design",
    "evaluate_buckets": "_design",
    "suggest_buckets": "_design",
    "MetricsServer": "_server",
    "multiprocess_registry": "_server",
    "start_metrics_server": "_server",
}


def __getattr__(name: str) -> Any:
    return _internal.lazy_attribute(__name__, _LAZY, globals(), name)


def _transport_target() -> tuple[RedMetrics, str] | None:
    metrics = _state.metrics
    return (metrics, _state.service_name) if metrics is not None else None


_transport_processor = TransportMetricsProcessor(_transport_target)


def current_metrics() -> RedMetrics | None:
    """The RED instruments ``configure()`` created, or None."""
    return _state.metrics


def metrics_server() -> MetricsServer | None:
    """The ``/metrics`` server ``configure(metrics_port=...)`` started, or None."""
    return _state.server


def install_pillar(config: Config, tracing: Tracing) -> Installed:
    """Create the RED metrics, hook ``@traced`` and start ``/metrics`` (configure calls this).

    Returns the transport-span processor for config to add to the tracer provider.
    """
    options = config.options
    registry: CollectorRegistry = options["metrics_registry"] or REGISTRY
    labels = tuple(options["metrics_labels"])
    allow = tuple(options["metrics_allow_labels"])
    slo = options["metrics_slo"]
    p99 = options["metrics_p99"]
    buckets = options["metrics_buckets"] or operation_buckets(
        slo, options["metrics_operation_slos"], p99=p99, timeouts=options["metrics_timeouts"]
    )
    max_series = options["metrics_max_series"]
    exemplars = options["metrics_exemplars"]
    key = (labels, allow, tuple(buckets or ()), slo, p99, max_series)
    with _state.lock:
        current = _state.metrics
        if current is None or current.registry is not registry or _state.key != key:
            _drop_metrics()
            current = _state.metrics = red_metrics(
                labels=labels,
                allow=allow,
                buckets=buckets,
                slo=slo,
                p99=p99,
                max_series=max_series,
                registry=registry,
            )
            _state.key = key
            _state.internal = InternalErrorsCollector()
            registry.register(_state.internal)
            _state.export_health = ExportHealthCollector()
            registry.register(_state.export_health)
        # Exemplars may name the unsampled traces tail sampling keeps: the same rules as the
        # processor's (otelfin._keep), built from the same settings.
        keep = keep_rules(
            options["keep_traces"],
            slo=slo,
            operation_slos=options["metrics_operation_slos"],
            catalogue=config.catalogue,
        )
        current.exemplar_policy.rules = keep
        _state.recorder = CallRecorder(current, config.service_name, exemplars=exemplars, keep=keep)
        _state.service_name = config.service_name
        _setup_server(config, registry)
        _setup_otlp(config, registry)
        # configure() hands the recorder to the tracing pillar (instrument), which calls it.
        return Installed(span_processors=(_transport_processor,), call_observer=_state.recorder)


#: How long a shutdown or a dying process waits for the last OTLP metrics push.
OTLP_FLUSH_SECONDS = 2.0


def _setup_otlp(config: Config, registry: CollectorRegistry) -> None:
    """``OTEL_METRICS_EXPORTER=otlp``: push the registry over OTLP (see :mod:`._otlp`); with
    logs or metrics over OTLP, count what that export loses on ``/metrics``."""
    options = config.options
    signals = tuple(
        signal
        for signal, setting in (("logs", "logs_exporter"), ("metrics", "metrics_exporter"))
        if "otlp" in options[setting]
    )
    health_key = (signals, registry)
    if _state.otlp_health_key != health_key:
        if _state.otlp_health is not None:
            safe_unregister(_state.otlp_health_key[1], _state.otlp_health)  # type: ignore[index]
        _state.otlp_health, _state.otlp_health_key = None, None
        if signals:
            from otelfin.metrics._collectors import OtlpHealthCollector

            _state.otlp_health = OtlpHealthCollector(signals)
            registry.register(_state.otlp_health)
            _state.otlp_health_key = health_key
    interval = options["metrics_export_interval"] / 1000
    key = (registry, config.service_name, interval) if "metrics" in signals else None
    if key == _state.pusher_key:
        return
    _stop_pusher()
    if key is None:
        return
    from otelfin import _otlp as exporters
    from otelfin import _settings
    from otelfin.metrics import _otlp as bridge

    preference = (
        _settings.env_value("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") or ""
    ).lower()
    if preference not in ("", "cumulative", *_state.said_preferences):
        _state.said_preferences.add(preference)
        # The registry holds running totals; pushing them as deltas would need state that a
        # failed push could lose. Said once, not ignored in silence.
        _log.warning(
            "otelfin: OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=%s is not honoured: "
            "otelfin pushes cumulative metrics (a Collector's cumulativetodelta processor "
            "converts them for a backend that wants deltas)",
            preference,
        )
    # A bad protocol or a missing gRPC extra is a ValueError here: configure() reports it.
    _state.pusher = bridge.start(registry, exporters.metric_exporter, config.service_name, interval)
    _state.pusher_key = key


def _stop_pusher() -> None:
    pusher, _state.pusher, _state.pusher_key = _state.pusher, None, None
    if pusher is not None:
        from otelfin.metrics import _otlp as bridge

        bridge.stop(pusher, OTLP_FLUSH_SECONDS)


def flush_pillar(timeout_seconds: float) -> bool:
    """Push the registry over OTLP now, when that export is on (a dying process)."""
    pusher = _state.pusher
    return True if pusher is None else bool(pusher.flush(timeout_seconds))


def _setup_server(config: Config, registry: CollectorRegistry) -> None:
    port = config.metrics_port
    addr = config.options["metrics_addr"] or "0.0.0.0"
    server_key = (port, addr)
    if (
        _state.server is not None
        and _state.server_key == server_key
        and _state.server_registry is registry
    ):
        return
    _stop_server()
    if port is None:
        return
    from otelfin.metrics._server import multiprocess_registry, start_metrics_server

    serve: CollectorRegistry | None = registry
    if registry is REGISTRY and is_multiprocess():
        serve = multiprocess_registry()
    try:
        _state.server = start_metrics_server(port, addr, serve)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        _port_taken(port)
        return
    _state.server_key = server_key
    _state.server_registry = registry


def _port_taken(port: int) -> None:
    """The metrics port is bound already: another worker of the same server, nearly always.

    Under ``PROMETHEUS_MULTIPROC_DIR`` that is the recipe working (the worker holding the port
    serves every worker's sum). Without it each worker counts only its own requests, and the
    one ``/metrics`` a scraper sees would quietly hold a fraction of them: say what to do.
    """
    if is_multiprocess():
        _log.info("otelfin: /metrics on port %s is served by another worker (multiprocess)", port)
        return
    _log.warning(
        "otelfin: metrics port %s is already in use, most likely by another worker of this "
        "server (gunicorn -w N, uvicorn --workers N). Each worker counts only its own "
        "requests, so that /metrics shows a fraction of the traffic. Set "
        "PROMETHEUS_MULTIPROC_DIR to an empty directory in the server's environment before it "
        "starts (and call prometheus_client.multiprocess.mark_process_dead in gunicorn's "
        "child_exit hook); the worker that holds the port then serves every worker's sum. "
        "See the docs, Operations: multi-worker servers.",
        port,
    )


def _stop_server() -> None:
    server, _state.server = _state.server, None
    _state.server_key = None
    if server is not None:
        server.stop()


def _drop_metrics() -> None:
    metrics, _state.metrics = _state.metrics, None
    if metrics is not None:
        metrics.unregister()
        safe_unregister(metrics.registry, _state.internal)
        safe_unregister(metrics.registry, _state.export_health)
        forget_overflow_counter(metrics.registry)
    _state.internal = None
    _state.export_health = None
    _state.key = None


def uninstall_pillar() -> None:
    """Stop the server and remove otelfin's metrics from the registry (the tracing pillar
    lets go of the recorder in its own ``uninstall_pillar``)."""
    with _state.lock:
        _state.recorder = None
        _stop_server()
        _stop_pusher()  # the last push, while otelfin's series are still registered
        if _state.otlp_health is not None and _state.otlp_health_key is not None:
            safe_unregister(_state.otlp_health_key[1], _state.otlp_health)
        _state.otlp_health, _state.otlp_health_key = None, None
        _drop_metrics()
