"""`otelfin traces show`: waterfalls from OTLP/JSON span files, clear errors on bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otelfin._exporters import JsonlSpanExporter
from otelfin.cli import main
from otelfin.tools.traces import group_traces, pick_trace, read_spans, render_waterfall


def _write_two_services(path: Path) -> tuple[str, str]:
    """Two traces written by the JSONL exporter from two providers (two service names)."""
    exporters = []
    tracers = []
    for service in ("payment-api", "ledger"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        exporter = JsonlSpanExporter(path)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        exporters.append(exporter)
        tracers.append(provider.get_tracer("t"))
    api, ledger = tracers
    with (
        api.start_as_current_span("POST /v1/payments", kind=SpanKind.SERVER) as root,
        ledger.start_as_current_span("ledger.book") as span,
    ):
        span.set_attribute("otelfin.error_code", "LEDGER-003")
        span.set_status(Status(StatusCode.ERROR))
    with api.start_as_current_span("GET /health"):
        pass
    for exporter in exporters:
        exporter.shutdown()
    return format(root.get_span_context().trace_id, "032x"), "ledger.book"


def test_waterfall_rows_services_status_and_code(tmp_path: Path) -> None:
    """Each span is a row with its service, status and error code; children are indented."""
    spans_file = tmp_path / "spans.jsonl"
    trace_id, _ = _write_two_services(spans_file)
    trace = pick_trace(group_traces(read_spans(str(spans_file))))
    assert trace.trace_id == trace_id  # default: the trace crossing the most services
    assert trace.services == ["payment-api", "ledger"]
    text = render_waterfall(trace, unicode=False)
    lines = text.splitlines()
    assert len(lines) == 2 + 2
    assert "payment-api" in lines[2] and "POST /v1/payments" in lines[2]
    assert "ledger" in lines[3] and "  ledger.book" in lines[3]
    assert "ERROR" in lines[3] and "LEDGER-003" in lines[3] and "#" in lines[3]


def test_cli_trace_id_slowest_gzip_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--trace-id picks a trace, .gz files are read, --format json has one entry per span."""
    spans_file = tmp_path / "spans.jsonl"
    trace_id, _ = _write_two_services(spans_file)
    packed = tmp_path / "spans.jsonl.gz"
    packed.write_bytes(gzip.compress(spans_file.read_bytes()))
    assert (
        main(["traces", "show", str(packed), "--trace-id", trace_id.upper(), "--format", "json"])
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert document["trace_id"] == trace_id
    assert [s["name"] for s in document["spans"]] == ["POST /v1/payments", "ledger.book"]
    assert document["spans"][1]["error_code"] == "LEDGER-003"
    assert document["spans"][1]["depth"] == 1
    assert main(["traces", "show", str(spans_file), "--slowest"]) == 0
    assert "trace " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json\n", "invalid JSON"),
        (b'{"spans": []}\n', "no resourceSpans"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}\n', "traceId"),
        (b"\xff\xfe\n", "not UTF-8"),
        (b"", "no spans"),
    ],
)
def test_bad_input_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str
) -> None:
    """Bad files exit 2 with `file:line: reason` on stderr, never a traceback."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    assert main(["traces", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err


def test_missing_file_and_unknown_trace_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file or an unknown --trace-id is an input error (exit 2)."""
    assert main(["traces", "show", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    spans_file = tmp_path / "spans.jsonl"
    _write_two_services(spans_file)
    assert main(["traces", "show", str(spans_file), "--trace-id", "0" * 32]) == 2
    assert "no trace" in capsys.readouterr().err


def test_waterfall_header_says_one_service_and_one_span(tmp_path: Path) -> None:
    """A one-span trace of one service: "1 service", "1 span" (not "1 services")."""
    spans_file = tmp_path / "spans.jsonl"
    _write_two_services(spans_file)
    traces = group_traces(read_spans(str(spans_file))).values()
    health = next(t for t in traces if len(t.rows) == 1)
    header = render_waterfall(health, unicode=False).splitlines()[0]
    assert "1 service (payment-api)" in header and header.endswith("1 span")
