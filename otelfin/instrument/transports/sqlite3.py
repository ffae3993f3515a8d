"""sqlite3: spans for ``connection.execute()`` too, not only for cursors.

The official ``opentelemetry-instrumentation-sqlite3`` returns a traced proxy from
``sqlite3.connect`` whose ``cursor()`` is traced; the connection's own shortcuts
(``execute``, ``executemany``), which are how most sqlite3 code runs its statements, reach the
real connection and its untraced cursor, so they made no span at all. otelfin wraps ``connect``
(after the official wrapper) and gives the traced proxy those two shortcuts, built the way
sqlite3 builds them: a new cursor, its ``execute``, the cursor returned.

The official wrapper records no database (an sqlite3 connection does not say which file it
opened), so the spans' only clue to their peer was ``db.system``; otelfin gives the traced
connection the file name it was opened with (``ledger.db``, never the directories above it),
which the spans carry as ``db.name`` and the dependency metrics as ``peer``.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from pathlib import PurePath
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otelfin.instrument.transports._base import Patch, patch, unpatch

__all__ = ["Sqlite3ShortcutsInstrumentor"]


@functools.cache  # built once, on first use (the dbapi instrumentation loads only then)
def _shortcut_proxy() -> Any:
    """The official connection proxy with ``execute``/``executemany`` through a traced cursor."""
    from opentelemetry.instrumentation.dbapi import TracedConnectionProxy

    class _Sqlite3ConnectionProxy(TracedConnectionProxy[Any]):
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            cursor = self.cursor()
            cursor.execute(*args, **kwargs)
            return cursor

        def executemany(self, *args: Any, **kwargs: Any) -> Any:
            cursor = self.cursor()
            cursor.executemany(*args, **kwargs)
            return cursor

    return _Sqlite3ConnectionProxy


def _file_name(database: Any) -> str:
    """The file name of an sqlite3 ``database`` argument; "" for memory and temporary ones."""
    if isinstance(database, bytes):
        database = database.decode("utf-8", "replace")
    text = str(database) if isinstance(database, (str, PurePath)) else ""
    if text.startswith("file:"):  # a URI: file:ledger.db?mode=ro
        text = text[5:].split("?", 1)[0]
    if text in ("", ":memory:"):
        return ""
    return PurePath(text).name


def _connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    connection = wrapped(*args, **kwargs)
    from opentelemetry.instrumentation.dbapi import TracedConnectionProxy

    proxy = _shortcut_proxy()
    if isinstance(connection, TracedConnectionProxy) and not isinstance(connection, proxy):
        integration = connection._self_db_api_integration
        if integration is not None and not integration.database:
            database = args[0] if args else kwargs.get("database")
            integration.database = _file_name(database)
        return proxy(connection.__wrapped__, integration)
    return connection


_PATCHES: tuple[Patch, ...] = (
    ("sqlite3", "connect", _connect),
    ("sqlite3.dbapi2", "connect", _connect),
)


class Sqlite3ShortcutsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Trace ``connection.execute``/``executemany`` (see module docstring).

    A row of the transport table after the official sqlite3 instrumentor; without it the
    connection is not a traced proxy and nothing changes.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """sqlite3 is part of the standard library."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        patch(_PATCHES)

    def _uninstrument(self, **kwargs: Any) -> None:
        unpatch(_PATCHES)
