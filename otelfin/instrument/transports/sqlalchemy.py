"""SQLAlchemy: one CLIENT span per statement, not two.

The official ``opentelemetry-instrumentation-sqlalchemy`` starts a span for every statement an
engine sends; the driver's own instrumentation (psycopg, psycopg2, asyncpg, sqlite3), which
otelfin also switches on, starts a second one for the same ``cursor.execute``. Both are
CLIENT spans with the same statement and nearly the same duration, and the SQLAlchemy one is
not made current, so they are siblings: every query was counted twice in the trace and by
anything that counts CLIENT spans. Measured here: 2 spans per ``conn.execute(text(...))`` on
PostgreSQL through psycopg 3, plus 4 more for the dialect's start-up queries.

The fix keeps SQLAlchemy's span (it names the database: ``SELECT test``, and carries
``db.operation``) and suppresses instrumentation for the driver call it encloses: when the
official instrumentor attaches its listeners to an engine, otelfin adds its own after them
(``before_cursor_execute`` enters OpenTelemetry's ``suppress_instrumentation``,
``after_cursor_execute``/``handle_error`` leave it). Engines the official instrumentor does not
trace (created before ``configure()``) keep their driver spans.

``create_async_engine`` made two official ``EngineTracer`` objects for one engine: the official
instrumentor wraps both it and ``create_engine``, which it calls. SQLAlchemy keeps one copy of
the listener function they share, so the official ``uninstrument()`` then failed
(``InvalidRequestError: No listeners found``), stayed "instrumented" and could not be switched
on again; and SQLAlchemy's asyncio module keeps the ``create_engine`` wrapper of the first
instrumentation, whose tracer belongs to the provider of that time, so after a
``shutdown()``/``configure()`` cycle the statement spans of async engines went to a dead
provider. otelfin lets one ``EngineTracer`` per engine exist and hands it the current tracer.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from otelfin import _internal
from otelfin.instrument.transports._base import Patch, patch, unpatch

__all__ = ["SqlAlchemyOneSpanInstrumentor"]

#: Where the open suppression of one statement is kept: SQLAlchemy's per-statement
#: ExecutionContext, which both "before" and "after" events receive.
_SCOPE = "_otelfin_driver_suppressed"
#: Engines carrying otelfin's listeners (so uninstrument can take them off again), each with
#: the official ``EngineTracer`` that traces it.
_tracers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _before(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any) -> None:
    if context is None or getattr(context, _SCOPE, None) is not None:
        return
    try:
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        scope = suppress_instrumentation()
        scope.__enter__()
        setattr(context, _SCOPE, scope)
    except Exception as exc:
        _internal.report("transports.sqlalchemy.before", exc)


def _release(context: Any) -> None:
    scope = getattr(context, _SCOPE, None)
    if scope is None:
        return
    try:
        setattr(context, _SCOPE, None)
        scope.__exit__(None, None, None)
    except Exception as exc:
        _internal.report("transports.sqlalchemy.after", exc)


def _after(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any) -> None:
    _release(context)


def _error(exception_context: Any) -> None:
    _release(getattr(exception_context, "execution_context", None))


def _listen_after_tracer(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """After ``EngineTracer(tracer, engine, ...)`` registered its listeners, register ours.

    A second tracer for an engine that has one is not set up: the first one is given the new
    tracer instead (see the module docstring on ``create_async_engine``).
    """
    try:
        engine = args[1] if len(args) > 1 else kwargs["engine"]
        tracer = args[0] if args else kwargs["tracer"]
        first = _tracers.get(engine)
    except Exception as exc:
        _internal.report("transports.sqlalchemy.listen", exc)
        return wrapped(*args, **kwargs)
    if first is not None and first is not instance:
        first.tracer = tracer
        return None
    result = wrapped(*args, **kwargs)
    try:
        from sqlalchemy import event

        _tracers[engine] = instance
        # Listeners on one engine run in registration order: ours come after the official
        # span is started, so only the driver call inside it is suppressed.
        for name, listener in _LISTENERS:
            if not event.contains(engine, name, listener):
                event.listen(engine, name, listener)
    except Exception as exc:
        _internal.report("transports.sqlalchemy.listen", exc)
    return result


_LISTENERS: tuple[tuple[str, Any], ...] = (
    ("before_cursor_execute", _before),
    ("after_cursor_execute", _after),
    ("handle_error", _error),
)

_PATCHES: tuple[Patch, ...] = (
    (
        "opentelemetry.instrumentation.sqlalchemy.engine",
        "EngineTracer.__init__",
        _listen_after_tracer,
    ),
)


class SqlAlchemyOneSpanInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Suppress the driver span inside a SQLAlchemy statement span (see module docstring).

    A row of the transport table after the official SQLAlchemy instrumentor; engines created
    while it is active keep one span per statement.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The SQLAlchemy versions the official instrumentor (and so this fix) supports."""
        return ("sqlalchemy >= 1.4, < 2.1",)

    def _instrument(self, **kwargs: Any) -> None:
        patch(_PATCHES)

    def _uninstrument(self, **kwargs: Any) -> None:
        from sqlalchemy import event

        unpatch(_PATCHES)
        for engine in list(_tracers):
            for name, listener in _LISTENERS:
                if event.contains(engine, name, listener):
                    event.remove(engine, name, listener)
        _tracers.clear()
