"""@traced on an unsampled span: still observed, context still current, host unchanged."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan

from otelfin import traced
from otelfin.instrument import TracedSpec, set_call_observer


class Recorder:
    """A call observer that keeps every call it is told about."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool, BaseException | None]] = []

    def bind(self, spec: TracedSpec) -> Any:
        def hook(
            duration: float,
            attributes: Mapping[str, Any] | None,
            error_code: str | None,
            exc: BaseException | None,
            span: Any,
            outcome: str,
            entry: bool,
        ) -> None:
            assert duration >= 0.0
            self.calls.append((spec.name, outcome, entry, exc))

        return hook


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    observer = Recorder()
    previous = set_call_observer(observer)
    try:
        yield observer
    finally:
        set_call_observer(previous)


@pytest.fixture
def unsampled() -> TracerProvider:
    return TracerProvider(sampler=ALWAYS_OFF)


def test_unsampled_call_is_observed_and_current(
    recorder: Recorder, unsampled: TracerProvider
) -> None:
    """An unsampled call is reported to the observer once, and its span is current inside it
    (a nested call joins its trace as an internal call), then the caller's context is back."""
    seen: dict[str, Any] = {}

    @traced(name="inner", tracer_provider=unsampled)
    def inner() -> int:
        seen["inner"] = trace.get_current_span().get_span_context()
        return 2

    @traced(name="outer", tracer_provider=unsampled)
    def outer(x: int) -> int:
        span = trace.get_current_span()
        seen["outer_type"] = type(span)
        seen["outer"] = span.get_span_context()
        return x + inner()

    before = trace.get_current_span()
    assert outer(1) == 3
    assert trace.get_current_span() is before
    assert seen["outer_type"] is NonRecordingSpan
    assert seen["outer"].is_valid and not seen["outer"].trace_flags.sampled
    assert seen["inner"].trace_id == seen["outer"].trace_id
    assert seen["inner"].span_id != seen["outer"].span_id
    assert recorder.calls == [("inner", "ok", False, None), ("outer", "ok", True, None)]


def test_unsampled_exception_is_unchanged_and_observed(
    recorder: Recorder, unsampled: TracerProvider
) -> None:
    """The same exception object leaves an unsampled call, counted as an error, and the
    caller's context is restored."""
    boom = ValueError("boom")

    @traced(name="fails", tracer_provider=unsampled)
    def fails() -> None:
        raise boom

    before = trace.get_current_span()
    with pytest.raises(ValueError) as caught:
        fails()
    assert caught.value is boom
    assert boom.__context__ is None
    assert trace.get_current_span() is before
    assert recorder.calls == [("fails", "error", True, boom)]


class BrokenTracer:
    def start_span(self, *args: object, **kwargs: object) -> Any:
        raise RuntimeError("tracer broken")


class BrokenProvider(TracerProvider):
    def get_tracer(self, *args: object, **kwargs: object) -> Any:
        return BrokenTracer()


@pytest.mark.otelfin_internal_errors
def test_failed_start_runs_the_call_untraced(recorder: Recorder) -> None:
    """When the span cannot start, the call still runs once, untraced and unobserved, and an
    exception it raises carries no trace of otelfin's failure (``__context__`` is None)."""
    calls: list[int] = []

    @traced(name="untraced", tracer_provider=BrokenProvider())
    def work(x: int) -> int:
        calls.append(x)
        if x < 0:
            raise KeyError(x)
        return x * 2

    assert work(4) == 8
    with pytest.raises(KeyError) as caught:
        work(-1)
    assert caught.value.__context__ is None
    assert calls == [4, -1]
    assert recorder.calls == []
