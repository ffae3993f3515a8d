"""Shared fixtures: every test starts and ends with otelfin and OpenTelemetry unconfigured."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otelfin import _config, _internal
from otelfin.testing import reset_tracer_provider


@pytest.fixture(autouse=True)
def _clean_otelfin_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Isolate tests from each other and from the developer's environment."""
    for name in (
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_EXPORTER",
        "OTEL_PROPAGATORS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTELFIN_CATALOGUE",
        "OTELFIN_ERROR_CODE_POLICY",
        "OTELFIN_METRICS_PORT",
        "OTELFIN_METHODS_INCLUDE",
        "OTELFIN_SPANS_FILE",
        "OTELFIN_SPAN_PROCESSOR",
        "OTELFIN_PAN_MASK",
        "OTELFIN_LOG_LEVEL",
        "OTELFIN_LOG_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    _internal.reset()
    yield
    _config.reset()
    reset_tracer_provider()
    _internal.reset()
