"""configure()/shutdown(): idempotence, environment precedence, provider reuse, exporters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otelfin
from otelfin import _config, _exporters
from otelfin.catalogue import CatalogueError


@otelfin.traced(name="work")
def work() -> int:
    return 1


def providers_processors(provider: TracerProvider) -> tuple[object, ...]:
    return tuple(provider._active_span_processor._span_processors)


def test_configure_creates_provider_and_exports(tmp_path: Path) -> None:
    """Without a provider, configure() sets an SDK provider with service.name and exports."""
    exporter = InMemorySpanExporter()
    config = otelfin.configure("payment-gateway", span_exporter=exporter, span_processor="simple")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == "payment-gateway"
    assert config.traces_exporter == "custom"
    work()
    assert [s.name for s in exporter.get_finished_spans()] == ["work"]


def test_configure_is_idempotent() -> None:
    """A second identical call changes nothing; a changed one swaps, never stacks, processors."""
    exporter = InMemorySpanExporter()
    first = otelfin.configure("payment-gateway", span_exporter=exporter, span_processor="simple")
    provider = trace.get_tracer_provider()
    before = providers_processors(provider)
    assert (
        otelfin.configure("payment-gateway", span_exporter=exporter, span_processor="simple")
        is first
    )
    assert providers_processors(provider) == before
    other = InMemorySpanExporter()
    otelfin.configure("payment-gateway", span_exporter=other, span_processor="simple")
    assert providers_processors(provider) == before
    work()
    assert len(other.get_finished_spans()) == 1
    assert exporter.get_finished_spans() == ()


def test_reuses_application_provider() -> None:
    """An SDK provider the app already set is reused, keeping the app's own processors."""
    app_exporter = InMemorySpanExporter()
    app_provider = TracerProvider()
    app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    trace.set_tracer_provider(app_provider)
    ours = InMemorySpanExporter()
    otelfin.configure("payment-gateway", span_exporter=ours, span_processor="simple")
    assert trace.get_tracer_provider() is app_provider
    work()
    assert len(app_exporter.get_finished_spans()) == 1
    assert len(ours.get_finished_spans()) == 1
    otelfin.shutdown()
    # otelfin does not shut down a provider it does not own.
    work()
    assert len(app_exporter.get_finished_spans()) == 2


def test_environment_overrides_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """OTEL_*/OTELFIN_* variables win over arguments given in code."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTELFIN_ERROR_CODE_POLICY", "tag")
    monkeypatch.setenv("OTELFIN_METHODS_INCLUDE", "a.b:C.d, e.f:*")
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext,b3multi")
    monkeypatch.setenv("OTELFIN_PAN_MASK", "first6last4")
    monkeypatch.setenv("OTELFIN_SPANS_FILE", str(tmp_path / "spans.jsonl"))
    config = otelfin.configure("from-code", error_code_policy="raise")
    assert config.service_name == "from-env"
    assert config.error_code_policy == "tag"
    assert config.methods_include == ("a.b:C.d", "e.f:*")
    assert config.propagators == ("tracecontext", "b3multi")
    assert config.pan_mask == "first6last4"
    assert config.traces_exporter == "jsonl"


def test_otlp_selected_by_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT selects the OTLP/HTTP exporter; nothing set means none."""
    assert otelfin.configure("svc").traces_exporter == "none"
    otelfin.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    config = otelfin.configure("svc")
    assert config.traces_exporter == "otlp"
    delegate = _config._state.processor.delegate
    assert delegate is not None
    # the official OTLP/HTTP exporter (otelfin's subclass encodes in slices), built on the
    # first export (tests/test_sliced_export.py follows spans through it)
    assert isinstance(delegate.exporter.build(), OTLPSpanExporter)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service_name": "   "}, "needs service_name"),
        ({"service_name": None}, "needs service_name"),
        ({"service_name": "svc", "error_code_policy": "ignore"}, "error_code_policy"),
        ({"service_name": "svc", "metrics_port": 70000}, "not a port"),
        ({"service_name": "svc", "traces_exporter": "zipkin"}, "traces exporter"),
        ({"service_name": "svc", "pan_mask": "none"}, "pan_mask"),
        ({"service_name": "svc", "log_level": "loud"}, "log_level"),
    ],
)
def test_bad_settings_fail_at_startup(kwargs: dict[str, object], message: str) -> None:
    """Configuration mistakes raise a clear ValueError from configure()."""
    with pytest.raises(ValueError, match=message):
        otelfin.configure(**kwargs)  # type: ignore[arg-type]


def test_bad_catalogue_fails_with_file_and_line(tmp_path: Path) -> None:
    """configure(catalogue=bad file) raises CatalogueError naming file:line."""
    bad = tmp_path / "codes.yaml"
    bad.write_text("codes:\n  PAY-1: {message: x}\n")
    with pytest.raises(CatalogueError, match=rf"{bad}:2: bad code format"):
        otelfin.configure("svc", catalogue=bad)


def test_service_catalogue_drives_business_errors(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    """A service catalogue loaded by configure() decides whether a code is a business outcome."""
    path = tmp_path / "codes.yaml"
    path.write_text("codes:\n  WALLET-001: {message: Wallet locked, severity: info}\n")
    otelfin.configure("otelfin-test", span_exporter=spans, span_processor="simple", catalogue=path)

    @otelfin.traced
    def pay() -> None:
        raise otelfin.OtelfinError("WALLET-001", "locked")

    with pytest.raises(otelfin.OtelfinError):
        pay()
    (span,) = spans.get_finished_spans()
    assert "exception.stacktrace" not in span.events[0].attributes


def test_jsonl_exporter_writes_otlp_json(tmp_path: Path) -> None:
    """The JSONL exporter writes OTLP/JSON: hex ids, parent ids, string nanos, resource."""
    path = tmp_path / "out" / "spans.jsonl"
    otelfin.configure("payment-gateway", spans_file=path, span_processor="simple")

    @otelfin.traced(name="parent")
    def parent() -> None:
        work()

    parent()
    otelfin.shutdown()
    lines = path.read_text().splitlines()
    spans = []
    for line in lines:
        doc = json.loads(line)
        (rs,) = doc["resourceSpans"]
        attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
        assert attrs["service.name"] == {"stringValue": "payment-gateway"}
        for ss in rs["scopeSpans"]:
            assert ss["scope"]["name"] == "otelfin"
            spans.extend(ss["spans"])
    by_name = {s["name"]: s for s in spans}
    assert set(by_name) == {"parent", "work"}
    assert len(by_name["work"]["traceId"]) == 32 and len(by_name["work"]["spanId"]) == 16
    assert by_name["work"]["parentSpanId"] == by_name["parent"]["spanId"]
    assert int(by_name["work"]["endTimeUnixNano"]) >= int(by_name["work"]["startTimeUnixNano"])
    assert by_name["parent"]["kind"] == 1


def test_shutdown_without_configure_and_twice() -> None:
    """shutdown() is safe before configure() and when called repeatedly."""
    otelfin.shutdown()
    otelfin.configure("svc")
    otelfin.shutdown()
    otelfin.shutdown()
    assert otelfin.get_config() is None


def test_reconfigure_after_shutdown_exports_again() -> None:
    """configure() after shutdown() works: the provider gets a fresh delegate processor."""
    first = InMemorySpanExporter()
    otelfin.configure("svc", span_exporter=first, span_processor="simple")
    otelfin.shutdown()
    second = InMemorySpanExporter()
    otelfin.configure("svc", span_exporter=second, span_processor="simple")
    work()
    assert len(second.get_finished_spans()) == 1


def test_batch_processor_is_default_and_flushed_by_shutdown() -> None:
    """The default BatchSpanProcessor buffers; shutdown() flushes it to the exporter."""
    exporter = InMemorySpanExporter()
    otelfin.configure("svc", span_exporter=exporter)
    delegate = _config._state.processor.delegate
    assert isinstance(delegate, _exporters.ExportPipeline)
    assert type(delegate.processor).__name__ == "BatchSpanProcessor"
    assert isinstance(delegate.processor.span_exporter, _exporters.GuardedExporter)
    for _ in range(5):
        work()
    otelfin.shutdown()
    assert len(exporter.get_finished_spans()) == 5


def test_shutdown_flushes_before_the_scrubber_is_removed() -> None:
    """Spans still buffered at shutdown() are exported masked, not raw."""
    exporter = InMemorySpanExporter()
    otelfin.configure("svc", span_exporter=exporter)  # batch processor: spans wait in a queue

    @otelfin.traced(attributes={"payment.note": "note"})
    def pay(note: str) -> None:
        pass

    pay("card 4111 1111 1111 1111 declined")
    otelfin.shutdown()
    (span,) = exporter.get_finished_spans()
    note = span.attributes["payment.note"]
    assert "4111 1111 1111 1111" not in note and note.endswith("1111 declined")
