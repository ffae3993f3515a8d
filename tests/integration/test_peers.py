"""Every hop named: each client's dependency series has a peer, and its span says the same.

Real calls to real servers on 127.0.0.1 (uvicorn for HTTP, an in-process gRPC server,
PostgreSQL, Redis, RabbitMQ, NATS); what is asserted is what an operator reads: the ``peer``
label on ``otelfin_dependency_duration_seconds`` in the ``/metrics`` exposition otelfin
serves, ``otelfin p99 report --by peer`` against it, and the exported CLIENT/PRODUCER span.
No Kafka broker runs here: the Kafka test drives real producers (confluent-kafka queues the
record locally; kafka-python's send fails to fetch metadata) and reads their spans.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from otelfin.metrics import names
from otelfin.testing import configured_for_test
from otelfin.tools.metrics import series_from_text
from tests.integration._procs import BIN, ROOT, Proc, clean_env, free_port, get, wait_http
from tests.integration.conftest import require_service

LOCAL = "127.0.0.1"


class Observed:
    """otelfin configured with an in-memory exporter and a /metrics port."""

    def __init__(self, spans: InMemorySpanExporter, metrics_url: str) -> None:
        self.spans = spans
        self.metrics_url = metrics_url

    def peers(self, system: str) -> set[str]:
        """The peer label of every dependency series of ``system`` in the served exposition."""
        status, text = get(self.metrics_url)
        assert status == 200
        found = series_from_text(text, names.DEPENDENCY)
        assert all("peer" in s.labels for s in found)
        return {s.labels["peer"] for s in found if s.labels["system"] == system}

    def outgoing(self) -> list[ReadableSpan]:
        """The exported CLIENT and PRODUCER spans."""
        return [
            s
            for s in self.spans.get_finished_spans()
            if s.kind in (SpanKind.CLIENT, SpanKind.PRODUCER)
        ]


@pytest.fixture
def observed() -> Iterator[Observed]:
    """otelfin configured, serving /metrics from a fresh registry on a free port."""
    port = free_port()
    registry = CollectorRegistry()
    with configured_for_test(
        metrics_registry=registry, metrics_port=port, metrics_addr=LOCAL
    ) as exporter:
        yield Observed(exporter, f"http://{LOCAL}:{port}/metrics")


@pytest.fixture(scope="module")
def acquirer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 (not instrumented: it only answers)."""
    port = free_port()
    proc = Proc(
        [
            str(BIN / "uvicorn"),
            "tests.integration.webapps.acquirer_app:app",
            "--host",
            LOCAL,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--app-dir",
            str(ROOT),
        ],
        tmp_path_factory.mktemp("acquirer"),  # its output files go there
        clean_env(),
    )
    url = f"http://{LOCAL}:{port}"
    wait_http(url, proc)
    yield url
    proc.stop()


def _span_peer(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("server.address") or attributes.get("peer.service") or "")


def _assert_named(observed: Observed, system: str, peer: str, scope: str) -> None:
    """The series of ``system`` name ``peer``, and so does each of ``scope``'s spans."""
    assert observed.peers(system) == {peer}
    mine = [
        s
        for s in observed.outgoing()
        if s.instrumentation_scope is not None and s.instrumentation_scope.name.startswith(scope)
    ]
    assert mine, [s.name for s in observed.outgoing()]
    assert {_span_peer(s) for s in mine} == {peer}


def test_http_clients_name_the_url_host(observed: Observed, acquirer: str) -> None:
    """httpx (sync and async), requests, urllib3 and aiohttp: peer = the URL's host."""
    import aiohttp
    import httpx
    import requests
    import urllib3

    url = f"{acquirer}/v1/authorise?ref=abc"
    assert httpx.get(url).text == "approved"
    _assert_named(observed, "http", LOCAL, "opentelemetry.instrumentation.httpx")

    async def async_calls() -> None:
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).text == "approved"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert await response.text() == "approved"

    asyncio.run(async_calls())
    assert requests.get(url, timeout=10).text == "approved"
    with urllib3.PoolManager() as pool:
        assert pool.request("GET", url).data == b"approved"
    scopes = {s.instrumentation_scope.name for s in observed.outgoing() if s.instrumentation_scope}
    for client in ("httpx", "requests", "urllib3", "aiohttp_client"):
        assert f"opentelemetry.instrumentation.{client}" in scopes, scopes
    assert {_span_peer(s) for s in observed.outgoing()} == {LOCAL}
    assert observed.peers("http") == {LOCAL}


def test_grpc_clients_name_the_channel_target(observed: Observed) -> None:
    """Sync and grpc.aio channels: peer = the target's host, on the series and the span."""
    import grpc
    import grpc.aio

    def ident(b: bytes) -> bytes:
        return b

    handler = grpc.method_handlers_generic_handler(
        "pay.Ledger",
        {"Post": grpc.unary_unary_rpc_method_handler(lambda r, c: b"ok", ident, ident)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{LOCAL}:0")
    server.start()
    try:
        with grpc.insecure_channel(f"localhost:{port}") as channel:
            assert channel.unary_unary("/pay.Ledger/Post", ident, ident)(b"x", timeout=5) == b"ok"

        async def aio() -> None:
            async with grpc.aio.insecure_channel(f"dns:///localhost:{port}") as channel:
                call = channel.unary_unary("/pay.Ledger/Post", ident, ident)
                assert await call(b"x", timeout=5) == b"ok"

        asyncio.run(aio())
    finally:
        server.stop(None)
    clients = [s for s in observed.outgoing() if s.name == "/pay.Ledger/Post"]
    assert len(clients) == 2
    assert all((s.attributes or {}).get("server.port") == port for s in clients)
    _assert_named(observed, "grpc", "localhost", "opentelemetry.instrumentation.grpc")


def test_postgres_drivers_name_the_database_host(observed: Observed) -> None:
    """psycopg, asyncpg and SQLAlchemy: peer = the host they connected to."""
    require_service("PostgreSQL", LOCAL, 5432)
    import asyncpg
    import psycopg
    import sqlalchemy

    with psycopg.connect(f"host={LOCAL} port=5432 user=postgres dbname=test") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    async def with_asyncpg() -> None:
        conn = await asyncpg.connect(f"postgresql://postgres@{LOCAL}:5432/test")
        try:
            assert await conn.fetchval("SELECT 2") == 2
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://postgres@{LOCAL}:5432/test")
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT 3")).scalar() == 3
    engine.dispose()
    scopes = {s.instrumentation_scope.name for s in observed.outgoing() if s.instrumentation_scope}
    for driver in ("psycopg", "asyncpg", "sqlalchemy"):
        assert f"opentelemetry.instrumentation.{driver}" in scopes, scopes
    _assert_named(observed, "postgresql", LOCAL, "opentelemetry.instrumentation")


def test_sqlite_is_named_by_its_file(observed: Observed, tmp_path: Path) -> None:
    """sqlite3 gives no host: peer = the database file's name, or "sqlite" in memory."""
    import sqlite3

    conn = sqlite3.connect(tmp_path / "ledger.db")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    assert observed.peers("sqlite") == {"ledger.db"}
    assert all(_span_peer(s) == "ledger.db" for s in observed.outgoing())
    assert all(
        str(tmp_path) not in json.dumps(dict(s.attributes or {})) for s in observed.outgoing()
    )
    memory = sqlite3.connect(":memory:")
    memory.execute("SELECT 1")
    memory.close()
    assert observed.peers("sqlite") == {"ledger.db", "sqlite"}


def test_redis_names_the_server(observed: Observed) -> None:
    """redis-py: peer = the Redis host."""
    require_service("Redis", LOCAL, 6379)
    import redis

    client = redis.Redis(host=LOCAL, port=6379)
    assert client.ping()
    client.close()
    _assert_named(observed, "redis", LOCAL, "opentelemetry.instrumentation.redis")


def test_rabbitmq_clients_name_the_broker(observed: Observed) -> None:
    """pika and aio-pika publishes: peer = the broker host."""
    require_service("RabbitMQ", LOCAL, 5672)
    import aio_pika
    import pika

    queue = f"otelfin-peers-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@{LOCAL}:5672/%2F"))
    channel = connection.channel()
    channel.queue_declare(queue, auto_delete=True)
    channel.basic_publish("", queue, b"settle")

    async def with_aio_pika() -> None:
        conn = await aio_pika.connect(f"amqp://guest:guest@{LOCAL}:5672/")
        async with conn:
            ch = await conn.channel()
            await ch.default_exchange.publish(aio_pika.Message(b"settle"), routing_key=queue)

    asyncio.run(with_aio_pika())
    connection.close()
    scopes = {s.instrumentation_scope.name for s in observed.outgoing() if s.instrumentation_scope}
    assert any("aio_pika" in s for s in scopes) and any(".pika." in s for s in scopes), scopes
    _assert_named(observed, "rabbitmq", LOCAL, "opentelemetry.instrumentation")


def test_nats_names_the_server(observed: Observed) -> None:
    """nats-py publish and request (otelfin's instrumentor): peer = the server host."""
    require_service("NATS", LOCAL, 4222)
    import nats

    async def talk() -> None:
        nc = await nats.connect(f"nats://{LOCAL}:4222")
        try:
            subject = f"peers.{uuid.uuid4().hex[:8]}"

            async def answer(msg: Any) -> None:
                await msg.respond(b"ok")

            await nc.subscribe(subject, cb=answer)
            await nc.publish(subject + ".x", b"settle")
            assert (await nc.request(subject, b"?", timeout=5)).data == b"ok"
        finally:
            await nc.close()

    asyncio.run(talk())
    _assert_named(observed, "nats", LOCAL, "otelfin.instrument.transports.nats")


def _settle() -> None:
    """The task body (never run here: no worker)."""


def test_celery_publish_names_the_broker(observed: Observed) -> None:
    """A Celery apply_async to RabbitMQ: peer = the broker host (no worker needed)."""
    require_service("RabbitMQ", LOCAL, 5672)
    from celery import Celery

    queue = f"otelfin-peers-{uuid.uuid4().hex[:8]}"
    app = Celery("otelfin_peers", broker=f"amqp://guest:guest@{LOCAL}:5672//")
    app.conf.update(task_default_queue=queue, broker_connection_retry_on_startup=True)
    task = app.task(name="otelfin_peers.settle")(_settle)
    with app.connection_for_write() as conn:  # not kombu's shared pool: closed here
        try:
            task.apply_async(producer=conn.Producer())
        finally:
            conn.default_channel.queue_delete(queue)
    producer = [s for s in observed.outgoing() if s.name == "apply_async/otelfin_peers.settle"]
    assert len(producer) == 1
    assert (producer[0].attributes or {})["server.port"] == 5672
    _assert_named(observed, "rabbitmq", LOCAL, "opentelemetry.instrumentation.celery")
    assert "guest" not in json.dumps(dict(producer[0].attributes or {}))


_KAFKA_PRODUCERS = """
import json, warnings
warnings.simplefilter("ignore")
from prometheus_client import CollectorRegistry, generate_latest
from otelfin.metrics import names
from otelfin.testing import configured_for_test
from otelfin.tools.metrics import series_from_text

registry = CollectorRegistry()
with configured_for_test(metrics_registry=registry) as spans:
    import confluent_kafka, kafka, kafka.errors

    producer = confluent_kafka.Producer(
        {"bootstrap.servers": "127.0.0.1:9092", "message.timeout.ms": 100, "log_level": 0}
    )
    producer.produce("payments", b"settle")
    producer.purge()
    legacy = kafka.KafkaProducer(
        bootstrap_servers=["127.0.0.1:9092"], api_version=(2, 5, 0), max_block_ms=100
    )
    try:
        legacy.send("payments", b"settle")
    except kafka.errors.KafkaTimeoutError:
        failed = True
    legacy.close(timeout=1)
    series = series_from_text(generate_latest(registry).decode(), names.DEPENDENCY)
    print(json.dumps({
        "failed": failed,
        "spans": [
            {"name": s.name, "scope": s.instrumentation_scope.name, **dict(s.attributes or {})}
            for s in spans.get_finished_spans()
        ],
        "series": [s.labels for s in series],
    }))
"""


def test_kafka_producers_name_the_bootstrap_broker() -> None:
    """No broker runs here: confluent-kafka queues the record, kafka-python's send fails to
    fetch metadata; both PRODUCER spans and their series name the bootstrap host.

    In a child process: kafka-python leaves the sockets of its refused connections to the
    garbage collector, which pytest would report in whichever test it runs next.
    """
    done = subprocess.run(
        [sys.executable, "-c", _KAFKA_PRODUCERS],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["failed"]
    sends = [s for s in found["spans"] if s["name"] == "payments send"]
    assert sorted(s["scope"] for s in sends) == [
        "opentelemetry.instrumentation.confluent_kafka",
        "opentelemetry.instrumentation.kafka",
    ]
    assert {s["server.address"] for s in sends} == {LOCAL}
    assert {(s["system"], s["peer"], s["outcome"]) for s in found["series"]} == {
        ("kafka", LOCAL, "ok"),
        ("kafka", LOCAL, "error"),
    }


def test_p99_report_by_peer_names_every_hop(observed: Observed, acquirer: str) -> None:
    """`otelfin p99 report --by peer` on the served /metrics: no empty peer row."""
    require_service("PostgreSQL", LOCAL, 5432)
    import sqlite3

    import httpx
    import psycopg

    for _ in range(20):
        httpx.get(f"{acquirer}/v1/authorise")
        with psycopg.connect(f"host={LOCAL} port=5432 user=postgres dbname=test") as conn:
            conn.execute("SELECT 1")
        sqlite3.connect(":memory:").execute("SELECT 1")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "otelfin.cli",
            "p99",
            "report",
            "--scrape",
            observed.metrics_url,
            "--metric",
            names.DEPENDENCY,
            "--by",
            "peer,system",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    peers = {row["value"] for row in report["rows"] if row["label"] == "peer"}
    assert peers == {LOCAL, "sqlite"}, report["rows"]
