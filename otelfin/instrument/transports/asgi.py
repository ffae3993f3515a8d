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
    return OpenTelemetryMiddleware(app, **kwargs)
