"""Test helpers, also registered as a pytest plugin (``pytest11`` entry point ``otelfin``).

Fixtures:
    ``spans``: otelfin configured against a fresh SDK TracerProvider (set as the global one
    for the test) with a synchronous in-memory exporter; yields the exporter.
    ``prom_registry``: a fresh prometheus_client ``CollectorRegistry`` with otelfin configured
    (in-memory spans) to record its RED metrics there; assert with ``get_sample_value``.
    ``captured_logs``: every line otelfin writes during the test (parsed dicts; ``.lines``
    raw, ``.violations`` catalogue violations, dropped events included); not echoed.

Opt-in log check: the marker ``@pytest.mark.otelfin_check_logs``, the ini option
``otelfin_check_logs = true`` or ``--otelfin-check-logs`` fail a test whose logs break the
catalogue or carry an unmasked card number.

Nothing here runs at import time; the fixtures restore OpenTelemetry's and otelfin's globals
afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from prometheus_client import CollectorRegistry

if TYPE_CHECKING:
    from otelfin.logging import CapturedLogs

__all__ = [
    "configured_for_test",
    "reset_tracer_provider",
    "spans",
    "prom_registry",
    "captured_logs",
]


def reset_tracer_provider() -> None:
    """Let a test set the global tracer provider again (OpenTelemetry allows it only once)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@contextmanager
def configured_for_test(
    service_name: str = "otelfin-test", **options: object
) -> Iterator[InMemorySpanExporter]:
    """``otelfin.configure()`` against a fresh provider and in-memory exporter, undone after."""
    from otelfin import _config

    previous = _config.snapshot()  # an app's import-time configure(), put back afterwards
    _config.reset()
    reset_tracer_provider()
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    options.setdefault("span_processor", "simple")
    try:
        _config.configure(service_name, span_exporter=exporter, **options)  # type: ignore[arg-type]
        yield exporter
    finally:
        _config.reset()
        provider.shutdown()
        reset_tracer_provider()
        if previous is not None:
            _restore(*previous)


def _restore(call: dict[str, Any], app_provider: TracerProvider | None) -> None:
    """Re-apply the configure() call a test fixture replaced (never fails the test for it)."""
    from otelfin import _config, _internal

    if app_provider is not None:
        trace.set_tracer_provider(app_provider)
    try:
        _config.configure(**call)
    except Exception as exc:
        _internal.report("testing.restore_configuration", exc)


# The span exporter of each live ``prom_registry`` set-up, for ``spans`` in the same test.
_REGISTRY_SPANS: WeakKeyDictionary[CollectorRegistry, InMemorySpanExporter] = WeakKeyDictionary()


@pytest.fixture
def spans(request: pytest.FixtureRequest) -> Iterator[InMemorySpanExporter]:
    """otelfin configured with an in-memory span exporter; yields the exporter."""
    if "prom_registry" in request.fixturenames:
        # One configuration serves both fixtures: a second configure() would swap this
        # exporter out and the test would see no spans.
        yield _REGISTRY_SPANS[request.getfixturevalue("prom_registry")]
        return
    with configured_for_test() as exporter:
        yield exporter


@pytest.fixture
def prom_registry() -> Iterator[CollectorRegistry]:
    """A fresh ``CollectorRegistry`` that otelfin's ``@traced`` metrics record into."""
    registry = CollectorRegistry()
    with configured_for_test(metrics_registry=registry) as exporter:
        _REGISTRY_SPANS[registry] = exporter
        yield registry


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    """Every log line otelfin writes during the test, parsed (``.lines``, ``.violations``)."""
    from otelfin.logging import capture_logs

    with capture_logs() as logs:
        yield logs


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "otelfin_check_logs",
        "fail tests whose otelfin logs break the catalogue or leak a card number",
        type="bool",
        default=False,
    )
    parser.addoption(
        "--otelfin-check-logs",
        action="store_true",
        default=False,
        help="fail tests whose otelfin logs break the catalogue or leak a card number",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "otelfin_check_logs: fail the test if its otelfin logs break the catalogue or leak a PAN",
    )


def _check_logs_enabled(item: pytest.Item) -> bool:
    if item.get_closest_marker("otelfin_check_logs") is not None:
        return True
    config = item.config
    return bool(config.getoption("--otelfin-check-logs") or config.getini("otelfin_check_logs"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Around the test body: capture otelfin's log lines and judge them when enabled."""
    if not _check_logs_enabled(item):
        return (yield)
    from otelfin.logging import capture_logs

    with capture_logs(echo=True) as logs:
        result = yield
    problems = logs.problems()
    if problems:
        listing = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise AssertionError(f"otelfin log check failed:\n  {listing}{more}")
    return result
