"""The data-store and task-queue rows of the transport table: switched on by configure(), picked
by name, switched off by shutdown(); no server needed."""

from __future__ import annotations

import importlib

import pytest

from otelfin.instrument import transports
from otelfin.testing import configured_for_test

#: The rows this file covers: transport name -> instrumentor classes (official, then fixes).
ROWS = {
    "postgres": (
        "opentelemetry.instrumentation.psycopg:PsycopgInstrumentor",
        "opentelemetry.instrumentation.psycopg2:Psycopg2Instrumentor",
        "opentelemetry.instrumentation.asyncpg:AsyncPGInstrumentor",
    ),
    "sqlalchemy": (
        "opentelemetry.instrumentation.sqlalchemy:SQLAlchemyInstrumentor",
        "otelfin.instrument.transports.sqlalchemy:SqlAlchemyOneSpanInstrumentor",
    ),
    "sqlite3": (
        "opentelemetry.instrumentation.sqlite3:SQLite3Instrumentor",
        "otelfin.instrument.transports.sqlite3:Sqlite3ShortcutsInstrumentor",
    ),
    "redis": ("opentelemetry.instrumentation.redis:RedisInstrumentor",),
    "celery": (
        "opentelemetry.instrumentation.celery:CeleryInstrumentor",
        "otelfin.instrument.transports.celery:CeleryFixInstrumentor",
    ),
    "kafka": ("opentelemetry.instrumentation.aiokafka:AIOKafkaInstrumentor",),
}


LIBRARIES = (
    "psycopg",
    "psycopg2",
    "asyncpg",
    "sqlalchemy",
    "sqlite3",
    "redis",
    "celery",
    "aiokafka",
)


def _active(path: str) -> bool:
    module, _, cls = path.partition(":")
    return bool(getattr(importlib.import_module(module), cls)().is_instrumented_by_opentelemetry)


def test_rows_are_in_the_table_with_their_extras() -> None:
    """Every data-store instrumentor is a row, named as documented, with an installable extra."""
    by_path = {row.instrumentor: row for row in transports.TABLE}
    for name, paths in ROWS.items():
        for path in paths:
            assert by_path[path].name == name
    extras = {by_path[p].extra for paths in ROWS.values() for p in paths}
    assert extras == {"postgres", "sqlalchemy", "sqlite3", "redis", "celery", "kafka"}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_configure_switches_each_row_on_and_shutdown_off(name: str) -> None:
    """configure() instruments the installed library; reset undoes what otelfin switched on."""
    for library in LIBRARIES:
        importlib.import_module(library)
    with configured_for_test():
        assert name in transports.installed()
        assert all(_active(path) for path in ROWS[name])
    assert not any(_active(path) for path in ROWS[name])


def test_transports_names_pick_rows() -> None:
    """transports=["redis"] switches Redis on and leaves PostgreSQL and Celery off."""
    with configured_for_test(transports=["redis"]):
        assert transports.installed() == ["redis"]
        assert _active(ROWS["redis"][0])
        assert not _active(ROWS["postgres"][0]) and not _active(ROWS["celery"][0])


def test_db_record_parameters_reaches_the_drivers() -> None:
    """db_record_parameters=True turns parameter capture on for asyncpg; off by default."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    with configured_for_test():
        assert AsyncPGInstrumentor._instance.capture_parameters is False
    with configured_for_test(db_record_parameters=True):
        assert AsyncPGInstrumentor._instance.capture_parameters is True


def test_db_record_parameters_typo_is_a_type_error() -> None:
    """A misspelt option names the real one."""
    import otelfin

    with pytest.raises(TypeError, match="db_record_parameters"):
        otelfin.configure("otelfin-test", db_record_parameter=True)


def test_an_official_module_imported_after_configure_is_left_to_the_application() -> None:
    """Importing an official instrumentation module (which imports its library) after
    configure() is not an otelfin failure; the application instruments, shutdown leaves it."""
    import subprocess
    import sys

    code = """
import otelfin
from otelfin import _internal
otelfin.configure("late-official", transports=["postgres"])
assert "psycopg2" not in __import__("sys").modules
from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
assert _internal.internal_error_counts() == {}, _internal.internal_error_counts()
Psycopg2Instrumentor().instrument()
otelfin.shutdown()
assert Psycopg2Instrumentor().is_instrumented_by_opentelemetry
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr
