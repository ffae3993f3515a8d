"""WSGI server middleware: a server span per request, continuing the caller's trace.

WSGI has no global hook to patch, so the application is wrapped explicitly::

    from otelfin.instrument.transports.wsgi import middleware
    app = middleware(app)

It is the official ``OpenTelemetryMiddleware``; extraction goes through otelfin's propagator,
which reads the environ itself (``HTTP_TRACEPARENT``; repeated headers arrive comma-joined).
"""

from __future__ import annotations

from typing import Any

from otelfin._errors import mark_unhandled
from otelfin.instrument.transports.web import MarkingApp, server_middleware

__all__ = ["middleware"]


def middleware(app: Any, **kwargs: Any) -> Any:
    """``app`` wrapped in OpenTelemetry's WSGI middleware (kwargs are passed through).

    A Flask app (or its ``wsgi_app``) or a Django handler is instrumented the framework's way
    instead (route templates, one SERVER span per request even when ``configure()`` instruments
    it too).
    """
    return server_middleware(app, kwargs, "wsgi", _Marking)


class _Marking(MarkingApp):
    """The WSGI application inside the server span (see :class:`~.web.MarkingApp`)."""

    def __call__(self, environ: Any, start_response: Any) -> Any:
        try:
            return self.app(environ, start_response)
        except Exception as exc:
            mark_unhandled(exc)
            raise
