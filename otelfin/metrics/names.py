"""Every metric name otelfin exposes, defined once.

The instruments, the generated recording/alerting rules, the Grafana dashboards, the P99
report and the CLI defaults all read these constants, so a rename is one line. Counter names
are given without ``_total`` where prometheus_client adds it (``*_BASE``) and with it where a
query uses the exposed series.
"""

from __future__ import annotations

__all__ = [
    "DURATION",
    "REQUESTS",
    "ERRORS",
    "DECLINES",
    "FUNCTION_DURATION",
    "DEPENDENCY",
    "OVERFLOW",
    "OVERFLOW_BASE",
    "INTERNAL_ERRORS",
    "INTERNAL_ERRORS_BASE",
    "UNREGISTERED_CODES",
    "UNREGISTERED_CODES_BASE",
    "SPANS_DROPPED",
    "SPANS_DROPPED_BASE",
    "SPAN_EXPORT_FAILURES",
    "SPAN_EXPORT_FAILURES_BASE",
    "LOGS_DROPPED_BASE",
    "OTLP_EXPORT_FAILURES_BASE",
    "HEALTH",
    "ALL",
]

#: Histogram of request latency in seconds (RED: rate from _count, duration). Entry operations
#: only, each observed once: a SERVER or CONSUMER span, or a ``@traced`` call that starts a local
#: trace. ``outcome`` is ok / declined / error.
DURATION = "otelfin_request_duration_seconds"
#: Requests, derived from the histogram's count at scrape time.
REQUESTS = "otelfin_requests_total"
#: Requests whose outcome is ``error``, by error_code (RED: errors). Declines are not errors.
ERRORS = "otelfin_request_errors_total"
#: Requests whose outcome is ``declined`` (a business "no"), by error_code.
DECLINES = "otelfin_request_declines_total"
#: Histogram of internal ``@traced`` calls (inside a request), by operation and outcome.
FUNCTION_DURATION = "otelfin_function_duration_seconds"
#: Histogram of outgoing calls (database, HTTP client, publish) by system and peer.
DEPENDENCY = "otelfin_dependency_duration_seconds"
#: Label sets folded into ``other`` by the series cap.
OVERFLOW_BASE = "otelfin_metric_overflow"
OVERFLOW = OVERFLOW_BASE + "_total"
#: Failures otelfin contained (by place).
INTERNAL_ERRORS_BASE = "otelfin_internal_errors"
INTERNAL_ERRORS = INTERNAL_ERRORS_BASE + "_total"
#: Log events whose error code is missing or not in the catalogue.
UNREGISTERED_CODES_BASE = "otelfin_unregistered_error_codes"
UNREGISTERED_CODES = UNREGISTERED_CODES_BASE + "_total"

#: Spans that never reached the exporter, by ``reason``: queue_full, export_failed, shutdown.
SPANS_DROPPED_BASE = "otelfin_spans_dropped"
SPANS_DROPPED = SPANS_DROPPED_BASE + "_total"
#: Span export calls that failed, by ``reason``: failure, exception, timeout.
SPAN_EXPORT_FAILURES_BASE = "otelfin_span_export_failures"
SPAN_EXPORT_FAILURES = SPAN_EXPORT_FAILURES_BASE + "_total"
#: Log records bound for OTLP that never reached the collector, by reason.
LOGS_DROPPED_BASE = "otelfin_logs_dropped"
#: OTLP export calls that failed, by signal (logs, metrics) and reason.
OTLP_EXPORT_FAILURES_BASE = "otelfin_otlp_export_failures"

#: otelfin's own health series, each with the label it is broken down by (dashboards, rules).
HEALTH = (
    (UNREGISTERED_CODES, "code"),
    (SPANS_DROPPED, "reason"),
    (SPAN_EXPORT_FAILURES, "reason"),
    (OVERFLOW, "metric"),
    (INTERNAL_ERRORS, "where"),
)

#: Every exposed series family name above.
ALL = (
    DURATION,
    REQUESTS,
    ERRORS,
    DECLINES,
    FUNCTION_DURATION,
    DEPENDENCY,
    OVERFLOW,
    INTERNAL_ERRORS,
    UNREGISTERED_CODES,
    SPANS_DROPPED,
    SPAN_EXPORT_FAILURES,
)
