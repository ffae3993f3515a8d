"""Hostile inputs to @traced and the NATS transport: the host's result and exception win."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from otelfin import traced
from otelfin.testing import configured_for_test


class UnprintableError(Exception):
    """An exception whose message cannot be rendered."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


class Unprintable:
    """An argument whose text cannot be rendered."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class CodeRaises(Exception):
    """An exception whose ``error_code`` property raises."""

    @property
    def error_code(self) -> str:
        raise RuntimeError("broken property")


def test_unprintable_exception_counted(prom_registry: CollectorRegistry) -> None:
    """An exception whose __str__ raises: same object propagates, span ERROR, error counted."""
    error = UnprintableError()

    @traced
    def charge() -> None:
        raise error

    with pytest.raises(UnprintableError) as caught:
        charge()
    assert caught.value is error
    labels = {"service": "otelfin-test", "operation": charge.__qualname__, "channel": ""}
    count = prom_registry.get_sample_value(
        "otelfin_request_duration_seconds_count", {**labels, "outcome": "error"}
    )
    errors = prom_registry.get_sample_value(
        "otelfin_request_errors_total", {**labels, "error_code": "unclassified"}
    )
    assert count == 1 and errors == 1


def test_unprintable_exception_span_status_and_event(spans: InMemorySpanExporter) -> None:
    """The span of an unprintable exception has status ERROR and an exception event."""

    @traced
    def charge() -> None:
        raise UnprintableError()

    with pytest.raises(UnprintableError):
        charge()
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes is not None
    assert "unprintable" in str(span.events[0].attributes["exception.message"])


def test_error_code_property_that_raises(spans: InMemorySpanExporter) -> None:
    """An ``error_code`` property that raises is treated as no code; the span still fails."""

    @traced
    def charge() -> None:
        raise CodeRaises("declined")

    with pytest.raises(CodeRaises):
        charge()
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"].endswith("CodeRaises")


def test_record_args_with_unprintable_argument_keeps_span(spans: InMemorySpanExporter) -> None:
    """record_args=True with an argument whose __str__ raises: the call still gets its span."""

    @traced(record_args=True)
    def charge(amount: Any, note: str) -> str:
        return note

    assert charge(Unprintable(), note="ok") == "ok"
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["code.arg.note"] == "ok"
    assert span.attributes["code.arg.amount"] == "<unprintable Unprintable>"


@pytest.mark.otelfin_internal_errors
def test_nats_callback_unprintable_exception_propagates_unchanged() -> None:
    """A NATS subscriber callback raising an unprintable exception: that exception escapes."""
    pytest.importorskip("nats")
    from otelfin.instrument.transports.nats import _traced_callback

    error = UnprintableError()

    async def handler(msg: Any) -> None:
        raise error

    wrapped = _traced_callback(handler)
    msg = SimpleNamespace(headers={"traceparent": "garbage"}, subject="pay.settle", data=b"x")
    with configured_for_test() as exporter:
        with pytest.raises(UnprintableError) as caught:
            asyncio.run(wrapped(msg))
        finished = exporter.get_finished_spans()
    assert caught.value is error
    assert [s.name for s in finished] == ["process pay.settle"]
    assert finished[0].status.status_code is StatusCode.ERROR


@pytest.mark.otelfin_internal_errors
def test_internal_failure_report_masks_card_numbers(caplog: pytest.LogCaptureFixture) -> None:
    """otelfin's own failure warning (seen by the app's root handlers too) masks card numbers."""
    pan = "4111111111111111"

    def broken(card: str) -> str:
        raise ValueError(f"bad card {card}")

    @traced(attributes={"payment.card": broken})
    def charge(card: str) -> int:
        return 1

    with configured_for_test(stdlib_bridge=False), caplog.at_level("WARNING", logger="otelfin"):
        assert charge(pan) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "otelfin"]
    assert any("XXXXXXXXXXXX1111" in m for m in messages)
    assert not any(pan in m for m in messages)


class HostileAttributes(Exception):
    """A coded exception whose ``attributes`` property raises."""

    error_code = "PAY-012"

    @property
    def attributes(self) -> dict[str, Any]:
        raise RuntimeError("broken attributes")


@pytest.mark.otelfin_internal_errors
def test_error_attributes_property_that_raises(spans: InMemorySpanExporter) -> None:
    """A coded exception whose ``attributes`` raises: code and outcome recorded, same object."""
    error = HostileAttributes("declined")

    @traced
    def charge() -> None:
        raise error

    with pytest.raises(HostileAttributes) as caught:
        charge()
    assert caught.value is error
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None and span.attributes["otelfin.error_code"] == "PAY-012"
    assert span.attributes["otelfin.outcome"] == "declined"  # PAY-012 is a warning
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3), GeneratorExit()])
def test_base_exceptions_propagate_and_end_span(
    spans: InMemorySpanExporter, error: BaseException
) -> None:
    """KeyboardInterrupt/SystemExit/GeneratorExit: the same object escapes, the span ends."""

    @traced
    def work() -> None:
        raise error

    with pytest.raises(BaseException) as caught:
        work()
    assert caught.value is error
    (span,) = spans.get_finished_spans()
    assert span.end_time is not None and span.status.status_code is StatusCode.ERROR


def test_cancelled_coroutine_ends_span_and_propagates(spans: InMemorySpanExporter) -> None:
    """A cancelled @traced coroutine re-raises CancelledError and its span still ends."""

    @traced
    async def wait() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.ensure_future(wait())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (span,) = spans.get_finished_spans()
    assert span.end_time is not None
    assert span.attributes is not None
    assert span.attributes["error.type"] == "asyncio.exceptions.CancelledError"


def test_non_str_error_code_is_unclassified(prom_registry: CollectorRegistry) -> None:
    """An exception whose error_code is an int is counted as unclassified, never crashes."""

    class IntCode(Exception):
        error_code = 12345

    @traced
    def charge() -> None:
        raise IntCode("x")

    with pytest.raises(IntCode):
        charge()
    labels = {"service": "otelfin-test", "operation": charge.__qualname__, "channel": ""}
    value = prom_registry.get_sample_value(
        "otelfin_request_errors_total", {**labels, "error_code": "unclassified"}
    )
    assert value == 1


def test_dict_argument_secrets_redacted_in_attributes(spans: InMemorySpanExporter) -> None:
    """A dict argument recorded as a span attribute has its secret-named entries redacted."""

    @traced(attributes={"payment.form": "form"}, record_args=True)
    def charge(form: dict[str, str]) -> str:
        return form["cvv"]

    assert charge({"cvv": "123", "password": "hunter2", "amount": "9.99"}) == "123"
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    for key in ("payment.form", "code.arg.form"):
        text = str(span.attributes[key])
        assert "hunter2" not in text and "'123'" not in text and "9.99" in text
