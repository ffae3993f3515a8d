"""otelfin never breaks the host: broken exporters, processors, callables are contained."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import otelfin
from otelfin import _internal
from otelfin.testing import reset_tracer_provider


class ExplodingExporter(SpanExporter):
    """Raises on export, flush and shutdown, like a collector client gone wrong."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        raise ConnectionError("collector unreachable")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        raise RuntimeError("flush failed")

    def shutdown(self) -> None:
        raise RuntimeError("shutdown failed")


class ExplodingProcessor(SpanProcessor):
    def on_start(self, span: object, parent_context: object = None) -> None:
        raise RuntimeError("on_start broke")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("on_end broke")


@otelfin.traced(name="charge")
def charge(amount: int) -> int:
    return amount * 2


@otelfin.traced(name="fail")
def fail() -> None:
    raise KeyError("business")


@pytest.mark.parametrize("processor", ["simple", "batch"])
@pytest.mark.otelfin_internal_errors
def test_exporter_raising_on_export_and_shutdown(
    processor: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Results and exceptions stay the host's; failures are counted and logged once."""
    exporter = ExplodingExporter()
    otelfin.configure("svc", span_exporter=exporter, span_processor=processor)
    with caplog.at_level(logging.WARNING, logger="otelfin"):
        for i in range(20):
            assert charge(i) == i * 2
        with pytest.raises(KeyError) as info:
            fail()
        assert info.value.args == ("business",)
        otelfin.shutdown()  # must not raise although the exporter does
    counts = _internal.internal_error_counts()
    assert counts["exporter.export[ExplodingExporter]"] >= 1
    assert counts["exporter.shutdown[ExplodingExporter]"] == 1
    assert exporter.calls >= 1
    dropped, failures = _internal.export_health()
    assert failures["exception"] == exporter.calls
    assert dropped["export_failed"] == 21  # every span of every raising export
    logged = [r.getMessage() for r in caplog.records if "exporter.export" in r.getMessage()]
    assert len(logged) == 1
    assert "collector unreachable" in logged[0]


@pytest.mark.otelfin_internal_errors
def test_processor_raising_in_on_end_is_contained() -> None:
    """A span processor that raises (on the app's provider) does not reach the caller."""
    reset_tracer_provider()
    provider = TracerProvider()
    provider.add_span_processor(ExplodingProcessor())
    trace.set_tracer_provider(provider)
    otelfin.configure("svc")
    assert charge(4) == 8
    counts = _internal.internal_error_counts()
    assert counts.get("traced.start", 0) + counts.get("traced.end", 0) >= 1
    provider.shutdown()


@pytest.mark.otelfin_internal_errors
def test_broken_attribute_callable_is_contained(caplog: pytest.LogCaptureFixture) -> None:
    """An attribute callable that raises is skipped; the call and the span go on."""

    @otelfin.traced(attributes={"bad": lambda *a, **k: 1 / 0, "amount": "amount"})
    def pay(amount: int) -> int:
        return amount

    from otelfin.testing import configured_for_test

    with configured_for_test() as spans, caplog.at_level(logging.WARNING, logger="otelfin"):
        assert pay(3) == 3
        assert pay(4) == 4
    (a, _) = spans.get_finished_spans()
    assert a.attributes["amount"] == 3 and "bad" not in a.attributes
    key = next(k for k in _internal.internal_error_counts() if k.startswith("traced.attribute"))
    assert _internal.internal_error_counts()[key] == 2
    assert sum("ZeroDivisionError" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.otelfin_internal_errors
def test_broken_observer_is_contained() -> None:
    """A failing call observer (metrics hook) does not change results or exceptions."""
    from otelfin.instrument import set_call_observer
    from otelfin.testing import configured_for_test

    class Observer:
        def bind(self, spec: object) -> object:
            def hook(*args: object) -> None:
                raise RuntimeError("metrics broke")

            return hook

    with configured_for_test() as spans:
        previous = set_call_observer(Observer())  # type: ignore[arg-type]
        try:
            assert charge(2) == 4
            with pytest.raises(KeyError):
                fail()
        finally:
            set_call_observer(previous)
    assert len(spans.get_finished_spans()) == 2
    counts = _internal.internal_error_counts()
    assert counts["traced.observer"] == 1
    assert counts["traced.record_error"] == 1


@pytest.mark.otelfin_internal_errors
def test_tracer_start_failure_falls_back_to_plain_call() -> None:
    """If starting a span fails, the function still runs exactly once."""

    class BrokenProvider(TracerProvider):
        def get_tracer(self, *args: object, **kwargs: object):  # type: ignore[override]
            raise RuntimeError("no tracer")

    calls = []

    @otelfin.traced(tracer_provider=BrokenProvider())
    def once() -> str:
        calls.append(1)
        return "ok"

    assert once() == "ok"
    assert calls == [1]
    assert _internal.internal_error_counts()["traced.start"] == 1
