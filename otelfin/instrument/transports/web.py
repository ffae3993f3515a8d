"""Web frameworks: FastAPI, Starlette, Flask and Django, switched on by ``configure()`` alone.

Server spans come from the official instrumentations (``opentelemetry-instrumentation-fastapi``,
``-starlette``, ``-flask``, ``-django``): they name spans and set ``http.route`` from the route
template (``POST /payments/{pid}``, ``GET /payments/<pid>``, ``GET payments/<int:pid>``), mark
5xx responses as errors, and FastAPI's own telemetry (FastAPI >= 0.16x) stands down when it
finds their middleware, so a request gets one SERVER span. What otelfin adds, as instrumentors
of its own (rows of the transport table):

* **Apps created before ``configure()``.** The official ``instrument()`` swaps the framework's
  class (``fastapi.FastAPI = ...``), which misses every app made from a name imported earlier
  (``from fastapi import FastAPI`` at the top of a module). otelfin instruments each app when it
  builds its middleware stack (FastAPI, Starlette: on the first request) or on its first call
  (Flask), with the official ``instrument_app``; an app that already served a request before
  ``configure()`` is left alone. Django is instrumented when its handler loads the middleware
  (``get_wsgi_application()`` / ``get_asgi_application()``), so ``configure()`` may run in
  ``settings.py``; the official ``instrument()`` at import time would call
  ``settings.configure()`` on an unconfigured project and break it.
* **Error codes.** An exception with a catalogue code (``OtelfinError``) raised in a handler puts
  ``otelfin.error_code``, ``error.type`` and ``otelfin.outcome`` on the server span (so the RED
  metrics get its ``error_code`` label), status ERROR only when the outcome is ``error`` (a 5xx,
  or a code of severity error/critical: a decline answered 402 stays UNSET), and writes one
  ``http_request_failed`` log line at the catalogue's severity. Hooks: Starlette's
  ``ExceptionMiddleware`` (inside the server span for FastAPI and Starlette), Flask's and
  Django's ``got_request_exception`` signals.
* :func:`instrument_app`: what ``wsgi.middleware`` / ``asgi.middleware`` do when handed a
  framework app, so a hand-added middleware line never makes a second SERVER span.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import weakref
from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.trace import Status, StatusCode

from otelfin import _internal, _outcome
from otelfin._errors import (
    REQUEST_SPAN_KEY,
    UNHANDLED_ERROR_CODE,
    error_code_of,
    mark_unhandled,
)
from otelfin.instrument.transports._base import Patch, patch, unpatch

__all__ = [
    "FastAPIAppsInstrumentor",
    "StarletteAppsInstrumentor",
    "StarletteErrorsInstrumentor",
    "FlaskAppsInstrumentor",
    "DjangoMiddlewareInstrumentor",
    "instrument_app",
    "record_error",
    "catalogue_entry",
    "server_middleware",
    "MarkingApp",
]

_RECORDED = "_otelfin_http_recorded"
_LEVELS = {"info": "info", "warning": "warning", "error": "error", "critical": "critical"}


def catalogue_entry(code: str) -> Any:
    """The entry for ``code`` in the catalogue the tracing pillar was given (None when
    unregistered)."""
    from otelfin.instrument._traced import live_catalogue

    return live_catalogue().get(code)


def record_error(
    exc: BaseException, *, status: int | None = None, route: str | None = None
) -> str | None:
    """Put ``exc``'s catalogue code on the current server span and write one log line.

    Every exception that escapes a handler is also marked with the request's span, for the
    server's crash line (:func:`otelfin._errors.mark_unhandled`).

    Returns the code, or None (and does nothing) for an exception without one. Contained:
    it never raises into the host's error handling.
    """
    # Kept on the exception: the server logs its crash line after the request's span ended.
    mark_unhandled(exc)
    code = error_code_of(exc)
    if code is None:
        if status is None or status >= 500:
            _name_unhandled()
        return None
    if getattr(exc, _RECORDED, False):
        return code  # already recorded (an app mounted in an app: two hooks)
    # An exception type that takes no attributes is recorded anyway (perhaps twice).
    with contextlib.suppress(Exception):
        setattr(exc, _RECORDED, True)
    try:
        span = trace.get_current_span()
        if span.is_recording():
            from otelfin.instrument._traced import live_catalogue

            outcome = _outcome.of_response(code, status, live_catalogue())
            span.set_attribute("otelfin.error_code", code)
            span.set_attribute("error.type", code)
            span.set_attribute(_outcome.ATTRIBUTE, outcome)
            if outcome == _outcome.ERROR:
                span.set_status(Status(StatusCode.ERROR, code))
        from otelfin.logging import get_logger

        entry = catalogue_entry(code)
        level = _LEVELS.get(getattr(entry, "severity", "error"), "error")
        fields: dict[str, Any] = {"error_code": code}
        if status is not None:
            fields["http.status_code"] = status
        if route is not None:
            fields["http.route"] = route
        getattr(get_logger(), level)("http_request_failed", **fields)
    except Exception as err:
        _internal.report("transports.web.record_error", err)
    return code


def _name_unhandled() -> None:
    """An exception without a code left the handler: the request is named by the catalogue's
    code for unhandled errors (``SYS-001``), the code the server's crash line carries, so the
    span, the ``error_code`` label and the log line agree (instead of ``unclassified``). A
    code the span already carries (an inner call's, a problem-details answer) is kept."""
    try:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes = getattr(span, "attributes", None) or {}
        if "otelfin.error_code" not in attributes:
            span.set_attribute("otelfin.error_code", UNHANDLED_ERROR_CODE)
    except Exception as err:
        _internal.report("transports.web.name_unhandled", err)


# --- Starlette and FastAPI ----------------------------------------------------------------------


class _Apps:
    """One framework's apps otelfin instrumented with the official ``instrument_app`` (weakly
    held, to hand back to ``uninstrument_app``), and the patch that finds them."""

    def __init__(self, framework: str, official: str, patches: tuple[Patch, ...]) -> None:
        self.framework = framework
        self.official_name = official  # "module:Class" under opentelemetry.instrumentation
        self.patches = patches
        self.lock = threading.Lock()
        self.apps: weakref.WeakSet[Any] = weakref.WeakSet()
        self.options: dict[str, Any] = {}

    def official(self) -> Any:
        """The official instrumentor class (imported on use)."""
        module, _, name = self.official_name.partition(":")
        return getattr(importlib.import_module(f"opentelemetry.instrumentation.{module}"), name)

    def instrument(self, app: Any) -> None:
        """The official ``instrument_app`` on ``app``, with the options otelfin was given; the
        server span then comes from :class:`~._server.LeanServerSpan` where it can."""
        self.official().instrument_app(app, **self.options)
        if self.framework in ("fastapi", "starlette"):
            from otelfin.instrument.transports import _server

            _server.adopt(app)
        with self.lock:
            self.apps.add(app)

    def start(self, options: dict[str, Any]) -> None:
        """``_instrument``: remember the options and patch."""
        self.options = dict(options)
        patch(self.patches)

    def stop(self) -> None:
        """``_uninstrument``: unpatch, and take the official instrumentation off every app."""
        unpatch(self.patches)
        with self.lock:
            apps = list(self.apps)
            self.apps.clear()
        official = self.official()
        for app in apps:
            try:
                official.uninstrument_app(app)
            except Exception as exc:
                _internal.report(f"transports.{self.framework}.uninstrument_app", exc)


def _fastapi_build(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    # Called while the app has no middleware stack yet (first request): instrument_app
    # replaces this method on the instance, and that replacement calls back here.
    if not getattr(instance, "_is_instrumented_by_opentelemetry", False):
        try:
            _fastapi_apps.instrument(instance)
            return instance.build_middleware_stack()
        except Exception as exc:
            _internal.report("transports.fastapi.instrument_app", exc)
    return wrapped(*args, **kwargs)


def _starlette_build(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not getattr(instance, "_is_instrumented_by_opentelemetry", False) and not _is_fastapi(
        instance
    ):
        try:
            _starlette_apps.instrument(instance)
        except Exception as exc:
            _internal.report("transports.starlette.instrument_app", exc)
    return wrapped(*args, **kwargs)


_fastapi_apps = _Apps(
    "fastapi",
    "fastapi:FastAPIInstrumentor",
    (("fastapi.applications", "FastAPI.build_middleware_stack", _fastapi_build),),
)
_starlette_apps = _Apps(
    "starlette",
    "starlette:StarletteInstrumentor",
    (("starlette.applications", "Starlette.build_middleware_stack", _starlette_build),),
)


def _is_fastapi(app: Any) -> bool:
    return any(cls.__module__.startswith("fastapi") for cls in type(app).__mro__)


async def _exception_middleware(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    except Exception as exc:
        scope = args[0] if args else kwargs.get("scope", {})
        record_error(exc, status=500, route=_scope_route(scope))
        raise


def _scope_route(scope: Any) -> str | None:
    route = scope.get("route") if isinstance(scope, dict) else None
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


class FastAPIAppsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Every FastAPI app gets the official instrumentation, whenever it was created."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The FastAPI versions this instrumentor supports."""
        return ("fastapi >= 0.92",)

    def _instrument(self, **kwargs: Any) -> None:
        _fastapi_apps.start(kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        _fastapi_apps.stop()


class StarletteAppsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Every plain Starlette app (not FastAPI) gets the official instrumentation."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The Starlette versions this instrumentor supports."""
        return ("starlette >= 0.13",)

    def _instrument(self, **kwargs: Any) -> None:
        _starlette_apps.start(kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        _starlette_apps.stop()


_STARLETTE_ERRORS: tuple[Patch, ...] = (
    ("starlette.middleware.exceptions", "ExceptionMiddleware.__call__", _exception_middleware),
)


class StarletteErrorsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Catalogue codes of unhandled handler exceptions onto the server span (see module doc)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The Starlette versions this instrumentor supports."""
        return ("starlette >= 0.13",)

    def _instrument(self, **kwargs: Any) -> None:
        patch(_STARLETTE_ERRORS)

    def _uninstrument(self, **kwargs: Any) -> None:
        unpatch(_STARLETTE_ERRORS)


# --- Flask --------------------------------------------------------------------------------------


def _flask_call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not getattr(instance, "_is_instrumented_by_opentelemetry", False) and not getattr(
        instance, "_got_first_request", False
    ):
        try:
            _flask_apps.instrument(instance)
        except Exception as exc:
            _internal.report("transports.flask.instrument_app", exc)
    return wrapped(*args, **kwargs)


_flask_apps = _Apps(
    "flask", "flask:FlaskInstrumentor", (("flask.app", "Flask.__call__", _flask_call),)
)


def _flask_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
    try:
        import flask

        rule = getattr(flask.request, "url_rule", None)
        route = getattr(rule, "rule", None)
    except Exception:
        route = None
    record_error(exception, status=500, route=route)


class FlaskAppsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Every Flask app gets the official instrumentation on its first request; error codes."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The Flask versions this instrumentor supports."""
        return ("flask >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        import flask

        _flask_apps.start(kwargs)
        flask.got_request_exception.connect(_flask_exception, weak=False)

    def _uninstrument(self, **kwargs: Any) -> None:
        import flask

        flask.got_request_exception.disconnect(_flask_exception)
        _flask_apps.stop()


# --- Django -------------------------------------------------------------------------------------


class _DjangoState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.official: Any = None  # the official instrumentor, when otelfin switched it on
        self.options: dict[str, Any] = {}


_django = _DjangoState()


def _django_load_middleware(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    # Settings are configured by now (the handler is being built from them), so the official
    # instrumentor can add its middleware to settings.MIDDLEWARE without configuring Django.
    try:
        from opentelemetry.instrumentation.django import DjangoInstrumentor as Official

        with _django.lock:
            official = Official()
            if not official.is_instrumented_by_opentelemetry:
                official.instrument(**_django.options)
                if official.is_instrumented_by_opentelemetry:
                    _django.official = official
    except Exception as exc:
        _internal.report("transports.django.instrument", exc)
    return wrapped(*args, **kwargs)


def _django_response_hook(span: Any, request: Any, response: Any) -> None:
    try:
        ctx = span.get_span_context()
        meta = getattr(request, "META", None)
        if ctx.is_valid and isinstance(meta, dict):
            code = (getattr(span, "attributes", None) or {}).get("otelfin.error_code")
            meta[REQUEST_SPAN_KEY] = (
                format(ctx.trace_id, "032x"),
                format(ctx.span_id, "016x"),
                code if isinstance(code, str) else None,
            )
    except Exception as exc:
        _internal.report("transports.django.response_hook", exc)


def _django_exception(sender: Any, request: Any = None, **extra: Any) -> None:
    import sys

    exc = sys.exc_info()[1]
    if exc is None:
        return
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    record_error(exc, status=500, route=route if isinstance(route, str) else None)


class DjangoMiddlewareInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """The official Django instrumentation, switched on when the handler loads its middleware."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """The Django versions this instrumentor supports."""
        return ("django >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        from django.core import signals

        # The response hook runs while the request's span is still current: it leaves the
        # span's ids and code in request.META for Django's own 5xx line, logged after.
        _django.options = {"response_hook": _django_response_hook, **kwargs}
        patch(
            (("django.core.handlers.base", "BaseHandler.load_middleware", _django_load_middleware),)
        )
        signals.got_request_exception.connect(_django_exception, weak=False)

    def _uninstrument(self, **kwargs: Any) -> None:
        from django.core import signals

        signals.got_request_exception.disconnect(_django_exception)
        unpatch(
            (("django.core.handlers.base", "BaseHandler.load_middleware", _django_load_middleware),)
        )
        with _django.lock:
            official, _django.official = _django.official, None
        if official is not None:
            official.uninstrument()


# --- a framework app handed to wsgi.middleware / asgi.middleware --------------------------------


def instrument_app(app: Any) -> Any | None:
    """Instrument a FastAPI, Starlette, Flask or Django app the framework's way.

    Returns what to use in place of ``app`` (the app itself, or for ``flask_app.wsgi_app`` its
    instrumented replacement), or None when ``app`` is not such an app or the framework's
    instrumentation is not installed (the caller then wraps it in the plain middleware).
    """
    try:
        return _instrument_app(app)
    except ImportError:
        return None


def _instrument_app(app: Any) -> Any | None:
    owner = getattr(app, "__self__", None)  # flask_app.wsgi_app, a bound method
    target = owner if owner is not None and _is_flask(owner) else app
    if _is_flask(target):
        if not getattr(target, "_is_instrumented_by_opentelemetry", False):
            _flask_apps.instrument(target)
        return target.wsgi_app if owner is not None else target
    mro = [f"{cls.__module__}.{cls.__qualname__}" for cls in type(app).__mro__]
    if "starlette.applications.Starlette" in mro:
        if not getattr(app, "_is_instrumented_by_opentelemetry", False):
            (_fastapi_apps if _is_fastapi(app) else _starlette_apps).instrument(app)
        return app
    if any(name.startswith("django.core.handlers.") for name in mro):
        from opentelemetry.instrumentation.django import DjangoInstrumentor as Official

        # The handler's middleware chain holds the official middleware when it is switched on.
        return app if Official().is_instrumented_by_opentelemetry else None
    return None


def _is_flask(app: Any) -> bool:
    return any(
        f"{cls.__module__}.{cls.__qualname__}" in ("flask.app.Flask", "flask.sansio.app.App")
        for cls in type(app).__mro__
    )


# --- wsgi.middleware / asgi.middleware ----------------------------------------------------------


def server_middleware(app: Any, kwargs: dict[str, Any], interface: str, marking: type) -> Any:
    """What ``wsgi.middleware`` / ``asgi.middleware`` return (``interface`` names which).

    A framework app (and no middleware options) is instrumented the framework's way
    (:func:`instrument_app`); anything else goes into the official ``OpenTelemetryMiddleware``
    of ``interface`` around ``marking(app)``.
    """
    if not kwargs:
        framework = instrument_app(app)
        if framework is not None:
            return framework
    try:
        official = importlib.import_module(f"opentelemetry.instrumentation.{interface}")
    except ImportError as exc:
        raise ImportError(
            f"otelfin's {interface.upper()} middleware needs "
            f"opentelemetry-instrumentation-{interface}: pip install 'otelfin[http]'"
        ) from exc
    return official.OpenTelemetryMiddleware(marking(app), **kwargs)


class MarkingApp:
    """The application inside the server span: an exception escaping it is marked with the
    request's span before the middleware ends the span, so the server's crash line (logged
    after) carries the request's trace (:func:`otelfin._errors.mark_unhandled`). Subclasses
    define ``__call__`` for their interface; other attributes are the application's."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)
