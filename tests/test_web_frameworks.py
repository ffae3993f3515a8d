"""Web frameworks in process: hand-added middleware, late apps, problem details, switching off."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import otelfin
from otelfin.instrument import transports
from otelfin.testing import configured_for_test


def _servers(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def _fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/payments/{pid}")
    async def get_payment(pid: int) -> dict[str, int]:
        if pid == 402:
            raise otelfin.OtelfinError("PAY-012", "declined")
        return {"pid": pid}

    return app


async def _get(app: Any, *paths: str) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [await client.get(path) for path in paths]


async def test_hand_added_asgi_middleware_gives_no_second_server_span() -> None:
    """asgi.middleware(fastapi_app) on top of configure(): one SERVER span, named by template."""
    with configured_for_test() as exporter:
        app = otelfin.instrument.transports.asgi.middleware(_fastapi_app())
        await _get(app, "/payments/1", "/payments/2")
        servers = _servers(exporter)
    assert [s.name for s in servers] == ["GET /payments/{pid}"] * 2
    assert len({s.context.trace_id for s in servers}) == 2


async def test_fastapi_app_created_before_configure_is_instrumented() -> None:
    """An app made from a FastAPI class imported before configure() still gets server spans."""
    app = _fastapi_app()
    with configured_for_test() as exporter:
        otelfin.instrument.problem_details(app)
        (ok, declined) = await _get(app, "/payments/7", "/payments/402")
        servers = _servers(exporter)
    assert ok.status_code == 200 and declined.status_code == 402
    assert declined.headers["content-type"] == "application/problem+json"
    assert [s.name for s in servers] == ["GET /payments/{pid}"] * 2
    assert servers[1].attributes is not None
    assert servers[1].attributes["otelfin.error_code"] == "PAY-012"
    assert declined.json()["trace_id"] == f"{servers[1].context.trace_id:032x}"


async def test_fastapi_without_otelfin_rows_is_left_to_fastapi() -> None:
    """transports=False: otelfin adds no middleware, so it makes no SERVER span of its own."""
    with configured_for_test(transports=False) as exporter:
        await _get(_fastapi_app(), "/payments/1")
        servers = _servers(exporter)
    scopes = {s.instrumentation_scope.name for s in servers if s.instrumentation_scope}
    assert not any(scope.startswith("opentelemetry.instrumentation") for scope in scopes)


async def test_plain_starlette_app_is_named_by_route_template() -> None:
    """A Starlette app (no FastAPI) gets the official Starlette instrumentation."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def show(request: Any) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["pid"])

    app = Starlette(routes=[Route("/payments/{pid}", show)])
    with configured_for_test() as exporter:
        await _get(app, "/payments/3")
        servers = _servers(exporter)
    assert [s.name for s in servers] == ["GET /payments/{pid}"]


def test_hand_added_wsgi_middleware_on_flask_gives_one_server_span() -> None:
    """app.wsgi_app = wsgi.middleware(app.wsgi_app) on top of configure(): one SERVER span."""
    from flask import Flask

    app = Flask("risk")

    @app.get("/payments/<pid>")
    def show(pid: str) -> str:
        return pid

    with configured_for_test() as exporter:
        app.wsgi_app = otelfin.instrument.transports.wsgi.middleware(app.wsgi_app)  # type: ignore[method-assign]
        assert app.test_client().get("/payments/5").status_code == 200
        servers = _servers(exporter)
    assert [s.name for s in servers] == ["GET /payments/<pid>"]


def test_flask_app_that_served_before_configure_is_left_alone() -> None:
    """An app that handled a request before configure() keeps working, unobserved, no error."""
    from flask import Flask

    app = Flask("early")
    app.add_url_rule("/ping", "ping", lambda: "pong")
    assert app.test_client().get("/ping").text == "pong"
    with configured_for_test() as exporter:
        assert app.test_client().get("/ping").text == "pong"
        assert _servers(exporter) == []


def test_problem_details_rejects_what_it_cannot_serve() -> None:
    """problem_details() names the Django middleware for Django and refuses other objects."""
    from django.core.handlers.wsgi import WSGIHandler

    with pytest.raises(ValueError, match="ProblemDetailsMiddleware"):
        otelfin.instrument.problem_details(WSGIHandler.__new__(WSGIHandler))
    with pytest.raises(ValueError, match="FastAPI, Starlette or Flask"):
        otelfin.instrument.problem_details(object())


def test_problem_for_an_unregistered_code_is_a_500() -> None:
    """A code the catalogue does not know answers 500 with the status phrase as title."""
    status, body = otelfin.instrument.problem(otelfin.OtelfinError("ZZZ-999", "odd"), "/x")
    assert status == 500
    assert body["title"] == "Internal Server Error"
    assert body["code"] == "ZZZ-999" and body["detail"] == "odd" and "trace_id" not in body


def test_shutdown_takes_the_framework_patches_off() -> None:
    """After shutdown() no framework method is left wrapped."""
    import django.core.handlers.base as django_base
    import fastapi
    import flask
    import starlette.middleware.exceptions as starlette_exceptions

    targets = [
        (fastapi.FastAPI, "build_middleware_stack"),
        (flask.Flask, "__call__"),
        (starlette_exceptions.ExceptionMiddleware, "__call__"),
        (django_base.BaseHandler, "load_middleware"),
    ]
    with configured_for_test():
        assert {"fastapi", "starlette", "flask", "django"} <= set(transports.installed())
        assert all(hasattr(cls.__dict__[name], "__wrapped__") for cls, name in targets)
    assert not any(hasattr(cls.__dict__[name], "__wrapped__") for cls, name in targets)


async def test_unhandled_coded_error_reaches_span_and_log_without_problem_details(
    captured_logs: Any,
) -> None:
    """No problem_details(): the 500 still carries the code on the span and one log line."""
    with configured_for_test() as exporter:
        (response,) = await _get(_fastapi_app(), "/payments/402")
        (server,) = _servers(exporter)
    assert response.status_code == 500
    assert server.attributes is not None and server.attributes["otelfin.error_code"] == "PAY-012"
    (line,) = [x for x in captured_logs if x.get("event") == "http_request_failed"]
    assert line["error_code"] == "PAY-012"
    assert line["trace_id"] == f"{server.context.trace_id:032x}"
