"""``otelfin traces why``: critical paths and the hop that makes slow traces slow."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from otelfin.cli import main
from otelfin.tools.traces import (
    SpanRecord,
    Trace,
    critical_path,
    group_traces,
    read_spans,
    why_slow,
)

MS = 1_000_000


@dataclass
class S:
    """A span to write: times in ms from the trace start."""

    name: str
    start: float
    end: float
    service: str = "gateway"
    kind: int = 1
    children: list[S] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)


def _emit(
    span: S,
    parent: str,
    trace_id: str,
    base: int,
    rng: random.Random,
    by_service: dict[str, list[dict[str, Any]]],
) -> None:
    span_id = f"{rng.getrandbits(64):016x}"
    doc: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": span.name,
        "kind": span.kind,
        "startTimeUnixNano": str(base + int(span.start * MS)),
        "endTimeUnixNano": str(base + int(span.end * MS)),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in span.attributes.items()],
        "status": {"code": 0},
    }
    if parent:
        doc["parentSpanId"] = parent
    by_service.setdefault(span.service, []).append(doc)
    for child in span.children:
        _emit(child, span_id, trace_id, base, rng, by_service)


def _write(path: Path, traces: list[S], seed: int = 7) -> Path:
    """Each root and its subtree as OTLP/JSON lines (one line per service per trace)."""
    rng = random.Random(seed)
    lines = []
    for root in traces:
        trace_id = f"{rng.getrandbits(128):032x}"
        by_service: dict[str, list[dict[str, Any]]] = {}
        base = 1_700_000_000_000 * MS + rng.randrange(10**12)
        _emit(root, "", trace_id, base, rng, by_service)
        for service, spans in by_service.items():
            resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
            lines.append(
                json.dumps(
                    {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}
                )
            )
    path.write_text("\n".join(lines) + "\n")
    return path


def _payment(acquirer_ms: float, risk_ms: float = 10, db_ms: float = 5) -> S:
    """POST /payments: risk.score, then acquirer.authorise (HTTP to acquirer), then the ledger."""
    acq_start = risk_ms
    acq_end = acq_start + acquirer_ms
    return S(
        "POST /payments",
        0,
        acq_end + db_ms + 2,
        kind=2,
        children=[
            S("risk.score", 0.5, risk_ms),
            S(
                "acquirer.authorise",
                acq_start,
                acq_end,
                kind=3,
                attributes={"server.address": "acquirer.example"},
                children=[
                    S(
                        "POST /authorise",
                        acq_start + 0.5,
                        acq_end - 0.5,
                        service="acquirer",
                        kind=2,
                    )
                ],
            ),
            S(
                "INSERT ledger",
                acq_end,
                acq_end + db_ms,
                kind=3,
                attributes={"db.system": "postgresql", "db.namespace": "ledger"},
            ),
        ],
    )


def _records(root: S) -> Trace:
    tmp = []

    def walk(span: S, parent: str, counter: list[int]) -> None:
        counter[0] += 1
        sid = f"{counter[0]:016x}"
        tmp.append(
            SpanRecord(
                trace_id="a" * 32,
                span_id=sid,
                parent_id=parent,
                name=span.name,
                service=span.service,
                kind={1: "internal", 2: "server", 3: "client"}[span.kind],
                start_ns=int(span.start * MS),
                end_ns=int(span.end * MS),
                status="UNSET",
                error_code="",
                attributes=dict(span.attributes),
            )
        )
        for child in span.children:
            walk(child, sid, counter)

    walk(root, "", [0])
    return group_traces(tmp)["a" * 32]


def _path(root: S) -> dict[str, float]:
    out: dict[str, float] = {}
    for seg in critical_path(_records(root)):
        out[seg.span.name] = out.get(seg.span.name, 0) + seg.ns / MS
    return out


def test_sequential_children_are_all_on_the_path() -> None:
    """Back-to-back children and the gaps between them add up to the root's duration."""
    path = _path(S("root", 0, 100, children=[S("a", 10, 40), S("b", 40, 90)]))
    assert path == {"root": 20, "a": 30, "b": 50}


def test_parallel_children_only_the_last_to_finish() -> None:
    """Two calls in parallel: only the one the parent waited for longest is on the path."""
    path = _path(S("root", 0, 100, children=[S("fast", 0, 50), S("slow", 0, 95)]))
    assert path == {"root": 5, "slow": 95}


def test_overlapping_children_are_clipped() -> None:
    """A child overlapping the chosen one counts only up to where the chosen one starts."""
    path = _path(S("root", 0, 100, children=[S("a", 0, 60), S("b", 40, 100)]))
    assert path == {"a": 40, "b": 60}


def test_async_child_outliving_its_parent_is_off_the_path() -> None:
    """Same service, ends after the parent: fire-and-forget, not waited for."""
    path = _path(S("root", 0, 100, children=[S("work", 0, 80), S("notify", 90, 400)]))
    assert path == {"root": 20, "work": 80}


def test_remote_child_overhanging_by_clock_skew_is_clipped() -> None:
    """A child in another service overhanging its client span counts inside the client span."""
    root = S(
        "call",
        0,
        100,
        kind=3,
        children=[S("POST /x", 3, 104, service="other", kind=2)],
    )
    path = _path(root)
    assert path == {"call": 3, "POST /x": 97}


def test_deep_and_cyclic_traces_terminate() -> None:
    """A 20,000-deep chain walks without recursion; a parent-id cycle is visited once."""
    spans = [
        SpanRecord("b" * 32, f"{i + 1:016x}", f"{i:016x}" if i else "", f"s{i}", "svc",
                   "internal", i, 40_000 - i, "UNSET", "")
        for i in range(20_000)
    ]  # fmt: skip
    trace = group_traces(spans)["b" * 32]
    assert sum(seg.ns for seg in critical_path(trace)) == 40_000
    cyclic = [
        SpanRecord("c" * 32, "0" * 15 + "1", "0" * 15 + "2", "x", "s", "internal", 0, 10, "", ""),
        SpanRecord("c" * 32, "0" * 15 + "2", "0" * 15 + "1", "y", "s", "internal", 1, 9, "", ""),
    ]
    trace = group_traces(cyclic)["c" * 32]
    assert sum(seg.ns for seg in critical_path(trace)) == 10


def _payments(tmp_path: Path, slow_every: int = 50, n: int = 400) -> Path:
    rng = random.Random(3)
    traces = [
        _payment(900 + rng.uniform(0, 200) if i % slow_every == 0 else 20 + rng.uniform(-5, 5))
        for i in range(n)
    ]
    return _write(tmp_path / "spans.jsonl", traces)


def test_names_the_injected_slow_hop_by_span_service_and_peer(tmp_path: Path) -> None:
    """The slow acquirer is named by span, by service and by peer, with both shares."""
    traces = group_traces(read_spans(str(_payments(tmp_path)))).values()
    by_span = why_slow(traces, by="span")
    top = by_span.rows[0]
    assert top.key == "POST /authorise"
    assert top.slow_share > 0.9 and top.normal_share < 0.7, top
    assert by_span.headline is not None and by_span.headline.startswith("POST /authorise: 9")
    assert why_slow(traces, by="service").rows[0].key == "acquirer"
    assert why_slow(traces, by="peer").rows[0].key == "acquirer.example"
    assert by_span.slow == 5 and by_span.normal == 395  # ranks 396-400 of 400


def test_operation_selects_the_span_to_explain(tmp_path: Path) -> None:
    """--operation explains a span inside the trace: the acquirer's own server span."""
    traces = group_traces(read_spans(str(_payments(tmp_path)))).values()
    report = why_slow(traces, operation="POST /authorise", slower_than=0.5)
    assert report.slow == 8 and [r.key for r in report.rows] == ["POST /authorise"]
    with pytest.raises(ValueError, match="no trace has operation"):
        why_slow(traces, operation="nope")


def test_hidden_slow_hop_deep_in_another_service(tmp_path: Path) -> None:
    """The slow part is a database call inside the acquirer service, two hops down."""
    rng = random.Random(11)
    traces = []
    for i in range(300):
        db = 700.0 if i % 30 == 0 else rng.uniform(1, 3)
        hop = S(
            "POST /authorise",
            12,
            12 + 4 + db,
            service="acquirer",
            kind=2,
            children=[
                S("fraud.check", 12.5, 15, service="acquirer"),
                S("SELECT cards", 15, 15 + db, service="acquirer", kind=3,
                  attributes={"db.system": "postgresql", "server.address": "cards-db"}),
            ],
        )  # fmt: skip
        traces.append(
            S(
                "POST /payments",
                0,
                hop.end + 3,
                kind=2,
                children=[
                    S("risk.score", 1, 11),
                    S(
                        "acquirer.authorise",
                        11.5,
                        hop.end + 0.5,
                        kind=3,
                        attributes={"url.full": "https://acq.example:8443/authorise"},
                        children=[hop],
                    ),
                ],
            )
        )
    found = group_traces(read_spans(str(_write(tmp_path / "x.jsonl", traces)))).values()
    assert why_slow(found, by="span").rows[0].key == "SELECT cards"
    assert why_slow(found, by="peer").rows[0].key == "cards-db"
    assert why_slow(found, by="service").rows[0].key == "acquirer"


def test_cli_text_json_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """0 with a ranking, JSON on request, 1 with nothing to compare, 2 for bad input."""
    spans = str(_payments(tmp_path))
    assert main(["traces", "why", spans]) == 0
    out = capsys.readouterr().out
    assert "POST /authorise: 9" in out and "400 traces" in out
    assert main(["traces", "why", spans, "--by", "peer", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"][0]["key"] == "acquirer.example" and doc["slow_traces"] == 5
    one = _write(tmp_path / "one.jsonl", [_payment(20)])
    assert main(["traces", "why", str(one)]) == 1
    assert "note: only 1 trace: a P99 needs at least 100" in capsys.readouterr().out
    assert main(["traces", "why", spans, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["note"] is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert main(["traces", "why", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
    assert main(["traces", "why", spans, "--slower-than", "-1"]) == 2
    assert "--slower-than" in capsys.readouterr().err
    assert main(["traces", "why", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["traces", "why", spans, "--operation", "nope"]) == 2
    assert "no trace has operation 'nope'" in capsys.readouterr().err
