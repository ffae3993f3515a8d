"""WSGI server middleware: a server span per request, continuing the caller's trace.

WSGI has no global hook to patch, so the application is wrapped explicitly::

    from otelfin.instrument.transports.wsgi import middleware
    app = middleware(app)

It is the official ``OpenTelemetryMiddleware``; extraction goes through otelfin's propagator,
which reads the environ itself (``HTTP_TRACEPARENT``; repeated headers arrive comma-joined).
"""

from __future__ import annotations

from typing import Any

__all__ = ["middleware"]


def middleware(app: Any, **kwargs: Any) -> Any:
    """``app`` wrapped in OpenTelemetry's WSGI middleware (kwargs are passed through).

    A Flask app (or its ``wsgi_app``) or a Django handler is instrumented the framework's way
    instead (route templates, one SERVER span per request even when ``configure()`` instruments
    it too).
    """
    if not kwargs:
        from otelfin.instrument.transports.web import instrument_app

        framework = instrument_app(app)
        if framework is not None:
            return framework
    try:
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    except ImportError as exc:
        raise ImportError(
            "otelfin's WSGI middleware needs opentelemetry-instrumentation-wsgi: "
            "pip install 'otelfin[http]'"
        ) from exc
    return OpenTelemetryMiddleware(_Marking(app), **kwargs)


class _Marking:
    """The application inside the server span: an exception escaping it is marked with the
    request's span before the middleware ends the span, so the server's crash line (logged
    after) carries the request's trace (:func:`otelfin._errors.mark_unhandled`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: Any, start_response: Any) -> Any:
        try:
            return self.app(environ, start_response)
        except Exception as exc:
            from otelfin._errors import mark_unhandled

            mark_unhandled(exc)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)
