"""ASGI server middleware: a server span per HTTP/websocket request.

::

    from otelfin.instrument.transports.asgi import middleware
    app = middleware(app)

It is the official ``OpenTelemetryMiddleware``; otelfin's propagator reads ``scope["headers"]``
itself (case-insensitive, repeated headers kept in order).
"""

from __future__ import annotations

from typing import Any

from otelfin._errors import mark_unhandled
from otelfin.instrument.transports.web import MarkingApp, server_middleware

__all__ = ["middleware"]


def middleware(app: Any, **kwargs: Any) -> Any:
    """``app`` wrapped in OpenTelemetry's ASGI middleware (kwargs are passed through).

    A FastAPI, Starlette or Django app is instrumented the framework's way instead (route
    templates, one SERVER span per request even when ``configure()`` instruments it too).
    """
    return server_middleware(app, kwargs, "asgi", _Marking)


class _Marking(MarkingApp):
    """The ASGI application inside the server span (see :class:`~.web.MarkingApp`)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        try:
            return await self.app(scope, receive, send)
        except Exception as exc:
            mark_unhandled(exc)
            raise
