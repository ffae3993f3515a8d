"""RED metrics from @traced, label policy, series cap, exemplars, /metrics server, multiprocess."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import otelfin
from otelfin import _internal
from otelfin.metrics import (
    DURATION_METRIC,
    LabelPolicyError,
    SeriesGuard,
    check_label_names,
    current_metrics,
    latency_histogram,
    metrics_server,
    red_metrics,
)
from otelfin.testing import configured_for_test

H = DURATION_METRIC


def _labels(operation: str, outcome: str = "ok", channel: str = "") -> dict[str, str]:
    return {
        "service": "otelfin-test",
        "operation": operation,
        "outcome": outcome,
        "channel": channel,
    }


def test_traced_records_duration_requests_and_errors(prom_registry: CollectorRegistry) -> None:
    """Each call lands in the histogram; declines and errors count apart; requests derive."""

    @otelfin.traced(name="pay", attributes={"payment.channel": "channel"})
    def pay(channel: str) -> str:
        if channel == "bad":
            raise otelfin.OtelfinError("PAY-012", "Insufficient balance")
        if channel == "down":
            raise otelfin.OtelfinError("DB-003", "Ledger unavailable")
        return "ok"

    for channel in ("web", "web", "pos"):
        pay(channel)
    for channel in ("bad", "down"):
        with pytest.raises(otelfin.OtelfinError):
            pay(channel)
    get = prom_registry.get_sample_value
    assert get(f"{H}_count", _labels("pay", channel="web")) == 2
    assert get(f"{H}_count", _labels("pay", channel="pos")) == 1
    assert get(f"{H}_count", _labels("pay", "declined", "bad")) == 1
    assert get(f"{H}_count", _labels("pay", "error", "bad")) is None
    assert get(f"{H}_count", _labels("pay", "error", "down")) == 1
    assert get("otelfin_requests_total", _labels("pay", channel="web")) == 2
    labels = {"service": "otelfin-test", "operation": "pay"}
    declined = {**labels, "error_code": "PAY-012", "channel": "bad"}
    assert get("otelfin_request_declines_total", declined) == 1
    assert get("otelfin_request_errors_total", declined) is None
    failed = {**labels, "error_code": "DB-003", "channel": "down"}
    assert get("otelfin_request_errors_total", failed) == 1
    assert get("otelfin_request_declines_total", failed) is None


def test_error_without_valid_code_is_unclassified(prom_registry: CollectorRegistry) -> None:
    """A plain exception, or a malformed code, becomes error_code="unclassified"."""

    @otelfin.traced(name="boom")
    def boom(code: str | None) -> None:
        if code is None:
            raise RuntimeError("x")
        raise otelfin.OtelfinError(code)

    for code in (None, "not a code 4111111111111111"):
        with pytest.raises(Exception):  # noqa: B017 - both kinds are expected
            boom(code)
    labels = {"service": "otelfin-test", "operation": "boom", "error_code": "unclassified",
              "channel": ""}  # fmt: skip
    assert prom_registry.get_sample_value("otelfin_request_errors_total", labels) == 2


@pytest.mark.otelfin_internal_errors
def test_result_and_exception_unchanged_when_metrics_fail(prom_registry: CollectorRegistry) -> None:
    """A broken histogram is contained: the call's result stands and the failure is counted."""
    metrics = current_metrics()
    assert metrics is not None

    class Broken:
        def observe(self, *args: object) -> None:
            raise RuntimeError("metrics down")

    @otelfin.traced(name="broken")
    def broken() -> int:
        return 7

    real_bind = metrics.duration_guard.bind
    metrics.duration_guard.bind = lambda values: (Broken(), False)  # type: ignore[method-assign]
    try:
        assert broken() == 7
    finally:
        metrics.duration_guard.bind = real_bind  # type: ignore[method-assign]
    assert _internal.internal_error_counts().get("metrics.observe") == 1
    text = generate_latest(prom_registry).decode()
    assert 'otelfin_internal_errors_total{where="metrics.observe"} 1.0' in text


def test_exemplars_carry_trace_and_span_ids(prom_registry: CollectorRegistry) -> None:
    """A sampled span's trace_id/span_id become an OpenMetrics exemplar on its bucket."""
    with configured_for_test(metrics_registry=prom_registry) as spans:

        @otelfin.traced(name="ex")
        def ex() -> None:
            return None

        ex()
        span = spans.get_finished_spans()[0]
        text = generate_openmetrics(prom_registry).decode()
    trace_id = format(span.context.trace_id, "032x")
    span_id = format(span.context.span_id, "016x")
    assert f'trace_id="{trace_id}"' in text
    assert f'span_id="{span_id}"' in text
    assert "# {" not in generate_latest(prom_registry).decode()  # classic text has none


def test_no_exemplar_for_unsampled_spans() -> None:
    """An unsampled span gives no exemplar (there is no trace to open)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from otelfin.testing import reset_tracer_provider

    registry = CollectorRegistry()
    reset_tracer_provider()
    trace.set_tracer_provider(TracerProvider(sampler=ALWAYS_OFF))
    otelfin.configure("otelfin-test", metrics_registry=registry)

    @otelfin.traced(name="quiet")
    def quiet() -> None:
        return None

    quiet()
    assert registry.get_sample_value(f"{H}_count", _labels("quiet")) == 1
    assert "trace_id" not in generate_openmetrics(registry).decode()


def test_exemplars_are_refreshed_at_most_once_a_second_per_bucket(
    prom_registry: CollectorRegistry,
) -> None:
    """The second fast call within a second keeps the first call's exemplar."""
    with configured_for_test(metrics_registry=prom_registry) as spans:

        @otelfin.traced(name="twice")
        def twice() -> None:
            return None

        twice()
        twice()
        first, second = spans.get_finished_spans()
        text = generate_openmetrics(prom_registry).decode()
    assert format(first.context.trace_id, "032x") in text
    assert format(second.context.trace_id, "032x") not in text


@pytest.mark.parametrize("name", ["user_id", "trace_id", "pod_name", "instance", "card_number",
                                  "pan", "account", "customer_account_ref"])  # fmt: skip
def test_denied_labels_fail_at_definition(name: str) -> None:
    """High-cardinality and card/account label names are refused with a clear error."""
    with pytest.raises(LabelPolicyError, match="refused"):
        check_label_names(["service", name])
    with pytest.raises(LabelPolicyError):
        latency_histogram("x_seconds", "x", [name], slo=0.25, registry=CollectorRegistry())


def test_unknown_label_needs_allow_and_allow_cannot_override_deny() -> None:
    """Off-list names need allow=; deny-listed names stay refused even when allowed."""
    with pytest.raises(LabelPolicyError, match="allow-list"):
        check_label_names(["tenant"])
    assert check_label_names(["tenant"], allow=["tenant"]) == ("tenant",)
    with pytest.raises(LabelPolicyError, match="refused"):
        check_label_names(["user_id"], allow=["user_id"])


def test_configure_with_denied_metrics_label_fails_at_startup() -> None:
    """configure(metrics_labels=["user_id"]) raises at start-up, not at the first call."""
    with pytest.raises(ValueError, match="user_id"):
        otelfin.configure("otelfin-test", metrics_labels=["user_id"])


def test_latency_histogram_requires_seconds_and_uses_designed_buckets() -> None:
    """Names end in _seconds; the SLO is a bucket bound."""
    registry = CollectorRegistry()
    with pytest.raises(ValueError, match="_seconds"):
        latency_histogram("latency_ms", "x", slo=0.25, registry=registry)
    hist = latency_histogram("pay_seconds", "x", ["channel"], slo=0.3, registry=registry)
    hist.labels("web").observe(0.29)
    assert registry.get_sample_value("pay_seconds_bucket", {"channel": "web", "le": "0.3"}) == 1


def test_series_cap_folds_into_other_and_counts() -> None:
    """Beyond max_series, new values fold into 'other' and the overflow counter counts them."""
    registry = CollectorRegistry()
    counter = Counter("calls", "x", ["service", "channel"], registry=registry)
    guard = SeriesGuard(counter, "calls_total", ("service", "channel"), max_series=5,
                        registry=registry)  # fmt: skip
    for i in range(20):
        guard.child(("svc", f"c{i}")).inc()
    get = registry.get_sample_value
    assert get("calls_total", {"service": "svc", "channel": "c0"}) == 1
    assert get("calls_total", {"service": "svc", "channel": "c3"}) == 1
    assert get("calls_total", {"service": "svc", "channel": "c4"}) is None
    assert get("calls_total", {"service": "svc", "channel": "other"}) == 16
    assert get("otelfin_metric_overflow_total", {"metric": "calls_total"}) == 16
    assert len(guard) == 5


def test_traced_label_flood_stays_bounded() -> None:
    """100,000 distinct channel values through @traced keep the series count at the cap."""
    registry = CollectorRegistry()
    with configured_for_test(metrics_registry=registry, metrics_max_series=50):

        @otelfin.traced(name="flood", attributes={"channel": "channel"})
        def flood(channel: str) -> None:
            return None

        for i in range(100_000):
            flood(f"v{i}")
        metrics = current_metrics()
        assert metrics is not None
        assert len(metrics.duration_guard) <= 50
        other = _labels("flood", channel="other")
        assert registry.get_sample_value(f"{H}_count", other) == 100_000 - 49
        overflow = {"metric": H}
        assert registry.get_sample_value("otelfin_metric_overflow_total", overflow) == 100_000 - 49


def test_guard_memory_bounded_under_a_flood() -> None:
    """A flood of 200,000 distinct values grows memory by well under a megabyte past the cap."""
    registry = CollectorRegistry()
    counter = Counter("flood", "x", ["channel"], registry=registry)
    guard = SeriesGuard(counter, "flood_total", ("channel",), max_series=100, registry=registry)
    for i in range(1000):
        guard.child((f"warm{i}",)).inc()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(200_000):
        guard.child((f"value-{i}",)).inc()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after - before < 256 * 1024


def test_configure_twice_does_not_duplicate_and_reconfigure_swaps() -> None:
    """Same settings: same instruments; new labels: old ones unregistered, new ones live."""
    registry = CollectorRegistry()
    otelfin.configure("otelfin-test", metrics_registry=registry)
    first = current_metrics()
    otelfin.configure("otelfin-test", metrics_registry=registry)
    assert current_metrics() is first
    otelfin.configure("otelfin-test", metrics_registry=registry, metrics_labels=["region"])
    second = current_metrics()
    assert second is not first and second is not None
    assert second.labels == ("service", "operation", "outcome", "region")
    otelfin.shutdown()
    assert current_metrics() is None
    assert otelfin.instrument.call_observer() is None
    assert list(registry.collect()) == []


def test_red_metrics_observe_for_transports() -> None:
    """RedMetrics.observe records calls made outside @traced (transports)."""
    registry = CollectorRegistry()
    metrics = red_metrics(registry=registry)
    metrics.observe("svc", "GET /pay", 0.2, labels={"channel": "web"})
    metrics.observe("svc", "GET /pay", 0.3, error_code="PAY-012")
    metrics.observe("svc", "GET /pay", 0.3, failed=True)
    get = registry.get_sample_value
    ok = {"service": "svc", "operation": "GET /pay", "outcome": "ok", "channel": "web"}
    assert get(f"{H}_bucket", {**ok, "le": "0.204"}) == 1  # the default layout's bound over 0.2
    coded = {"service": "svc", "operation": "GET /pay", "error_code": "PAY-012", "channel": ""}
    assert get("otelfin_request_declines_total", coded) == 1  # PAY-012 is a warning: declined
    assert get("otelfin_request_errors_total", coded) is None
    failed = {**coded, "error_code": "unclassified"}
    assert get("otelfin_request_errors_total", failed) == 1


def _get(url: str, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_metrics_port_serves_text_and_openmetrics() -> None:
    """/metrics answers classic text by default and OpenMetrics (with exemplars) on request."""
    registry = CollectorRegistry()
    with configured_for_test(metrics_registry=registry, metrics_port=0, metrics_addr="127.0.0.1"):

        @otelfin.traced(name="served")
        def served() -> None:
            return None

        served()
        server = metrics_server()
        assert server is not None
        ctype, text = _get(server.url)
        assert ctype.startswith("text/plain")
        assert f'{H}_count{{channel="",operation="served"' in text
        ctype, om = _get(server.url, "application/openmetrics-text; version=1.0.0")
        assert ctype.startswith("application/openmetrics-text")
        assert "trace_id=" in om and om.rstrip().endswith("# EOF")
        url = server.url
    assert metrics_server() is None
    with pytest.raises(OSError):
        _get(url)


def test_reconfigure_same_port_keeps_one_server() -> None:
    """configure() again with the same settings keeps the running server (no second bind)."""
    registry = CollectorRegistry()
    otelfin.configure("otelfin-test", metrics_registry=registry, metrics_port=0,
                      metrics_addr="127.0.0.1")  # fmt: skip
    first = metrics_server()
    otelfin.configure("otelfin-test", metrics_registry=registry, metrics_port=0,
                      metrics_addr="127.0.0.1", log_level="debug")  # fmt: skip
    assert metrics_server() is first


_WORKER = textwrap.dedent(
    """
    import sys
    import otelfin
    otelfin.configure("mp-test")

    @otelfin.traced(name="work", attributes={"channel": "channel"})
    def work(channel):
        return channel

    for _ in range(int(sys.argv[1])):
        work("web")
    """
)


def test_multiprocess_mode_sums_workers(tmp_path: Path) -> None:
    """Under PROMETHEUS_MULTIPROC_DIR two worker processes are summed by the server registry."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    for n in (3, 4):
        subprocess.run([sys.executable, str(script), str(n)], env=env, check=True, timeout=60)
    reader = textwrap.dedent(
        """
        from prometheus_client import generate_latest
        from otelfin.metrics import multiprocess_registry, is_multiprocess
        assert is_multiprocess()
        print(generate_latest(multiprocess_registry()).decode())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", reader], env=env, check=True, capture_output=True, text=True,
        timeout=60,
    ).stdout  # fmt: skip
    labels = 'channel="web",operation="work",outcome="ok",service="mp-test"'
    assert f"{H}_count{{{labels}}} 7.0" in out
    assert f"otelfin_requests_total{{{labels}}} 7.0" in out


def test_overflow_counter_is_one_per_registry_and_dies_with_it() -> None:
    """Each registry gets its own overflow counter, found again on the next call; a registry
    that is garbage-collected takes its counter along (no id() bookkeeping to inherit)."""
    import gc
    import weakref

    from otelfin import _registries
    from otelfin.metrics import _labels as labels_module

    first, second = CollectorRegistry(), CollectorRegistry()
    counter = labels_module.overflow_counter(first)
    try:
        assert labels_module.overflow_counter(first) is counter
        other = labels_module.overflow_counter(second)
        assert other is not counter
        other.labels(metric="m").inc()
        assert second.get_sample_value("otelfin_metric_overflow_total", {"metric": "m"}) == 1
        assert first.get_sample_value("otelfin_metric_overflow_total", {"metric": "m"}) is None
        gone = weakref.ref(second)
        del second, other
        gc.collect()
        assert gone() is None  # the cache does not keep a registry alive
        assert first in _registries._by_registry
    finally:
        labels_module.forget_overflow_counter(first)
    assert first.get_sample_value("otelfin_metric_overflow_total", {"metric": "m"}) is None
    assert labels_module.overflow_counter(first) is not counter
    labels_module.forget_overflow_counter(first)
