"""ASGI server middleware: a server span per HTTP/websocket request.

::

    from otelfin.instrument.transports.asgi import middleware
    app = middleware(app)

It is the official ``OpenTelemetryMiddleware``; otelfin's propagator reads ``scope["headers"]``
itself (case-insensitive, repeated headers kept in order).
"""

from __future__ import annotations

from typing import Any

__all__ = ["middleware"]


def middleware(app: Any, **kwargs: Any) -> Any:
    """``app`` wrapped in OpenTelemetry's ASGI middleware (kwargs are passed through).

    A FastAPI, Starlette or Django app is instrumented the framework's way instead (route
    templates, one SERVER span per request even when ``configure()`` instruments it too).
    """
    if not kwargs:
        from otelfin.instrument.transports.web import instrument_app

        framework = instrument_app(app)
        if framework is not None:
            return framework
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ImportError as exc:
        raise ImportError(
            "otelfin's ASGI middleware needs opentelemetry-instrumentation-asgi: "
            "pip install 'otelfin[http]'"
        ) from exc
    return OpenTelemetryMiddleware(_Marking(app), **kwargs)


class _Marking:
    """The application inside the server span: an exception escaping it is marked with the
    request's span before the middleware ends the span, so the server's crash line (logged
    after) carries the request's trace (:func:`otelfin._errors.mark_unhandled`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        try:
            return await self.app(scope, receive, send)
        except Exception as exc:
            from otelfin._errors import mark_unhandled

            mark_unhandled(exc)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)
