"""Requests counted once, the slow channel first, declines not errors: a real service.

A FastAPI payment API under uvicorn (its own process, ``configure()`` from the environment)
calls an acquirer (a second HTTP server on 127.0.0.1) with httpx from an internal ``@traced``
function; the wallet channel's acquirer is slow. Internal ``@traced`` functions run on every
payment. The test reads ``/metrics``, ``otelfin p99 report --format json`` against it, and the
exported spans.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration._procs import (
    free_port,
    read_spans,
    span_attributes,
    stop_server,
    wait_listening,
)
from tests.integration._services import amqp_connection, consume, ledger_call, ledger_server
from tests.integration._settle import settled_metrics

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "checkout-api"
OPERATION = "POST /payments"
SLOW_CHANNEL = "wallet"
#: the acquirer answers 402 for amounts ending in .99 and 503 for 503.00
DECLINE_CENTS = 99


class _Acquirer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["channel"] == SLOW_CHANNEL:
            time.sleep(0.3)
        cents = round(body["amount"] * 100) % 100
        if body["amount"] == 503.0:
            status, answer = 503, {"error": "down"}
        elif cents == DECLINE_CENTS:
            status, answer = 402, {"error": "declined"}
        else:
            status, answer = 200, {"approval": "A1"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def acquirer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Acquirer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


#: (amount, channel) -> the status the client must see
def _workload() -> list[tuple[float, str, int]]:
    payments: list[tuple[float, str, int]] = []
    for i in range(60):
        channel = SLOW_CHANNEL if i % 10 == 7 else ("card", "bank")[i % 2]
        amount, status = 10.0 + i, 200
        if i % 10 == 3:
            amount, status = 20.99, 402
        payments.append((amount, channel, status))
    payments += [(503.0, "card", 503), (13.0, "bank", 500)]
    return payments


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _sum(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items())


def test_payment_api_counts_requests_once_and_declines_apart(tmp_path: Path, acquirer: str) -> None:
    """/metrics, p99 report and spans agree: N requests, wallet first, 402s declined."""
    port, metrics_port = free_port(), free_port()
    spans_file = tmp_path / "spans.jsonl"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTELFIN_"))},
        "PYTHONPATH": str(ROOT),
        "OTELFIN_SPANS_FILE": str(spans_file),
        "OTELFIN_SPAN_PROCESSOR": "simple",
        "OTELFIN_METRICS_PORT": str(metrics_port),
        "ACQUIRER_URL": acquirer,
    }
    argv = [
        sys.executable, "-m", "uvicorn", "tests.integration.webapps.payment_api:app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    payments = _workload()
    try:
        wait_listening(metrics_port, process, "uvicorn")
        wait_listening(port, process, "uvicorn")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            statuses = [
                client.post("/payments", json={"amount": a, "channel": c}).status_code
                for a, c, _ in payments
            ]
        scrape_url = f"http://127.0.0.1:{metrics_port}/metrics"
        # uvicorn counts a request when its SERVER span ends, after the response went out.
        text = settled_metrics(scrape_url, len(payments))
        report_run = subprocess.run(
            [sys.executable, "-m", "otelfin.cli", "p99", "report", "--scrape", scrape_url,
             "--by", "channel", "--format", "json"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
    finally:
        stop_server(process)
    assert statuses == [status for _, _, status in payments]
    total = len(payments)
    declines = statuses.count(402)
    errors = sum(1 for s in statuses if s >= 500)
    samples = _samples(text)
    base = {"service": SERVICE}

    # Requests counted once: one observation per payment, only the route, no internal calls.
    requests = "otelfin_request_duration_seconds_count"
    assert _sum(samples, requests, **base) == total
    assert {lab["operation"] for n, lab, _ in samples if n == requests} == {OPERATION}
    assert _sum(samples, "otelfin_requests_total", **base) == total
    functions = "otelfin_function_duration_seconds_count"
    assert _sum(samples, functions, operation="risk.rule") == 3 * (total - 0)
    assert _sum(samples, functions, operation="acquirer.authorise") == total - 1  # not the crash

    # Outcomes: declines are not errors, on the label and in the error counter.
    assert _sum(samples, requests, outcome="declined", **base) == declines
    assert _sum(samples, requests, outcome="error", **base) == errors
    assert _sum(samples, requests, outcome="ok", **base) == total - declines - errors
    assert _sum(samples, "otelfin_request_errors_total", **base) == errors
    assert _sum(samples, "otelfin_request_declines_total", error_code="PAY-006") == declines
    error_ratio = _sum(samples, "otelfin_request_errors_total") / _sum(
        samples, "otelfin_requests_total"
    )
    assert error_ratio == pytest.approx(errors / total)
    # The channel known inside the request labels the request series.
    channels = {lab["channel"] for n, lab, _ in samples if n == requests}
    assert channels == {"card", "bank", SLOW_CHANNEL}

    # The P99 report answers for requests and names the slow channel first.
    assert report_run.returncode == 0, report_run.stderr
    report = json.loads(report_run.stdout)
    assert report["requests"] == total
    rows = [row for row in report["rows"] if row["label"] == "channel"]
    assert rows[0]["value"] == SLOW_CHANNEL, rows
    assert "" not in {row["value"] for row in rows}

    # Spans: outcome on every server span, declines not ERROR and still coded.
    spans = read_spans(spans_file)
    servers = [s for s in spans if s["kind"] in (2, "SPAN_KIND_SERVER")]
    assert len(servers) == total
    by_status: dict[str, list[dict[str, Any]]] = {}
    for span in servers:
        attributes = span_attributes(span)
        status = str(
            attributes.get("http.response.status_code", attributes.get("http.status_code"))
        )
        by_status.setdefault(status, []).append(span)
    for span in by_status["402"]:
        attributes = span_attributes(span)
        assert attributes["otelfin.outcome"] == "declined"
        assert attributes["otelfin.error_code"] == "PAY-006"
        assert span.get("status", {}).get("code") not in (2, "STATUS_CODE_ERROR")
    for status in ("500", "503"):
        (span,) = by_status[status]
        assert span_attributes(span)["otelfin.outcome"] == "error"
        assert span["status"]["code"] in (2, "STATUS_CODE_ERROR")
    assert {span_attributes(s)["otelfin.outcome"] for s in by_status["200"]} == {"ok"}
    internal = [s for s in spans if s["name"] == "acquirer.authorise"]
    assert {span_attributes(s)["otelfin.outcome"] for s in internal} == {"ok", "declined", "error"}
    assert all(
        s.get("status", {}).get("code") not in (2, "STATUS_CODE_ERROR")
        for s in internal
        if span_attributes(s)["otelfin.outcome"] == "declined"
    )


def test_grpc_server_counts_requests_once_and_answers_are_declines(
    prom_registry: Any, spans: Any
) -> None:
    """A real gRPC server on 127.0.0.1: each RPC is one request (its @traced handler code a
    function); FAILED_PRECONDITION is a decline (span not ERROR), INTERNAL an error."""
    import grpc
    from opentelemetry.trace import StatusCode

    import otelfin

    @otelfin.traced(name="ledger.book")
    def book(amount: int) -> None:
        if amount == 402:
            raise otelfin.OtelfinError("PAY-006", "declined")

    def post(request: bytes, context: Any) -> bytes:
        amount = int(request)
        try:
            book(amount)
        except otelfin.OtelfinError:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "declined")
        if amount == 500:
            context.abort(grpc.StatusCode.INTERNAL, "ledger bug")
        return b"ok"

    server, port = ledger_server(post)
    codes = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = ledger_call(channel)
            for amount in (1, 2, 402, 500, 3):
                try:
                    call(str(amount).encode(), timeout=10)
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
    finally:
        server.stop(0)
    assert codes[2] is grpc.StatusCode.FAILED_PRECONDITION and codes[3] is grpc.StatusCode.INTERNAL
    get = prom_registry.get_sample_value
    base = {"service": "otelfin-test", "operation": "/otelfin.test.Ledger/Post", "channel": ""}
    count = "otelfin_request_duration_seconds_count"
    assert get(count, {**base, "outcome": "ok"}) == 3
    assert get(count, {**base, "outcome": "declined"}) == 1
    assert get(count, {**base, "outcome": "error"}) == 1
    assert get(count, {**base, "operation": "ledger.book", "outcome": "ok"}) is None
    functions = "otelfin_function_duration_seconds_count"
    assert get(functions, {**base, "operation": "ledger.book", "outcome": "ok"}) == 4
    assert get(functions, {**base, "operation": "ledger.book", "outcome": "declined"}) == 1
    servers = [s for s in spans.get_finished_spans() if s.name == "/otelfin.test.Ledger/Post"]
    servers = [s for s in servers if s.kind.name == "SERVER"]
    outcomes = sorted(
        (s.attributes["otelfin.outcome"], s.status.status_code is StatusCode.ERROR) for s in servers
    )
    assert outcomes == [
        ("declined", False),
        ("error", True),
        ("ok", False),
        ("ok", False),
        ("ok", False),
    ]


def test_pika_consumer_counts_each_message_once(prom_registry: Any) -> None:
    """RabbitMQ on 127.0.0.1: each consumed message is one request (the CONSUMER span); the
    @traced work inside it is a function; the publishing job is a request of its own."""
    import uuid

    from tests.integration.conftest import require_service

    require_service("RabbitMQ", "127.0.0.1", 5672, "rabbitmq-server -detached")

    import otelfin

    @otelfin.traced(name="settle.apply")
    def apply(body: bytes) -> None:
        return None

    @otelfin.traced(name="settle.publish_batch")
    def publish(channel: Any, queue: str) -> None:
        for n in range(3):
            channel.basic_publish("", queue, str(n).encode())

    connection = amqp_connection()
    queue = f"otelfin-test-{uuid.uuid4().hex[:12]}"
    seen: list[bytes] = []
    try:
        channel = connection.channel()
        channel.queue_declare(queue, auto_delete=True)
        publish(channel, queue)

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            apply(body)
            seen.append(body)
            ch.basic_ack(method.delivery_tag)
            if len(seen) == 3:
                ch.stop_consuming()

        consume(channel, queue, on_message)
    finally:
        connection.close()
    samples = [
        (s.name, s.labels, s.value)
        for family in prom_registry.collect()
        for s in family.samples
        if s.name.endswith("_count")
    ]
    requests = {
        lab["operation"]: v
        for n, lab, v in samples
        if n == "otelfin_request_duration_seconds_count"
    }
    functions = {
        lab["operation"]: v
        for n, lab, v in samples
        if n == "otelfin_function_duration_seconds_count"
    }
    assert requests.pop("settle.publish_batch") == 1
    assert list(requests.values()) == [3], requests  # the consumer's operation, 3 messages
    assert functions == {"settle.apply": 3}
