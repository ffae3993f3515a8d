"""RFC 9457 problem details: an ``OtelfinError`` in a web handler as ``application/problem+json``.

One opt-in line per application::

    otelfin.instrument.problem_details(app)          # FastAPI / Starlette or Flask
    MIDDLEWARE = [..., "otelfin.instrument.ProblemDetailsMiddleware"]   # Django

The response carries the live catalogue's ``http_status`` (500 when the code has none or is not
registered), ``type`` (``urn:otelfin:error:<code>`` unless ``type_base`` says otherwise), ``title``
(the catalogue message), ``status``, ``detail`` (the error's own message), ``code``,
``trace_id`` and ``instance`` (the request path), card numbers masked. The same code is put on
the server span and the RED metrics and written on one log line (``record_error``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from opentelemetry import trace

from otelfin._errors import OtelfinError, error_code_of

__all__ = ["problem_details", "problem", "ProblemDetailsMiddleware", "MEDIA_TYPE"]

MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "urn:otelfin:error:"


def problem(
    exc: BaseException, instance: str | None = None, *, type_base: str = _TYPE_BASE
) -> tuple[int, dict[str, Any]]:
    """The HTTP status and RFC 9457 body for ``exc`` (any exception with an ``error_code``).

    Masked with the scrubber's options ``configure()`` handed the tracing pillar (None before:
    the process default), read once per response like the catalogue: the handlers are added
    by the application, often before ``configure()``, so they cannot be handed them.
    """
    from otelfin.instrument._traced import _state as handed
    from otelfin.instrument.transports.web import catalogue_entry
    from otelfin.scrub import scrub_text

    code = error_code_of(exc) or "UNKNOWN"
    entry = catalogue_entry(code)
    status = entry.http_status if entry is not None and entry.http_status else 500
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:  # a catalogue status outside the registry (e.g. 599)
        phrase = "Error"
    message = getattr(exc, "message", None)
    detail = message if isinstance(message, str) and message else str(exc)
    options = handed.scrub_options
    body: dict[str, Any] = {
        "type": f"{type_base}{code}",
        "title": entry.message if entry is not None else phrase,
        "status": status,
        "detail": scrub_text(detail, options=options),
        "code": code,
    }
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        body["trace_id"] = f"{context.trace_id:032x}"
    if instance:
        body["instance"] = scrub_text(instance, options=options)
    return status, body


def _finish(exc: BaseException, status: int, route: str | None) -> None:
    from otelfin.instrument.transports.web import record_error

    record_error(exc, status=status, route=route)


def problem_details(app: Any, *, type_base: str = _TYPE_BASE) -> Any:
    """Render ``OtelfinError`` raised in ``app``'s handlers as problem details; returns ``app``.

    ``app`` is a FastAPI or Starlette application or a Flask application; for Django add
    ``"otelfin.instrument.ProblemDetailsMiddleware"`` to ``MIDDLEWARE``. Anything else is a
    ``ValueError``.
    """
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(app).__mro__}
    if "starlette.applications.Starlette" in names:
        _starlette(app, type_base)
    elif names & {"flask.app.Flask", "flask.sansio.app.App"}:
        _flask(app, type_base)
    elif any(name.startswith("django.") for name in names):
        raise ValueError(
            "for Django add 'otelfin.instrument.ProblemDetailsMiddleware' to settings.MIDDLEWARE"
        )
    else:
        raise ValueError(
            f"problem_details() takes a FastAPI, Starlette or Flask app, not {type(app).__name__}"
        )
    return app


def _starlette(app: Any, type_base: str) -> None:
    from starlette.responses import JSONResponse

    async def handler(request: Any, exc: Exception) -> Any:
        status, body = problem(exc, request.url.path, type_base=type_base)
        route = getattr(request.scope.get("route"), "path", None)
        _finish(exc, status, route if isinstance(route, str) else None)
        return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)

    app.add_exception_handler(OtelfinError, handler)


def _flask(app: Any, type_base: str) -> None:
    import json

    def handler(exc: Exception) -> Any:
        import flask

        status, body = problem(exc, flask.request.path, type_base=type_base)
        rule = getattr(flask.request.url_rule, "rule", None)
        _finish(exc, status, rule if isinstance(rule, str) else None)
        return flask.Response(json.dumps(body), status=status, mimetype=MEDIA_TYPE)

    app.register_error_handler(OtelfinError, handler)


class ProblemDetailsMiddleware:
    """Django middleware: ``OtelfinError`` from a view becomes problem details.

    Add ``"otelfin.instrument.ProblemDetailsMiddleware"`` to ``settings.MIDDLEWARE``.
    """

    type_base = _TYPE_BASE

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)

    def process_exception(self, request: Any, exception: Exception) -> Any:
        """A problem+json response for an ``OtelfinError``; None lets Django handle the rest."""
        if not isinstance(exception, OtelfinError):
            return None
        import json

        from django.http import HttpResponse

        status, body = problem(exception, request.path, type_base=self.type_base)
        route = getattr(getattr(request, "resolver_match", None), "route", None)
        _finish(exception, status, route if isinstance(route, str) else None)
        return HttpResponse(json.dumps(body), status=status, content_type=MEDIA_TYPE)
