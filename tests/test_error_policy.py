"""Error events are never lost by default; the SDK's own records are kept under every policy."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from prometheus_client import CollectorRegistry

import otelfin
from otelfin.logging import capture_logs
from otelfin.testing import configured_for_test
from tests._collectors import Http500Collector


def _sample(registry: CollectorRegistry, code: str) -> float:
    value = registry.get_sample_value("otelfin_unregistered_error_codes_total", {"code": code})
    return value or 0.0


def test_default_policy_keeps_and_marks_codeless_errors() -> None:
    """By default an error without a code is written, marked, counted, warned about once."""
    registry = CollectorRegistry()
    with configured_for_test("payment-gateway", metrics_registry=registry), capture_logs() as logs:
        log = otelfin.get_logger()
        try:
            raise RuntimeError("ledger down")
        except RuntimeError:
            log.exception("capture_failed")
        log.error("capture_failed_again")
        logging.getLogger("vendor.lib").error("socket reset")
    events = {r["event"]: r for r in logs}
    for name in ("capture_failed", "capture_failed_again", "socket reset"):
        assert "missing error_code" in events[name]["catalogue_violation"]
    assert "RuntimeError: ledger down" in events["capture_failed"]["exception"]
    assert _sample(registry, "missing") == 3
    warnings = [r for r in logs if r.get("logger") == "otelfin"]
    assert len(warnings) == 1 and "kept" in warnings[0]["event"]


def test_default_policy_is_tag() -> None:
    """configure() without error_code_policy resolves to tag (DESIGN's default)."""
    config = otelfin.configure("payment-gateway")
    assert config.error_code_policy == "tag"


def test_drop_stays_available() -> None:
    """error_code_policy='drop' still drops codeless application errors (and counts them)."""
    registry = CollectorRegistry()
    with (
        configured_for_test("payment-gateway", error_code_policy="drop", metrics_registry=registry),
        capture_logs() as logs,
    ):
        otelfin.get_logger().error("gone")
    assert "gone" not in [r["event"] for r in logs]
    assert _sample(registry, "missing") == 1


@pytest.mark.parametrize("policy", ["drop", "raise", "tag"])
def test_sdk_failed_export_record_is_kept_whatever_the_policy(policy: str) -> None:
    """The SDK's "Failed to export" record (collector answering 500) reaches the log output."""
    with Http500Collector() as collector:
        exporter = OTLPSpanExporter(endpoint=collector.endpoint, timeout=5)
        otelfin.configure(
            "payment-gateway",
            span_exporter=exporter,
            span_processor="simple",
            error_code_policy=policy,
        )
        with capture_logs() as logs, trace.get_tracer("t").start_as_current_span("charge"):
            pass
        otelfin.shutdown()
        assert collector.requests >= 1
    failed = [r for r in logs if "Failed to export" in str(r["event"])]
    assert failed, [r["event"] for r in logs]
    assert failed[0]["logger"].startswith("opentelemetry.")
    assert failed[0]["level"] == "error" and "catalogue_violation" in failed[0]
