"""sqlite3: spans for ``connection.execute()`` too, not only for cursors.

The official ``opentelemetry-instrumentation-sqlite3`` returns a traced proxy from
``sqlite3.connect`` whose ``cursor()`` is traced; the connection's own shortcuts
(``execute``, ``executemany``), which are how most sqlite3 code runs its statements, reach the
real connection and its untraced cursor, so they made no span at all. otelfin wraps ``connect``
(after the official wrapper) and gives the traced proxy those two shortcuts, built the way
sqlite3 builds them: a new cursor, its ``execute``, the cursor returned.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otelfin.instrument.transports._base import Patch, patch, unpatch

__all__ = ["Sqlite3ShortcutsInstrumentor"]

_proxy_class: Any = None


def _shortcut_proxy() -> Any:
    """The official connection proxy with ``execute``/``executemany`` through a traced cursor."""
    global _proxy_class
    if _proxy_class is None:
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

        _proxy_class = _Sqlite3ConnectionProxy
    return _proxy_class


def _connect(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    connection = wrapped(*args, **kwargs)
    from opentelemetry.instrumentation.dbapi import TracedConnectionProxy

    proxy = _shortcut_proxy()
    if isinstance(connection, TracedConnectionProxy) and not isinstance(connection, proxy):
        return proxy(connection.__wrapped__, connection._self_db_api_integration)
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
