"""Tail sampling in the process: keep rules, whole local traces, bounded buffer, kept_by marks."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from prometheus_client import CollectorRegistry

import otelfin
from otelfin import _internal, _sampling, _settings
from otelfin._keep import KEPT_BY, keep_rules, outcome_of
from otelfin._tail import DROPPED_SPANS, TailSamplingProcessor
from otelfin.metrics import names
from otelfin.testing import configured_for_test

SERVER_ATTRS = {"http.request.method": "POST", "http.route": "/payments"}


@pytest.fixture
def head_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The head sampler drops every trace: only keep rules can export one."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")


def _request(
    *,
    status: int = 200,
    fail: bool = False,
    seconds: float = 0.01,
    parent: SpanContext | None = None,
) -> int:
    """One SERVER span with an internal span and a CLIENT span under it; returns the trace id."""
    tracer = trace.get_tracer("tests.tail")
    context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
    start = 1_000_000_000_000
    root = tracer.start_span(
        "POST /payments", context, SpanKind.SERVER, dict(SERVER_ATTRS), start_time=start
    )
    with trace.use_span(root, end_on_exit=False):
        with tracer.start_as_current_span("risk.score"):
            pass
        with tracer.start_as_current_span(
            "SELECT ledger", kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}
        ):
            pass
    root.set_attribute("http.response.status_code", status)
    if fail:
        root.set_status(StatusCode.ERROR)
    root.end(end_time=start + int(seconds * 1e9))
    return root.get_span_context().trace_id


def _by_trace(exporter: InMemorySpanExporter) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for span in exporter.get_finished_spans():
        assert span.context is not None
        out.setdefault(span.context.trace_id, []).append(span.name)
    return out


def test_kept_traces_are_exported_whole_and_marked(head_off: None) -> None:
    """Error, declined and slow requests export all three spans, marked; an ok one exports none."""
    with configured_for_test(keep_traces="error,declined,slow", metrics_slo=0.25) as exporter:
        error = _request(status=500)
        failed = _request(fail=True)
        declined = _request(status=402)
        slow = _request(seconds=0.3)
        ok = _request()
        on_slo = _request(seconds=0.25)
        traces = _by_trace(exporter)
    assert set(traces) == {error, failed, declined, slow}, (ok, on_slo)
    for tid in (error, failed, declined, slow):
        assert sorted(traces[tid]) == ["POST /payments", "SELECT ledger", "risk.score"]
    reasons = {
        s.context.trace_id: s.attributes[KEPT_BY]
        for s in exporter.get_finished_spans()
        if s.context is not None and s.attributes is not None
    }
    assert reasons == {error: "error", failed: "error", declined: "declined", slow: "slow"}
    assert all(s.context.trace_flags.sampled for s in exporter.get_finished_spans())  # type: ignore[union-attr]


def test_only_the_named_reasons_keep(head_off: None) -> None:
    """keep_traces=error keeps a 5xx, not a decline or a slow request."""
    with configured_for_test(keep_traces="error") as exporter:
        error = _request(status=503)
        _request(status=402)
        _request(seconds=5)
        assert set(_by_trace(exporter)) == {error}


def test_operation_slo_decides_slow(head_off: None) -> None:
    """The operation's own SLO wins over metrics_slo."""
    with configured_for_test(
        keep_traces="slow", metrics_slo=1.0, metrics_operation_slos="POST /payments=0.05"
    ) as exporter:
        slow = _request(seconds=0.06)
        assert set(_by_trace(exporter)) == {slow}


def test_head_sampled_spans_pass_through_marked_sampled() -> None:
    """Head-sampled traces export as before, each span marked kept_by=sampled."""
    with configured_for_test(keep_traces="error") as exporter:
        _request()
        spans = exporter.get_finished_spans()
    assert len(spans) == 3
    assert {(s.attributes or {}).get(KEPT_BY) for s in spans} == {"sampled"}


def test_without_keep_rules_nothing_changes(head_off: None) -> None:
    """No keep rules: unsampled traces stay unexported, internal spans unrecorded, no mark."""
    with configured_for_test() as exporter:
        _request(status=500)
        assert exporter.get_finished_spans() == ()
        sampler = trace.get_tracer_provider().sampler  # type: ignore[attr-defined]
        assert isinstance(sampler, _sampling.RecordMeasuredSampler) and not sampler.record_all
    with configured_for_test(keep_traces="error") as exporter:
        sampler = trace.get_tracer_provider().sampler  # type: ignore[attr-defined]
        assert sampler.record_all


def test_traced_errors_and_declines_keep_their_trace(head_off: None) -> None:
    """A @traced entry call raising OtelfinError: a warning code declines, an error code fails."""

    @otelfin.traced(name="payments.charge")
    def charge(code: str | None) -> None:
        with trace.get_tracer("t").start_as_current_span("acquirer.authorise"):
            pass
        if code:
            raise otelfin.OtelfinError(code, "no")

    with configured_for_test(keep_traces="error,declined") as exporter:
        for code in ("PAY-012", "DB-003", None):
            with contextlib.suppress(otelfin.OtelfinError):
                charge(code)
        spans = exporter.get_finished_spans()
    kept = {
        (s.attributes or {}).get("otelfin.error_code"): (s.attributes or {}).get(KEPT_BY)
        for s in spans
        if s.name == "payments.charge"
    }
    assert kept == {"PAY-012": "declined", "DB-003": "error"}
    assert len(spans) == 4


def test_two_local_roots_of_one_trace_decide_together(head_off: None) -> None:
    """An in-process hop (a second local root under a remote parent) waits for the outer root."""
    tracer = trace.get_tracer("tests.tail")
    with configured_for_test(keep_traces="error") as exporter:
        outer = tracer.start_span("POST /payments", kind=SpanKind.SERVER)
        inner_parent = SpanContext(
            outer.get_span_context().trace_id,
            outer.get_span_context().span_id,
            is_remote=True,
            trace_flags=TraceFlags(0),
        )
        inner = tracer.start_span(
            "ledger.Post",
            trace.set_span_in_context(NonRecordingSpan(inner_parent)),
            SpanKind.SERVER,
        )
        inner.end()  # fine on its own: the trace is not decided yet
        assert exporter.get_finished_spans() == ()
        outer.set_status(StatusCode.ERROR)
        outer.end()
        names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["POST /payments", "ledger.Post"]


def test_spans_ending_after_the_decision_follow_it(head_off: None) -> None:
    """An async child outliving its kept root is exported at once; one of a dropped root is not."""
    tracer = trace.get_tracer("tests.tail")
    with configured_for_test(keep_traces="error") as exporter:
        for failed in (True, False):
            root = tracer.start_span("POST /payments", kind=SpanKind.SERVER)
            with trace.use_span(root, end_on_exit=False):
                late = tracer.start_span("settle.later")
            if failed:
                root.set_status(StatusCode.ERROR)
            root.end()
            late.end()
        spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["POST /payments", "settle.later"]
    assert {(s.attributes or {}).get(KEPT_BY) for s in spans} == {"error"}


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Tail:
    """A bare tail processor (small limits, fake clock) on its own provider, head sampling off."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.clock = _Clock()
        rules = keep_rules(["error"])
        assert rules is not None
        self.processor = TailSamplingProcessor(
            SimpleSpanProcessor(self.exporter), rules, max_spans=5, max_age=10, clock=self.clock
        )
        self.provider = TracerProvider(sampler=_sampling.wrap(ALWAYS_OFF, record_all=True))
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("tests.tail")


@pytest.fixture
def tail() -> Iterator[_Tail]:
    """A bare tail processor with small limits."""
    made = _Tail()
    yield made
    made.provider.shutdown()


def test_a_full_buffer_drops_and_counts_and_never_blocks(
    tail: _Tail,
) -> None:
    """Past max_spans, spans are dropped and counted; the kept root says how many it lost."""
    processor, exporter, tracer = tail.processor, tail.exporter, tail.tracer
    root = tracer.start_span("POST /payments", kind=SpanKind.SERVER)
    with trace.use_span(root, end_on_exit=False):
        for i in range(8):
            tracer.start_span(f"step.{i}").end()
    assert processor.buffered() == (1, 5, processor.buffered()[2])
    root.set_status(StatusCode.ERROR)
    root.end()
    dropped, _ = _internal.export_health()
    assert dropped == {"tail_buffer_full": 3}
    spans = exporter.get_finished_spans()
    assert len(spans) == 6
    assert {(s.attributes or {}).get(DROPPED_SPANS) for s in spans} == {3}
    assert processor.buffered() == (0, 0, 0)


def test_old_undecided_traces_lose_their_spans_not_their_root(
    tail: _Tail,
) -> None:
    """Past max_age the waiting spans are dropped (counted); the root still decides when it ends."""
    exporter, clock, tracer = tail.exporter, tail.clock, tail.tracer
    root = tracer.start_span("POST /payments", kind=SpanKind.SERVER)
    with trace.use_span(root, end_on_exit=False):
        tracer.start_span("early").end()
        clock.now = 11.0
        tracer.start_span("late").end()  # this end sweeps "early" out
    assert _internal.export_health()[0] == {"tail_timeout": 1}
    root.set_status(StatusCode.ERROR)
    root.end()
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["POST /payments", "late"]


def test_shutdown_counts_undecided_spans(
    tail: _Tail,
) -> None:
    """Spans still waiting at shutdown are counted as dropped (reason shutdown)."""
    processor, tracer = tail.processor, tail.tracer
    root = tracer.start_span("POST /payments", kind=SpanKind.SERVER)
    with trace.use_span(root, end_on_exit=False):
        tracer.start_span("a").end()
        tracer.start_span("b").end()
    processor.close(100)
    assert _internal.export_health()[0] == {"shutdown": 2}


def test_concurrent_requests_keep_their_own_traces(head_off: None) -> None:
    """Eight threads, 50 requests each, every fifth failing: exactly the failing ones exported."""
    with configured_for_test(keep_traces="error") as exporter:
        wanted: set[int] = set()
        lock = threading.Lock()

        def work() -> None:
            for i in range(50):
                tid = _request(status=500 if i % 5 == 0 else 200)
                if i % 5 == 0:
                    with lock:
                        wanted.add(tid)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        traces = _by_trace(exporter)
    assert set(traces) == wanted and len(wanted) == 80
    assert all(len(names) == 3 for names in traces.values())


def test_outcome_is_the_shared_rule_set() -> None:
    """otelfin.outcome wins (below a 5xx); without it, the code's outcome, the HTTP status."""
    error, unset = StatusCode.ERROR, StatusCode.UNSET
    assert outcome_of({"otelfin.outcome": "declined"}, error) == "declined"
    assert outcome_of({"otelfin.error_code": "PAY-012"}, error) == "declined"
    assert outcome_of({"otelfin.error_code": "DB-003"}, unset) == "error"
    assert outcome_of({"http.response.status_code": 404}, unset) == "declined"
    assert outcome_of({"http.status_code": 502, "otelfin.outcome": "ok"}, unset) == "error"
    assert outcome_of({}, error) == "error"
    assert outcome_of({}, unset) == "ok"


@pytest.mark.parametrize("value", ["errors", "error,fast", "1"])
def test_bad_keep_traces_is_a_value_error(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reason outside error/declined/slow fails configure() with ValueError, in code or env."""
    with pytest.raises(ValueError, match="keep_traces"):
        otelfin.configure("svc", keep_traces=value)
    monkeypatch.setenv("OTELFIN_KEEP_TRACES", value)
    with pytest.raises(ValueError, match="OTELFIN_KEEP_TRACES"):
        otelfin.configure("svc")


def test_keep_traces_settings_parse() -> None:
    """all, none, lists and the limits resolve through the settings table."""
    values = _settings.resolve({"keep_traces": "all"})
    assert values["keep_traces"] == ("error", "declined", "slow")
    assert _settings.resolve({"keep_traces": "none"})["keep_traces"] == ()
    env = {"OTELFIN_KEEP_TRACES": "Slow, error", "OTELFIN_KEEP_TRACES_MAX_SPANS": "10"}
    values = _settings.resolve({}, env)
    assert values["keep_traces"] == ("slow", "error")
    assert values["keep_traces_max_spans"] == 10
    with pytest.raises(ValueError, match="OTELFIN_KEEP_TRACES_MAX_AGE"):
        _settings.resolve({}, {"OTELFIN_KEEP_TRACES_MAX_AGE": "0"})


def _exemplars(registry: CollectorRegistry, metric: str) -> list[tuple[float, str]]:
    found = []
    for family in registry.collect():
        if family.name != metric:
            continue
        for sample in family.samples:
            if sample.exemplar is not None:
                found.append((sample.exemplar.value, sample.exemplar.labels["trace_id"]))
    return found


def test_exemplars_name_unsampled_traces_only_when_they_are_kept(head_off: None) -> None:
    """Request-histogram exemplars name kept traces (transport and @traced roots); fast ok
    requests and the spans inside a request (function, dependency) name none unsampled."""

    @otelfin.traced(name="payments.charge")
    def charge(code: str | None) -> None:
        if code:
            raise otelfin.OtelfinError(code, "no")

    registry = CollectorRegistry()
    with configured_for_test(keep_traces="error,declined,slow", metrics_registry=registry) as exp:
        _request()  # ok, fast: not kept, no exemplar
        charge(None)
        assert _exemplars(registry, names.DURATION) == []
        error = _request(status=503)
        with contextlib.suppress(otelfin.OtelfinError):
            charge("PAY-012")
        exported = {f"{s.context.trace_id:032x}" for s in exp.get_finished_spans()}  # type: ignore[union-attr]
        found = _exemplars(registry, names.DURATION)
        assert {f"{error:032x}"} < {tid for _, tid in found} <= exported
        assert len(found) == 2
        assert _exemplars(registry, names.DEPENDENCY) == []
        assert _exemplars(registry, names.FUNCTION_DURATION) == []


def test_exemplars_keep_the_head_sampled_behaviour_without_keep_rules(head_off: None) -> None:
    """No keep rules: an unsampled error request gets no exemplar (its trace is not exported)."""
    registry = CollectorRegistry()
    with configured_for_test(metrics_registry=registry):
        _request(status=503)
        assert _exemplars(registry, names.DURATION) == []


def test_kept_spans_are_masked_like_any_other(head_off: None) -> None:
    """A card number on a buffered internal span leaves masked when its trace is kept."""
    tracer = trace.get_tracer("tests.tail")
    with configured_for_test(keep_traces="error") as exporter:
        root = tracer.start_span("POST /payments", kind=SpanKind.SERVER)
        with trace.use_span(root, end_on_exit=False):
            tracer.start_span("card.check", attributes={"note": "card 4111 1111 1111 1111"}).end()
        root.set_status(StatusCode.ERROR)
        root.end()
        (check,) = [s for s in exporter.get_finished_spans() if s.name == "card.check"]
    note = str((check.attributes or {})["note"])
    assert "4111 1111 1111 1111" not in note and note.endswith("1111"), note


def test_too_many_open_traces_forget_the_oldest_whose_root_still_decides(tail: _Tail) -> None:
    """Past max_age with more open traces than max_spans, the oldest are forgotten: their
    late children count as dropped, their root still exports alone when it is kept."""
    tracer, clock = tail.tracer, tail.clock
    roots = [tracer.start_span(f"r{i}", kind=SpanKind.SERVER) for i in range(7)]
    clock.now = 11.0
    tracer.start_span("tick", kind=SpanKind.SERVER).end()  # sweeps: 8 open > 5, then decides
    assert tail.processor.buffered()[0] == 4  # r0-r2 forgotten, "tick" decided
    with trace.use_span(roots[0], end_on_exit=False):
        tracer.start_span("late child").end()
    assert _internal.export_health()[0] == {"tail_timeout": 1}
    roots[0].set_status(StatusCode.ERROR)
    roots[0].end()
    assert [s.name for s in tail.exporter.get_finished_spans()] == ["r0"]
