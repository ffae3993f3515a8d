"""Requests are requests (entry operations observed once) and outcomes ok / declined / error."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from prometheus_client import CollectorRegistry

import otelfin
from otelfin import _outcome
from otelfin.catalogue import lint_files, load_catalogue
from otelfin.metrics import DURATION_METRIC
from otelfin.metrics.names import DECLINES, ERRORS, FUNCTION_DURATION
from otelfin.testing import configured_for_test

SERVICE = "otelfin-test"


def _count(registry: CollectorRegistry, metric: str, operation: str, outcome: str = "ok") -> float:
    labels = {"service": SERVICE, "operation": operation, "outcome": outcome, "channel": ""}
    return registry.get_sample_value(f"{metric}_count", labels) or 0.0


@otelfin.traced(name="risk.score")
def score() -> int:
    return 1


@otelfin.traced(name="acquirer.authorise")
def authorise(decline: bool) -> None:
    score()
    if decline:
        raise otelfin.OtelfinError("PAY-012", "Insufficient balance")


@otelfin.traced(name="settle.batch")
def batch(n: int) -> None:
    for _ in range(n):
        score()


def test_root_call_is_a_request_and_inner_calls_are_functions(
    prom_registry: CollectorRegistry,
) -> None:
    """A @traced call starting a local trace is one request; the calls inside it are functions."""
    batch(3)
    assert _count(prom_registry, DURATION_METRIC, "settle.batch") == 1
    assert _count(prom_registry, DURATION_METRIC, "risk.score") == 0
    assert _count(prom_registry, FUNCTION_DURATION, "risk.score") == 3
    assert _count(prom_registry, FUNCTION_DURATION, "settle.batch") == 0
    assert (
        prom_registry.get_sample_value(
            "otelfin_requests_total",
            {"service": SERVICE, "operation": "settle.batch", "outcome": "ok", "channel": ""},
        )
        == 1
    )


def test_remote_parent_still_makes_a_request(prom_registry: CollectorRegistry) -> None:
    """A call whose only parent came over the wire (a worker task) is a request."""
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
    try:
        score()
    finally:
        context.detach(token)
    assert _count(prom_registry, DURATION_METRIC, "risk.score") == 1
    assert _count(prom_registry, FUNCTION_DURATION, "risk.score") == 0


def test_server_span_counts_once_with_handlers_inside(prom_registry: CollectorRegistry) -> None:
    """A framework SERVER span is the request; a @traced(kind="server") handler under it is not."""

    @otelfin.traced(name="handler", kind="server")
    def handler() -> None:
        authorise(False)

    tracer = trace.get_tracer("framework")
    with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER):
        handler()
    assert _count(prom_registry, DURATION_METRIC, "POST /pay") == 1
    assert _count(prom_registry, DURATION_METRIC, "handler") == 0
    assert _count(prom_registry, FUNCTION_DURATION, "handler") == 1
    assert _count(prom_registry, FUNCTION_DURATION, "acquirer.authorise") == 1
    assert _count(prom_registry, DURATION_METRIC, "acquirer.authorise") == 0


def test_declined_call_is_not_an_error(prom_registry: CollectorRegistry) -> None:
    """A warning-severity code makes a declined request: declines counter, no errors counter."""
    with pytest.raises(otelfin.OtelfinError):
        authorise(True)
    assert _count(prom_registry, DURATION_METRIC, "acquirer.authorise", "declined") == 1
    assert _count(prom_registry, DURATION_METRIC, "acquirer.authorise", "error") == 0
    coded = {"service": SERVICE, "operation": "acquirer.authorise", "error_code": "PAY-012"}
    assert prom_registry.get_sample_value(DECLINES, {**coded, "channel": ""}) == 1
    assert prom_registry.get_sample_value(ERRORS, {**coded, "channel": ""}) is None


def test_function_failures_do_not_count_as_request_errors(
    prom_registry: CollectorRegistry,
) -> None:
    """An internal call's exception that the request handles is not a request error."""

    @otelfin.traced(name="fragile")
    def fragile() -> None:
        raise KeyError("x")

    @otelfin.traced(name="job")
    def job() -> None:
        with contextlib.suppress(KeyError):
            fragile()

    job()
    assert _count(prom_registry, DURATION_METRIC, "job") == 1
    assert _count(prom_registry, FUNCTION_DURATION, "fragile", "error") == 1
    assert not [
        m for m in prom_registry.collect() if m.name == ERRORS.removesuffix("_total") and m.samples
    ]


def test_span_outcomes_and_status(spans: InMemorySpanExporter) -> None:
    """@traced spans: ok, declined (status UNSET, code kept), error (status ERROR)."""

    @otelfin.traced(name="boom")
    def boom() -> None:
        raise RuntimeError("down")

    authorise(False)
    with pytest.raises(otelfin.OtelfinError):
        authorise(True)
    with pytest.raises(RuntimeError):
        boom()
    by_name: dict[str, list[tuple[str, StatusCode]]] = {}
    for span in spans.get_finished_spans():
        assert span.attributes is not None
        outcome = span.attributes[_outcome.ATTRIBUTE]
        by_name.setdefault(span.name, []).append((str(outcome), span.status.status_code))
    assert by_name["acquirer.authorise"] == [
        ("ok", StatusCode.UNSET),
        ("declined", StatusCode.UNSET),
    ]
    assert by_name["boom"] == [("error", StatusCode.ERROR)]
    declined = [s for s in spans.get_finished_spans() if s.name == "acquirer.authorise"][1]
    assert declined.attributes is not None
    assert declined.attributes["otelfin.error_code"] == "PAY-012"


def test_channel_known_inside_reaches_the_request_span(
    prom_registry: CollectorRegistry,
) -> None:
    """A payment.channel argument of an internal function labels the SERVER span's series."""

    @otelfin.traced(name="process", attributes={"payment.channel": "channel"})
    def process(channel: str) -> None:
        score()

    tracer = trace.get_tracer("framework")
    with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as server:
        process("wallet")
    assert server.attributes is not None  # type: ignore[attr-defined]
    assert server.attributes["payment.channel"] == "wallet"  # type: ignore[attr-defined]
    labels = {"service": SERVICE, "operation": "POST /pay", "outcome": "ok"}
    assert (
        prom_registry.get_sample_value(f"{DURATION_METRIC}_count", {**labels, "channel": "wallet"})
        == 1
    )


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(_outcome.OutcomeSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.mark.parametrize(
    ("kind", "attributes", "status", "expected", "final_status"),
    [
        (SpanKind.SERVER, {"http.response.status_code": 200}, None, "ok", StatusCode.UNSET),
        (SpanKind.SERVER, {"http.response.status_code": 402}, None, "declined", StatusCode.UNSET),
        (SpanKind.SERVER, {"http.status_code": 404}, None, "declined", StatusCode.UNSET),
        (SpanKind.SERVER, {"http.response.status_code": 503}, None, "error", StatusCode.UNSET),
        (SpanKind.SERVER, {"otelfin.error_code": "PAY-012"}, None, "declined", StatusCode.UNSET),
        (SpanKind.SERVER, {"otelfin.error_code": "DB-003"}, None, "error", StatusCode.UNSET),
        (
            SpanKind.SERVER,
            {"otelfin.error_code": "PAY-012", "http.response.status_code": 500},
            StatusCode.ERROR,
            "error",
            StatusCode.ERROR,
        ),
        (SpanKind.SERVER, {}, StatusCode.ERROR, "error", StatusCode.ERROR),
        # gRPC FAILED_PRECONDITION (9) is an answer; INTERNAL (13) a failure.
        (SpanKind.SERVER, {"rpc.grpc.status_code": 9}, StatusCode.ERROR, "declined", StatusCode.OK),
        (
            SpanKind.SERVER,
            {"rpc.grpc.status_code": 13},
            StatusCode.ERROR,
            "error",
            StatusCode.ERROR,
        ),
        # An HTTP client's 4xx: the instrumentation says ERROR, the peer said no.
        (
            SpanKind.CLIENT,
            {"http.response.status_code": 402},
            StatusCode.ERROR,
            "declined",
            StatusCode.OK,
        ),
        (SpanKind.CONSUMER, {}, None, "ok", StatusCode.UNSET),
    ],
)
def test_transport_span_outcome_set_before_end(
    kind: SpanKind,
    attributes: dict[str, object],
    status: StatusCode | None,
    expected: str,
    final_status: StatusCode,
) -> None:
    """Spans other instrumentations make carry otelfin.outcome; declined is never ERROR."""
    provider, exporter = _provider()
    seen: list[object] = []

    class Reader(SpanProcessor):
        def on_end(self, span: object) -> None:
            seen.append(span.attributes.get(_outcome.ATTRIBUTE))  # type: ignore[attr-defined]

    provider.add_span_processor(Reader())
    span = provider.get_tracer("official").start_span("op", kind=kind)
    span.set_attributes(attributes)  # type: ignore[arg-type]
    if status is not None:
        span.set_status(status)
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert finished.attributes is not None
    assert finished.attributes[_outcome.ATTRIBUTE] == expected
    assert finished.status.status_code is final_status
    assert seen == [expected]  # every processor's on_end sees it


def test_unsampled_server_span_gets_its_outcome() -> None:
    """With a 0% head sampler the measured span is still recorded and carries its outcome."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from otelfin import _sampling

    with configured_for_test() as exporter:
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        provider.sampler = _sampling.wrap(ALWAYS_OFF)  # what configure() does with a sampler
        tracer = provider.get_tracer("official")
        with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as span:
            span.set_attribute("http.response.status_code", 402)
        assert span.attributes[_outcome.ATTRIBUTE] == "declined"  # type: ignore[attr-defined]
        assert not span.get_span_context().trace_flags.sampled
        assert exporter.get_finished_spans() == ()


def test_catalogue_outcome_field(tmp_path: Path) -> None:
    """``outcome: declined`` overrides an error severity; a bad value is a lint finding."""
    good = tmp_path / "codes.yaml"
    good.write_text(
        "codes:\n"
        "  ACQ-001:\n"
        "    message: Issuer said no\n"
        "    severity: error\n"
        "    outcome: declined\n"
        "  ACQ-002:\n"
        "    message: Acquirer down\n"
        "    severity: warning\n"
        "    outcome: error\n"
    )
    catalogue = load_catalogue(good)
    assert catalogue["ACQ-001"].outcome == "declined"
    assert catalogue["ACQ-002"].outcome == "error"
    assert catalogue["PAY-012"].outcome == "declined"  # warning severity, no field
    bad = tmp_path / "bad.yaml"
    bad.write_text("codes:\n  ACQ-003:\n    message: Odd\n    outcome: maybe\n")
    (finding,) = lint_files([bad])
    assert finding.line == 4 and "outcome" in finding.reason


def test_handled_decline_names_the_request(prom_registry: CollectorRegistry) -> None:
    """A handler that catches an internal call's decline and answers 402 itself: the request
    span and the declines counter carry the code; a request that recovered (200) carries none."""
    tracer = trace.get_tracer("framework")
    spans_seen = []
    for status in (402, 200):
        with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as server:
            with contextlib.suppress(otelfin.OtelfinError):
                authorise(True)
            server.set_attribute("http.response.status_code", status)
        spans_seen.append(server)
    declined, recovered = (s.attributes for s in spans_seen)  # type: ignore[attr-defined]
    assert declined["otelfin.error_code"] == "PAY-012"
    assert declined[_outcome.ATTRIBUTE] == "declined"
    assert "otelfin.error_code" not in recovered and recovered[_outcome.ATTRIBUTE] == "ok"
    labels = {"service": SERVICE, "operation": "POST /pay", "channel": ""}
    assert prom_registry.get_sample_value(DECLINES, {**labels, "error_code": "PAY-012"}) == 1


def test_channel_lifts_from_deep_inside_to_the_request(spans: InMemorySpanExporter) -> None:
    """Two levels down, under a framework span or a @traced root: the request's span gets it."""

    @otelfin.traced(name="authorise.deep", attributes={"payment.channel": "channel"})
    def deep(channel: str) -> None:
        return None

    @otelfin.traced(name="middle")
    def middle(channel: str) -> None:
        deep(channel)

    @otelfin.traced(name="job")
    def job(channel: str) -> None:
        middle(channel)

    tracer = trace.get_tracer("framework")
    with tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER):
        middle("wallet")
    job("card")
    by_name = {s.name: s.attributes or {} for s in spans.get_finished_spans()}
    assert by_name["POST /pay"]["payment.channel"] == "wallet"
    assert by_name["job"]["payment.channel"] == "card"
    assert "payment.channel" not in by_name["middle"]
