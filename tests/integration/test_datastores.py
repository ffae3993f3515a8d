"""PostgreSQL (127.0.0.1:5432, user postgres, db test), Redis (6379) and sqlite3: one CLIENT span
per statement with the database semantic conventions, and no card number in any statement.

Every driver is switched on by ``configure()`` (the ``spans`` fixture); the spans asserted on are
the exported ones, after otelfin's scrubber.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otelfin.testing import configured_for_test
from tests.integration.conftest import require_service

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
GROUPED, PLAIN = "4111 1111 1111 1111", "5500005555555559"
MASKED = ("XXXXXXXXXXXX1111", "XXXXXXXXXXXX5559")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def table() -> Iterator[str]:
    """A fresh PostgreSQL table (dropped afterwards), created without instrumentation."""
    require_service(
        "PostgreSQL", "127.0.0.1", 5432, "pg_ctlcluster $(ls /etc/postgresql) main start"
    )
    import psycopg

    name = f"otelfin_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (pan text, note text)")
    yield name
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {name}")


def _stored(table: str) -> list[str]:
    import psycopg

    with psycopg.connect(PG_DSN) as conn:
        return sorted(row[0] for row in conn.execute(f"SELECT pan FROM {table}"))


def _client_spans(spans: InMemorySpanExporter, scope: str) -> list[ReadableSpan]:
    return [
        s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.CLIENT
        and s.instrumentation_scope is not None
        and s.instrumentation_scope.name == f"opentelemetry.instrumentation.{scope}"
    ]


def _statements(found: list[ReadableSpan]) -> list[str]:
    return [str((s.attributes or {}).get("db.statement", "")) for s in found]


def _assert_masked_inserts(found: list[ReadableSpan], table: str) -> None:
    inserts = [t for t in _statements(found) if t.startswith("INSERT")]
    assert len(inserts) == 2, _statements(found)
    text = "\n".join(inserts)
    for pan in (GROUPED, PLAIN, GROUPED.replace(" ", "")):
        assert pan not in text
    assert all(mask in text for mask in MASKED), text
    assert table in text


def _assert_postgres_semconv(span: ReadableSpan, parent: Any) -> None:
    attributes = span.attributes or {}
    assert attributes["db.system"] == "postgresql"
    assert attributes["db.name"] == "test"
    assert attributes["db.user"] == "postgres"
    assert attributes["net.peer.name"] == "127.0.0.1"
    assert attributes["net.peer.port"] == 5432
    assert "db.statement.parameters" not in attributes
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id


def test_psycopg_masks_literals_and_keeps_parameters_out(
    table: str, spans: InMemorySpanExporter
) -> None:
    """psycopg 3: grouped and plain card literals masked; bound parameters not recorded."""
    import psycopg

    with (
        trace.get_tracer("test").start_as_current_span("ledger") as parent,
        psycopg.connect(PG_DSN, autocommit=True) as conn,
    ):
        conn.execute(f"INSERT INTO {table} VALUES ('{GROUPED}', 'grouped')")
        conn.execute(f"INSERT INTO {table} VALUES ('{PLAIN}', 'plain')")
        conn.execute(f"SELECT pan FROM {table} WHERE pan = %s", (PLAIN,))
    found = _client_spans(spans, "psycopg")
    _assert_masked_inserts(found, table)
    for span in found:
        _assert_postgres_semconv(span, parent)
    assert found[0].name == "INSERT"
    assert _stored(table) == [GROUPED, PLAIN]  # the host's data is untouched


def test_psycopg2_masks_literals(table: str, spans: InMemorySpanExporter) -> None:
    """psycopg2: the same, through a cursor."""
    import psycopg2

    with trace.get_tracer("test").start_as_current_span("ledger") as parent:
        conn = psycopg2.connect(PG_DSN)
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute(f"INSERT INTO {table} VALUES ('{GROUPED}', 'grouped')")
                cursor.execute(f"INSERT INTO {table} VALUES ('{PLAIN}', 'plain')")
                cursor.execute(f"SELECT pan FROM {table} WHERE pan = %s", (PLAIN,))
        finally:
            conn.close()
    found = _client_spans(spans, "psycopg2")
    _assert_masked_inserts(found, table)
    for span in found:
        _assert_postgres_semconv(span, parent)
    assert _stored(table) == [GROUPED, PLAIN]


def test_asyncpg_masks_literals(table: str, spans: InMemorySpanExporter) -> None:
    """asyncpg: the same, and a ``$1`` parameter stays out of the span."""
    import asyncpg

    async def run() -> Any:
        with trace.get_tracer("test").start_as_current_span("ledger") as parent:
            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f"INSERT INTO {table} VALUES ('{GROUPED}', 'grouped')")
                await conn.execute(f"INSERT INTO {table} VALUES ('{PLAIN}', 'plain')")
                await conn.fetch(f"SELECT pan FROM {table} WHERE pan = $1", PLAIN)
            finally:
                await conn.close()
        return parent

    parent = asyncio.run(run())
    found = _client_spans(spans, "asyncpg")
    _assert_masked_inserts(found, table)
    for span in found:
        _assert_postgres_semconv(span, parent)
    assert _stored(table) == [GROUPED, PLAIN]


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sqlalchemy_one_span_per_statement(
    driver: str, table: str, spans: InMemorySpanExporter
) -> None:
    """SQLAlchemy over psycopg/psycopg2: one CLIENT span per statement (the driver's is folded
    in), named after the database, statements masked."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"postgresql+{driver}://postgres@127.0.0.1:5432/test")
    try:
        engine.connect().close()  # the dialect's start-up queries, outside the request
        spans.clear()
        with (
            trace.get_tracer("test").start_as_current_span("ledger") as parent,
            engine.begin() as conn,
        ):
            conn.execute(sqlalchemy.text(f"INSERT INTO {table} VALUES ('{GROUPED}', 'g')"))
            conn.execute(sqlalchemy.text(f"INSERT INTO {table} VALUES ('{PLAIN}', 'p')"))
            conn.execute(sqlalchemy.text(f"SELECT pan FROM {table} WHERE pan = :p"), {"p": PLAIN})
    finally:
        engine.dispose()
    clients = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    statements = [s for s in clients if "db.statement" in (s.attributes or {})]
    assert len(statements) == 3, [(s.instrumentation_scope, s.name) for s in clients]
    assert {s.instrumentation_scope.name for s in statements if s.instrumentation_scope} == {
        "opentelemetry.instrumentation.sqlalchemy"
    }
    _assert_masked_inserts(statements, table)
    for span in statements:
        _assert_postgres_semconv(span, parent)
        assert span.name == "INSERT test" or span.name == "SELECT test"
        assert (span.attributes or {})["db.operation"] in ("INSERT test", "SELECT test")
    assert _stored(table) == [GROUPED, PLAIN]


def test_sqlalchemy_asyncio_one_span_per_statement(table: str, spans: InMemorySpanExporter) -> None:
    """SQLAlchemy's asyncio engine over asyncpg: one span per statement there too."""
    import sqlalchemy
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sqlalchemy.text(f"INSERT INTO {table} VALUES ('{GROUPED}', 'g')")
                )
                await conn.execute(sqlalchemy.text(f"INSERT INTO {table} VALUES ('{PLAIN}', 'p')"))
        finally:
            await engine.dispose()

    asyncio.run(run())
    texts = [
        str((s.attributes or {}).get("db.statement"))
        for s in spans.get_finished_spans()
        if str((s.attributes or {}).get("db.statement", "")).startswith("INSERT")
    ]
    assert len(texts) == 2, texts  # not four: asyncpg's own span is folded into SQLAlchemy's
    assert all(GROUPED not in t and PLAIN not in t for t in texts)


def test_sqlalchemy_asyncio_engine_survives_a_shutdown_configure_cycle(table: str) -> None:
    """An async engine made after shutdown()/configure() still gets its one statement span
    (the official instrumentor failed to switch off and kept a dead provider's tracer)."""
    import sqlalchemy

    from otelfin import _internal

    async def run() -> None:
        # Imported after configure(): a name imported earlier is the unwrapped function.
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
        try:
            async with engine.begin() as conn:
                await conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}"))
        finally:
            await engine.dispose()

    seen = []
    for _ in range(2):
        with configured_for_test() as spans:
            asyncio.run(run())
            seen.append(
                [
                    s.instrumentation_scope.name.rsplit(".", 1)[-1]
                    for s in spans.get_finished_spans()
                    if str((s.attributes or {}).get("db.statement", "")).startswith("SELECT count")
                    and s.instrumentation_scope is not None
                ]
            )
    assert seen == [["sqlalchemy"], ["sqlalchemy"]]
    assert _internal.internal_error_counts() == {}


def test_secret_literals_redacted_through_each_driver(
    table: str, spans: InMemorySpanExporter
) -> None:
    """A password clause and a secret column's literal are redacted in psycopg, psycopg2 and
    SQLAlchemy statements (a card number in the secret column ``pan`` with it)."""
    import psycopg
    import psycopg2
    import sqlalchemy

    password = "ALTER ROLE otelfin_no_such_role PASSWORD 'hunter2-secret'"
    insert = f"INSERT INTO {table} (pan, note) VALUES ('{GROUPED}', 'cvv 999 kept')"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(insert)
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute(password)
    conn2 = psycopg2.connect(PG_DSN)
    try:
        with conn2, conn2.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET note = 'n' WHERE pan = '{PLAIN}'")
    finally:
        conn2.close()
    engine = sqlalchemy.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        with engine.begin() as conn3:
            conn3.execute(sqlalchemy.text(insert))
    finally:
        engine.dispose()
    statements = [
        str((s.attributes or {}).get("db.statement"))
        for s in spans.get_finished_spans()
        if (s.attributes or {}).get("db.statement", "").startswith(("INSERT", "ALTER", "UPDATE"))
    ]
    assert len(statements) == 4, statements
    text = "\n".join(statements)
    assert "hunter2" not in text and GROUPED not in text and PLAIN not in text
    assert "PASSWORD '[REDACTED]'" in text and "WHERE pan = '[REDACTED]'" in text
    assert text.count("VALUES ('[REDACTED]', 'cvv 999 kept')") == 2
    assert _stored(table) == [GROUPED, GROUPED]


def test_parameters_recorded_and_masked_on_opt_in(table: str) -> None:
    """db_record_parameters=True: psycopg and asyncpg record parameters, card numbers masked."""
    import asyncpg
    import psycopg

    with configured_for_test(db_record_parameters=True) as spans:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (PLAIN, "psycopg"))

        async def run() -> None:
            conn = await asyncpg.connect(PG_URL)
            try:
                await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", GROUPED, "asyncpg")
            finally:
                await conn.close()

        asyncio.run(run())
        recorded = {
            s.instrumentation_scope.name.rsplit(".", 1)[-1]: str(
                (s.attributes or {}).get("db.statement.parameters")
            )
            for s in spans.get_finished_spans()
            if s.instrumentation_scope is not None and s.name == "INSERT"
        }
    assert recorded == {
        "psycopg": "('XXXXXXXXXXXX5559', 'psycopg')",
        "asyncpg": "('XXXXXXXXXXXX1111', 'asyncpg')",
    }
    assert _stored(table) == [GROUPED, PLAIN]


def test_sqlite3_connection_shortcuts_are_traced(spans: InMemorySpanExporter) -> None:
    """sqlite3: ``conn.execute``/``executemany`` make spans (the official package missed them)."""
    import sqlite3

    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE cards (pan text)")
        conn.execute(f"INSERT INTO cards VALUES ('{GROUPED}')")
        conn.executemany("INSERT INTO cards VALUES (?)", [(PLAIN,), ("x",)])
        conn.cursor().execute(f"INSERT INTO cards VALUES ('{PLAIN}')")
        rows = conn.execute("SELECT count(*) FROM cards").fetchone()
    finally:
        conn.close()
    assert rows == (4,)
    found = _client_spans(spans, "sqlite3")
    assert [s.name for s in found] == ["CREATE", "INSERT", "INSERT", "INSERT", "SELECT"]
    text = "\n".join(_statements(found))
    assert GROUPED not in text and PLAIN not in text and "XXXXXXXXXXXX1111" in text
    assert all((s.attributes or {})["db.system"] == "sqlite" for s in found)


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """A Redis client and a unique key prefix (keys deleted afterwards)."""
    require_service("Redis", "127.0.0.1", 6379, "redis-server --daemonize yes --port 6379")
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    prefix = f"otelfin-test:{uuid.uuid4().hex[:12]}"
    client.prefix = prefix  # type: ignore[attr-defined]
    yield client
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def test_redis_records_neither_keys_nor_arguments(
    redis_client: Any, spans: InMemorySpanExporter
) -> None:
    """Redis: the statement is the command with ``?`` for each key and argument, pipelines too."""
    key = f"{redis_client.prefix}:card:{PLAIN}"
    redis_client.set(key, GROUPED, ex=30)
    redis_client.hset(f"{redis_client.prefix}:user", mapping={"password": "hunter2-secret"})
    assert redis_client.get(key) == GROUPED.encode()
    with redis_client.pipeline() as pipe:
        pipe.set(f"{redis_client.prefix}:cvv", "123")
        pipe.get(key)
        pipe.execute()
    found = _client_spans(spans, "redis")
    assert [s.name for s in found] == ["SET", "HSET", "GET", "SET GET"]
    assert _statements(found) == ["SET ? ? ? ?", "HSET ? ? ?", "GET ?", "SET ? ?\nGET ?"]
    exported = repr([dict(s.attributes or {}) for s in found])
    for secret in (PLAIN, GROUPED, "hunter2", "123", redis_client.prefix):
        assert secret not in exported
    attributes = found[0].attributes or {}
    assert attributes["db.system"] == "redis"
    assert attributes["net.peer.name"] == "127.0.0.1" and attributes["net.peer.port"] == 6379


def test_redis_asyncio_records_no_arguments(redis_client: Any, spans: InMemorySpanExporter) -> None:
    """redis.asyncio: the same sanitised statements."""
    import redis.asyncio

    async def run() -> None:
        client = redis.asyncio.Redis(host="127.0.0.1", port=6379)
        try:
            await client.set(f"{redis_client.prefix}:a", GROUPED, ex=30)
            await client.get(f"{redis_client.prefix}:a")
        finally:
            await client.aclose()

    asyncio.run(run())
    found = _client_spans(spans, "redis")
    assert _statements(found) == ["SET ? ? ? ?", "GET ?"]


_LATE_IMPORT = """
import asyncio, json, sys
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import otelfin
exporter = InMemorySpanExporter()
otelfin.configure("late-import", span_exporter=exporter, span_processor="simple")
assert not {{"psycopg", "sqlalchemy", "redis"}} & set(sys.modules)
import psycopg, redis, sqlalchemy
with psycopg.connect("{dsn}", autocommit=True) as conn:
    conn.execute("SELECT 1")
engine = sqlalchemy.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/test")
with engine.connect() as conn:
    conn.execute(sqlalchemy.text("SELECT 2"))
redis.Redis(host="127.0.0.1", port=6379).ping()
print(json.dumps(sorted({{s.instrumentation_scope.name.rsplit(".", 1)[-1]
                          for s in exporter.get_finished_spans()}})))
"""


def test_libraries_imported_after_configure_are_instrumented() -> None:
    """A fresh process: psycopg, SQLAlchemy and redis imported after configure() make spans."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", "127.0.0.1", 6379)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("OTEL_TRACES_EXPORTER", "OTELFIN_SPANS_FILE", "OTEL_SERVICE_NAME"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", _LATE_IMPORT.format(dsn=PG_DSN)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    scopes = done.stdout.strip().splitlines()[-1]
    assert scopes == '["psycopg", "psycopg2", "redis", "sqlalchemy"]', done.stdout
