"""Shared fixtures: every test starts and ends with otelfin and OpenTelemetry unconfigured.

otelfin contains its own failures in production (``otelfin._internal.report``); here a test
during which otelfin counted one fails, unless it is marked
``@pytest.mark.otelfin_internal_errors`` because it provokes that failure on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otelfin import _config, _internal, _settings
from otelfin._exporters import _accounting
from otelfin.testing import reset_tracer_provider

# Every variable the settings table reads, plus the OTLP endpoints the exporter choice reads.
_ENV = sorted(
    {s.env for s in _settings.SETTINGS if s.env}
    | {
        f"OTEL_EXPORTER_OTLP{signal}_{what}"
        for signal in ("", "_TRACES", "_LOGS", "_METRICS")
        for what in ("ENDPOINT", "PROTOCOL", "TIMEOUT")
    }
)


@pytest.fixture(autouse=True)
def _clean_otelfin_state(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[None]:
    """Isolate tests from each other and from the developer's environment."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    # The export thread's record of busy pauses (it leaves the next ones out) is process-wide:
    # a pause that took long in one test must not decide another's.
    monkeypatch.setattr(_accounting, "_pauses", _accounting._Pauses())
    _internal.reset()
    yield
    _config.reset()
    reset_tracer_provider()
    counted = _internal.internal_error_counts()
    _internal.reset()
    if counted and request.node.get_closest_marker("otelfin_internal_errors") is None:
        pytest.fail(
            f"otelfin counted internal errors during this test: {counted} "
            "(mark the test @pytest.mark.otelfin_internal_errors if it provokes them)",
            pytrace=False,
        )


@pytest.fixture
def scrub_defaults() -> Iterator[None]:
    """The scrubber's process-default options before and after the test (the scrub tests use
    it for every test: ``pytestmark = pytest.mark.usefixtures("scrub_defaults")``)."""
    from otelfin import scrub

    scrub.configure(None)
    yield
    scrub.configure(None)
