"""Celery with a real ``celery worker`` (solo pool) on RabbitMQ (5672) and on Redis (6379).

One worker per broker serves the whole module; it writes its spans, logs and metrics the way a
deployed worker would (a JSONL span file, a JSON log file, ``/metrics``), and the test reads
them back. The producer side runs in the test process (the ``spans`` fixture), and so does the
payment service of the end-to-end test: a WSGI app that writes through SQLAlchemy to
PostgreSQL and enqueues a task whose worker writes to PostgreSQL too.
"""

from __future__ import annotations

import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.integration._procs import free_port
from tests.integration._settle import spans_once
from tests.integration.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
BROKERS = {
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672, "rabbitmq-server -detached"),
    "redis": ("redis://127.0.0.1:6379/0", 6379, "redis-server --daemonize yes --port 6379"),
}
#: The card number the tasks and the service write, in every form they write it.
_PANS = ("4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111")


def _leaks(text: str) -> list[str]:
    return [pan for pan in _PANS if pan in text]


@dataclass
class Worker:
    """A running ``celery worker`` and where it writes."""

    broker: str
    queue: str
    table: str
    spans_file: Path
    log_file: Path
    metrics_port: int
    process: subprocess.Popen[bytes]
    output: Path

    def spans(self, trace_id: str) -> list[dict[str, Any]]:
        """The worker's exported spans of one trace (OTLP/JSON, attributes flattened)."""
        found = []
        if not self.spans_file.exists():
            return found
        for line in self.spans_file.read_text().splitlines():
            for resource in json.loads(line)["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    for span in scope["spans"]:
                        if span["traceId"] == trace_id:
                            span["scope"] = scope["scope"]["name"]
                            span["attrs"] = {
                                a["key"]: next(iter(a["value"].values()))
                                for a in span["attributes"]
                            }
                            found.append(span)
        return found

    def wait_for(
        self, trace_id: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Poll the span file until ``done(spans)`` holds for the trace."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.spans(trace_id)
            if done(found):
                return found
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(
                    f"worker spans of {trace_id}: {[s['name'] for s in found]}\n"
                    + self.output.read_text()[-3000:]
                )
            time.sleep(0.05)

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines() if line]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            return str(r.read().decode())


@contextmanager
def _run_worker(
    broker: str, directory: Path, pool: tuple[str, ...], extra_env: dict[str, str]
) -> Iterator[Worker]:
    """A ``celery worker`` subprocess on ``broker`` with its own queue and table."""
    url, port, how = BROKERS[broker]
    require_service(broker, "127.0.0.1", port, how)
    require_service(
        "PostgreSQL", "127.0.0.1", 5432, "pg_ctlcluster $(ls /etc/postgresql) main start"
    )
    import psycopg

    tag = uuid.uuid4().hex[:10]
    table = f"otelfin_celery_{tag}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (payment_id text, note text)")
    ready = directory / "ready"
    output = directory / "worker.out"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTELFIN_TEST_BROKER": url,
        "OTELFIN_TEST_QUEUE": f"otelfin-test-{tag}",
        "OTELFIN_TEST_TABLE": table,
        "OTELFIN_TEST_READY": str(ready),
        "OTELFIN_SPANS_FILE": str(directory / "spans.jsonl"),
        "OTELFIN_SPAN_PROCESSOR": "simple",
        "OTELFIN_LOG_FILE": str(directory / "logs.jsonl"),
        "OTELFIN_METRICS_PORT": str(free_port()),
        **extra_env,
    }
    for name in ("OTEL_SERVICE_NAME", "OTEL_TRACES_EXPORTER", "OTELFIN_CATALOGUE"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "celery", "-A", "tests.integration.celery_app:worker", "worker",
        *pool, "-Q", env["OTELFIN_TEST_QUEUE"], "-n", f"otelfin-{tag}@%h",
        "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT
        )
    state = Worker(
        url, env["OTELFIN_TEST_QUEUE"], table, Path(env["OTELFIN_SPANS_FILE"]),
        Path(env["OTELFIN_LOG_FILE"]), int(env["OTELFIN_METRICS_PORT"]), process, output,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"celery worker did not start:\n{output.read_text()[-3000:]}")
            time.sleep(0.05)
        yield state
    finally:
        process.send_signal(signal.SIGQUIT)  # cold shutdown: the warm one takes ~10 s
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")
        _delete_queue(url, state.queue)


@pytest.fixture(scope="module", params=sorted(BROKERS))
def worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """One solo-pool worker on the broker for the whole module (start: about 3 s)."""
    directory = tmp_path_factory.mktemp(f"celery-{request.param}")
    with _run_worker(request.param, directory, ("-P", "solo"), {}) as state:
        yield state


def _delete_queue(url: str, queue: str) -> None:
    from kombu import Connection

    try:
        with Connection(url) as conn:
            conn.default_channel.queue_delete(queue)
    except Exception:  # the worker's auto-delete may have won
        pass


@pytest.fixture
def producer(worker: Worker, spans: InMemorySpanExporter) -> Iterator[Any]:
    """The producer's Celery app (otelfin configured in this process by ``spans``)."""
    from tests.integration.celery_app import make_app

    app = make_app(worker.broker, worker.queue)
    yield app
    app.close()  # kombu's connection pools are per broker URL and shared by apps: kept open


def _names(*wanted: str) -> Callable[[list[dict[str, Any]]], bool]:
    """A ``wait_for`` condition: these span names (with repeats) have all been exported."""

    def done(found: list[dict[str, Any]]) -> bool:
        names = [s["name"] for s in found]
        return all(names.count(name) >= wanted.count(name) for name in wanted)

    return done


def _statement(span: ReadableSpan) -> str:
    return str((span.attributes or {}).get("db.statement", ""))


def _hex(span_id: int) -> str:
    return format(span_id, "016x")


def _by_kind(found: list[dict[str, Any]], kind: SpanKind) -> list[dict[str, Any]]:
    return [s for s in found if s["kind"] == kind.value + 1]


def _producer_span(spans: InMemorySpanExporter, task: str) -> ReadableSpan:
    return next(
        s for s in spans.get_finished_spans()
        if s.kind is SpanKind.PRODUCER and s.name == f"apply_async/{task}"
    )  # fmt: skip


def test_one_trace_from_request_through_worker_to_database(
    worker: Worker, producer: Any, spans: InMemorySpanExporter
) -> None:
    """task.delay() in a request: producer -> broker -> run span in the worker -> its DB call."""
    payment = f"pay-{uuid.uuid4().hex[:8]}"
    with trace.get_tracer("test").start_as_current_span(
        "POST /payments", kind=SpanKind.SERVER
    ) as root:
        producer.tasks["settlement.settle"].delay(payment)
    trace_id = format(root.get_span_context().trace_id, "032x")
    found = worker.wait_for(trace_id, _names("INSERT", "run/settlement.settle"))
    publish = _producer_span(spans, "settlement.settle")
    assert publish.parent is not None and publish.parent.span_id == root.get_span_context().span_id
    run = next(s for s in found if s["name"] == "run/settlement.settle")
    assert run["kind"] == SpanKind.CONSUMER.value + 1
    assert run["parentSpanId"] == _hex(publish.context.span_id)
    insert = next(s for s in found if s["name"] == "INSERT")
    assert insert["parentSpanId"] == run["spanId"]
    assert insert["scope"] == "opentelemetry.instrumentation.psycopg"
    assert insert["attrs"]["db.system"] == "postgresql" and insert["attrs"]["db.name"] == "test"
    statement = insert["attrs"]["db.statement"]
    assert payment in statement and "XXXXXXXXXXXX1111" in statement
    assert _leaks(statement) == []
    assert run["attrs"]["celery.task_name"] == "settlement.settle"
    assert (
        run["attrs"]["messaging.message.id"] == (publish.attributes or {})["messaging.message.id"]
    )


def test_otelfin_error_lands_on_span_metric_and_log(
    worker: Worker, producer: Any, spans: InMemorySpanExporter
) -> None:
    """An OtelfinError in a task: code on the run span, the RED counters and the log line.

    PAY-012 is a decline (severity warning): the run span is not ERROR and the request counts
    as declined, not as an error.
    """
    payment = f"pay-{uuid.uuid4().hex[:8]}"
    with trace.get_tracer("test").start_as_current_span("POST /payments") as root:
        producer.tasks["settlement.decline"].delay(payment)
    trace_id = format(root.get_span_context().trace_id, "032x")
    found = worker.wait_for(trace_id, lambda f: any(s["name"].startswith("run/") for s in f))
    run = next(s for s in found if s["name"] == "run/settlement.decline")
    assert run["attrs"]["otelfin.error_code"] == "PAY-012"
    assert run["attrs"]["error.type"] == "PAY-012"
    assert run["attrs"]["otelfin.outcome"] == "declined"
    assert run["status"].get("code") != StatusCode.ERROR.value
    assert any(e["name"] == "exception" for e in run.get("events", []))

    line = 'otelfin_request_declines_total{channel="",error_code="PAY-012",'
    line += 'operation="run/settlement.decline",service="settlement-worker"}'
    exposition = worker.metrics()
    assert line in exposition, exposition[-2000:]
    assert 'otelfin_request_errors_total{channel="",error_code="PAY-012"' not in exposition

    deadline = time.monotonic() + 10
    while True:
        failures = [
            entry for entry in worker.log_lines()
            if entry.get("trace_id") == trace_id and entry.get("level") == "error"
        ]  # fmt: skip
        if failures or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(failures) == 1, worker.log_lines()[-5:]
    assert failures[0]["error_code"] == "PAY-012"
    assert failures[0]["span_id"] == run["spanId"]
    assert failures[0]["logger"] == "celery.app.trace"


def test_retries_are_visible(worker: Worker, producer: Any, spans: InMemorySpanExporter) -> None:
    """Two retries: three run spans in one trace, retry events numbered 1 and 2."""
    payment = f"pay-{uuid.uuid4().hex[:8]}"
    with trace.get_tracer("test").start_as_current_span("POST /payments") as root:
        producer.tasks["settlement.flaky"].delay(payment, 2)
    trace_id = format(root.get_span_context().trace_id, "032x")
    found = worker.wait_for(trace_id, _names("INSERT", *["run/settlement.flaky"] * 3))
    runs = sorted(
        (s for s in found if s["name"] == "run/settlement.flaky"),
        key=lambda s: int(s["startTimeUnixNano"]),
    )
    assert len(runs) == 3
    assert [r["attrs"].get("celery.retries") for r in runs] == [None, "1", "2"]
    events = [[e for e in r.get("events", []) if e["name"] == "retry"] for r in runs]
    counts = [
        [next(a["value"]["intValue"] for a in e["attributes"] if a["key"] == "celery.retry.count")
         for e in evs]
        for evs in events
    ]  # fmt: skip
    assert counts == [["1"], ["2"], []]
    reasons = [a for e in events[0] for a in e["attributes"] if a["key"] == "celery.retry.reason"]
    assert "DB-003" in reasons[0]["value"]["stringValue"]
    # Each retry is published from the run that asked for it, so the chain stays one trace.
    publishes = {s["spanId"]: s for s in _by_kind(found, SpanKind.PRODUCER)}
    assert runs[1]["parentSpanId"] in publishes and runs[2]["parentSpanId"] in publishes
    assert publishes[runs[1]["parentSpanId"]]["parentSpanId"] == runs[0]["spanId"]


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_payment_service_one_trace_through_database_and_worker(
    worker: Worker, producer: Any, spans: InMemorySpanExporter
) -> None:
    """A WSGI payment service writing through SQLAlchemy and enqueueing a task: one trace
    from the HTTP request through both database writes and the worker, no card number in any
    statement or attribute, in either process."""
    import requests
    import sqlalchemy

    from otelfin.instrument.transports.wsgi import middleware

    engine = sqlalchemy.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    settle = producer.tasks["settlement.settle"]

    def payments(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        payment = environ["PATH_INFO"].rsplit("/", 1)[-1]
        with engine.begin() as conn:
            conn.execute(
                sqlalchemy.text(
                    f"INSERT INTO {worker.table} (payment_id, note) "
                    f"VALUES ('{payment}', 'card 4111-1111-1111-1111 authorised')"
                )
            )
        settle.delay(payment)
        start_response("202 Accepted", [("Content-Type", "text/plain")])
        return [b"accepted"]

    server = make_server("127.0.0.1", 0, middleware(payments), _Server, _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    payment = f"pay-{uuid.uuid4().hex[:8]}"
    try:
        with trace.get_tracer("test").start_as_current_span("checkout") as root:
            response = requests.post(
                f"http://127.0.0.1:{server.server_address[1]}/payments/{payment}", timeout=10
            )
        assert response.status_code == 202
        trace_id = format(root.get_span_context().trace_id, "032x")
        remote = worker.wait_for(trace_id, _names("INSERT", "run/settlement.settle"))
    finally:
        server.shutdown()
        server.server_close()
        engine.dispose()

    # The WSGI thread ends its SERVER span after writing the response (shutdown() does not
    # wait for that thread): wait for the span rather than read once.
    root_id = root.get_span_context().trace_id
    local = [
        s
        for s in spans_once(
            spans,
            lambda s: s.kind is SpanKind.SERVER and s.context.trace_id == root_id,
            "the payment service's SERVER span",
        )
        if s.context.trace_id == root_id
    ]
    server_span = next(s for s in local if s.kind is SpanKind.SERVER)
    inserts = [s for s in local if _statement(s).startswith("INSERT")]
    assert len(inserts) == 1  # one statement span per write: the driver's is folded in
    ledger_write = inserts[0]
    assert ledger_write.kind is SpanKind.CLIENT
    publish = _producer_span(spans, "settlement.settle")
    assert (
        ledger_write.parent is not None
        and ledger_write.parent.span_id == server_span.context.span_id
    )
    assert publish.parent is not None and publish.parent.span_id == server_span.context.span_id
    assert ledger_write.name == "INSERT test"
    run = next(s for s in remote if s["name"] == "run/settlement.settle")
    insert = next(s for s in remote if s["name"] == "INSERT")
    assert run["parentSpanId"] == _hex(publish.context.span_id)
    assert insert["parentSpanId"] == run["spanId"]
    exported = repr([(s.name, dict(s.attributes or {}), s.events) for s in local])
    exported += json.dumps(remote)
    assert payment in exported and "XXXXXXXXXXXX1111" in exported
    assert _leaks(exported) == []
    import psycopg

    with psycopg.connect(PG_DSN) as conn:
        notes = [
            r[0]
            for r in conn.execute(
                f"SELECT note FROM {worker.table} WHERE payment_id = %s", (payment,)
            )
        ]
    assert sorted(notes) == [
        "card 4111-1111-1111-1111 authorised",
        "settled card 4111 1111 1111 1111",
    ]


def test_fastapi_service_one_trace_through_database_and_worker(
    worker: Worker, producer: Any, spans: InMemorySpanExporter
) -> None:
    """The same through FastAPI under uvicorn: the server span is named by the route template
    and parents the SQLAlchemy write and the publish; the worker continues the trace."""
    import requests
    import sqlalchemy
    import uvicorn
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    engine = sqlalchemy.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    settle = producer.tasks["settlement.settle"]
    app = FastAPI()

    @app.post("/payments/{payment_id}", status_code=202)
    def pay(payment_id: str) -> dict[str, str]:
        with engine.begin() as conn:
            conn.execute(
                sqlalchemy.text(
                    f"INSERT INTO {worker.table} (payment_id, note) "
                    f"VALUES ('{payment_id}', 'card 4111 1111 1111 1111 authorised')"
                )
            )
        settle.delay(payment_id)
        return {"status": "accepted"}

    FastAPIInstrumentor.instrument_app(app)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    payment = f"pay-{uuid.uuid4().hex[:8]}"
    try:
        with trace.get_tracer("test").start_as_current_span("checkout") as root:
            response = requests.post(f"http://127.0.0.1:{port}/payments/{payment}", timeout=10)
        assert response.status_code == 202, response.text
        trace_id = format(root.get_span_context().trace_id, "032x")
        remote = worker.wait_for(trace_id, _names("INSERT", "run/settlement.settle"))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()

    local = [
        s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id
    ]
    server_span = next(s for s in local if s.kind is SpanKind.SERVER)
    assert server_span.name == "POST /payments/{payment_id}"
    inserts = [s for s in local if _statement(s).startswith("INSERT")]
    assert len(inserts) == 1 and inserts[0].name == "INSERT test"
    publish = _producer_span(spans, "settlement.settle")
    for child in (inserts[0], publish):
        assert child.parent is not None and child.parent.span_id == server_span.context.span_id
    run = next(s for s in remote if s["name"] == "run/settlement.settle")
    assert run["parentSpanId"] == _hex(publish.context.span_id)
    exported = repr([(s.name, dict(s.attributes or {}), s.events) for s in local])
    exported += json.dumps(remote)
    assert payment in exported and _leaks(exported) == []


def test_prefork_worker_recipe(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    """The docs recipe with the prefork pool (2 children, batch span processor, metrics in
    multiprocess mode): the children's spans continue the trace, their metrics reach the
    parent's /metrics and their failure log line carries the code."""
    from tests.integration.celery_app import make_app

    prom = tmp_path / "prom"
    prom.mkdir()
    extra = {"OTELFIN_SPAN_PROCESSOR": "batch", "PROMETHEUS_MULTIPROC_DIR": str(prom)}
    with _run_worker("rabbitmq", tmp_path, ("-P", "prefork", "-c", "2"), extra) as state:
        app = make_app(state.broker, state.queue)
        try:
            with trace.get_tracer("test").start_as_current_span("POST /payments") as root:
                app.tasks["settlement.settle"].delay("pay-prefork")
                app.tasks["settlement.decline"].delay("pay-prefork")
        finally:
            app.close()
        trace_id = format(root.get_span_context().trace_id, "032x")
        found = state.wait_for(
            trace_id, _names("INSERT", "run/settlement.settle", "run/settlement.decline")
        )
        exposition = state.metrics()
        lines = [
            entry for entry in state.log_lines()
            if entry.get("trace_id") == trace_id and entry.get("level") == "error"
        ]  # fmt: skip
    decline = next(s for s in found if s["name"] == "run/settlement.decline")
    assert decline["attrs"]["otelfin.error_code"] == "PAY-012"
    publishes = {_hex(s.context.span_id) for s in spans.get_finished_spans()}
    assert all(s["parentSpanId"] in publishes for s in found if s["name"].startswith("run/"))
    assert 'error_code="PAY-012",operation="run/settlement.decline"' in exposition
    assert 'operation="run/settlement.settle",outcome="ok"' in exposition
    assert [line["error_code"] for line in lines] == ["PAY-012"]
