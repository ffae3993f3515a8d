"""The lean server span remembers the official FastAPI route details for static routes only
(otelfin/instrument/transports/_routes.py), and its spans still carry exactly the name and
``http.route`` the official ``_get_default_span_details`` gives for each request."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelfin.instrument.transports import _routes, _server

pytest.importorskip("fastapi")

from fastapi import APIRouter, FastAPI, WebSocket
from opentelemetry.instrumentation import fastapi as official
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Route

METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "BREW", "get"]
PATHS = [
    "/pay",
    "/pay/",
    "/pay/7",
    "/pay/abc",
    "/items/{pid}",
    "/health",
    "/v1/orders",
    "/v1/orders/9",
    "/v1/admin/stats",
    "/v1/admin/users/3",
    "/sub/x",
    "/sub/",
    "/ws",
    "/docs",
    "/openapi.json",
    "/missing",
    "/",
    "/api/pay",
    "/api/health",
    "/api",
    "/apix/pay",
]


async def _ok() -> dict[str, str]:
    return {"ok": "1"}


async def _sub_endpoint(request: Any) -> Any:
    return PlainTextResponse("sub")


def build_app(parts: set[str]) -> FastAPI:
    """A FastAPI app with the route kinds named in ``parts``."""
    app = FastAPI()
    if "static" in parts:
        app.post("/pay")(_ok)
        app.get("/health")(_ok)  # a POST to it matches only partially (405)
    if "params" in parts:
        app.post("/pay/{pid}")(_ok)
        app.get("/items/{pid}")(_ok)
    if "router" in parts:
        orders = APIRouter(prefix="/orders")
        orders.get("")(_ok)
        orders.get("/{oid}")(_ok)
        admin = APIRouter()
        admin.get("/stats")(_ok)
        admin.get("/users/{uid}")(_ok)
        orders_outer = APIRouter()
        orders_outer.include_router(orders)
        orders_outer.include_router(admin, prefix="/admin")
        app.include_router(orders_outer, prefix="/v1")
    if "mount" in parts:
        app.mount("/sub", Starlette(routes=[Route("/x", _sub_endpoint)]))
    if "websocket" in parts:

        @app.websocket("/ws")
        async def ws(websocket: WebSocket) -> None:
            await websocket.close()

    return app


def instrument(app: Any, monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """The official FastAPI instrumentation with the lean span adopted, spans in memory."""
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    official.FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["receive", "send"]
    )
    _server.adopt(app)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    return memory


def _scope(method: str, path: str, root_path: str | None, host: bytes) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "headers": [(b"host", host), (b"user-agent", b"test")],
    }
    if root_path is not None:
        scope["root_path"] = root_path
    return scope


def request(
    app: Any,
    memory: InMemorySpanExporter,
    method: str,
    path: str,
    root_path: str | None = "",
    host: bytes = b"127.0.0.1:8000",
) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """(lean span's (name, http.route), official function's) for one request through ``app``."""
    scope = _scope(method, path, root_path, host)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def call() -> None:
        with contextlib.suppress(Exception):  # a handler's error: the span is what we read
            await app(scope, receive, send)

    memory.clear()
    asyncio.run(call())
    servers = [s for s in memory.get_finished_spans() if s.kind is trace.SpanKind.SERVER]
    assert len(servers) == 1
    span = servers[0]
    name, extra = official._get_default_span_details(
        {**_scope(method, path, root_path, host), "app": app}
    )
    lean = (span.name, (span.attributes or {}).get("http.route"))
    return lean, (name, extra.get("http.route"))


def memo_of(app: Any) -> Any:
    """The RouteMemo of ``app``'s lean span (after its first request built the stack)."""
    lean = app.middleware_stack.app
    assert type(lean).__name__ == "LeanServerSpan"
    return lean.details


def remembered(app: Any) -> dict[Any, Any] | None:
    details = memo_of(app)
    assert isinstance(details, _routes.RouteMemo)
    return details._routes.memo


_parts = st.sets(st.sampled_from(["static", "params", "router", "mount", "websocket"]))
_requests = st.lists(
    st.tuples(
        st.sampled_from(METHODS),
        st.sampled_from(PATHS),
        st.sampled_from(["", "/api", None]),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(parts=_parts, requests=_requests)
def test_spans_equal_the_official_details(
    parts: set[str], requests: list[tuple[str, str, str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over generated apps and requests, every span's name and http.route are the official
    function's, on the first request and on repeats (answered from the memo)."""
    app = build_app(parts)
    memory = instrument(app, monkeypatch)
    for _ in range(3):
        for method, path, root_path in requests:
            lean, expected = request(app, memory, method, path, root_path)
            assert lean == expected, (method, path, root_path)
    memo = remembered(app)
    assert memo is not None  # these apps' routes all match with the libraries' own code
    for (_, method, path, root_path), (_name, extra) in memo.items():
        route = extra["http.route"]
        assert route in (path, path[len(root_path or "") :])
        assert "{" not in route or route == path
        assert method in _routes._STANDARD_METHODS


def test_static_routes_are_remembered_and_others_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A static route's answer is kept (also a 405 and one below root_path); a parametrised
    path, a mount's path, a 404, an unknown method and a websocket path are not."""
    app = build_app({"static", "params", "router", "mount", "websocket"})
    memory = instrument(app, monkeypatch)
    cases = [
        ("POST", "/pay", ""),
        ("POST", "/health", ""),  # 405
        ("GET", "/api/health", "/api"),
        ("GET", "/v1/admin/stats", ""),
        ("POST", "/pay/7", ""),
        ("GET", "/v1/orders/9", ""),
        ("GET", "/sub/x", ""),
        ("GET", "/missing", ""),
        ("BREW", "/pay", ""),
        ("GET", "/ws", ""),
    ]
    for method, path, root_path in cases * 2:
        lean, expected = request(app, memory, method, path, root_path)
        assert lean == expected
    assert set(remembered(app) or {}) == {
        ("http", "POST", "/pay", ""),
        ("http", "POST", "/health", ""),
        ("http", "GET", "/api/health", "/api"),
        ("http", "GET", "/v1/admin/stats", ""),
    }


def test_routes_added_after_the_first_request_are_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Routes added to the app or to an included router after requests were answered, and a
    route removed, change the answers as they change the official function's."""
    app = build_app({"static", "router"})
    late_router = APIRouter()
    late_router.get("/a")(_ok)
    app.include_router(late_router, prefix="/late")
    memory = instrument(app, monkeypatch)
    for method, path in [("POST", "/pay"), ("GET", "/new"), ("GET", "/late/b")]:
        request(app, memory, method, path)
    assert request(app, memory, "GET", "/new")[0] == ("GET", None)

    app.get("/new")(_ok)
    late_router.get("/b")(_ok)  # into a router already included
    assert request(app, memory, "GET", "/new")[0] == ("GET /new", "/new")
    lean, expected = request(app, memory, "GET", "/late/b")
    assert lean == expected == ("GET /late/b", "/late/b")

    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", "") != "/pay"]
    app.post("/{anything}")(_ok)
    lean, expected = request(app, memory, "POST", "/pay")
    assert lean == expected == ("POST /{anything}", "/{anything}")


def test_a_host_route_turns_the_memo_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Host route reads the host header: nothing of that app is remembered, and the answers
    follow the host header as the official function's do."""
    app = build_app({"static"})
    app.router.routes.insert(0, Host("api.example", app=Starlette(routes=[])))
    memory = instrument(app, monkeypatch)
    for host in [b"api.example", b"other", b"api.example", b"other"]:
        lean, expected = request(app, memory, "POST", "/pay", host=host)
        assert lean == expected
    assert remembered(app) is None


class _HeaderRoute(Route):
    """A route that matches only when a header says so (reads more than the memo's key)."""

    def matches(self, scope: Any) -> Any:
        from starlette.routing import Match

        if (b"x-beta", b"1") not in scope.get("headers", []):
            return Match.NONE, {}
        return super().matches(scope)


def test_a_route_overriding_matches_turns_the_memo_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A route class with its own matches may read anything: that app is not remembered."""
    app = build_app({"static"})
    app.router.routes.insert(0, _HeaderRoute("/beta", _sub_endpoint))
    memory = instrument(app, monkeypatch)
    for _ in range(2):
        lean, expected = request(app, memory, "POST", "/pay")
        assert lean == expected == ("POST /pay", "/pay")
    assert remembered(app) is None
    app.router.routes.pop(0)  # gone: the memo comes back
    request(app, memory, "POST", "/pay")
    assert remembered(app) == {("http", "POST", "/pay", ""): ("POST /pay", {"http.route": "/pay"})}


def test_the_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 distinct parametrised paths leave the memo at its static routes' size."""
    app = build_app({"static", "params"})
    memory = instrument(app, monkeypatch)
    request(app, memory, "POST", "/pay")
    memo = memo_of(app)
    for i in range(10_000):
        scope = {**_scope("POST", f"/pay/{i}", "", b"h"), "app": app}
        assert memo(scope) == ("POST /pay/{pid}", {"http.route": "/pay/{pid}"})
        scope = {**_scope("GET", f"/scan/{i}.php", "", b"h"), "app": app}
        assert memo(scope) == ("GET", {})
    assert len(remembered(app) or {}) == 1


def test_the_memo_stops_adding_at_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """With more static routes than CAPACITY, the memo keeps CAPACITY answers and the rest
    are still answered right."""
    app = FastAPI()
    for i in range(_routes.CAPACITY + 20):
        app.get(f"/r{i}")(_ok)
    memory = instrument(app, monkeypatch)
    request(app, memory, "GET", "/r0")
    memo = memo_of(app)
    for _ in range(2):
        for i in range(_routes.CAPACITY + 20):
            scope = {**_scope("GET", f"/r{i}", "", b"h"), "app": app}
            assert memo(scope) == (f"GET /r{i}", {"http.route": f"/r{i}"})
    assert len(remembered(app) or {}) == _routes.CAPACITY


def test_answers_are_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing the attributes handed out does not change the next answer."""
    app = build_app({"static"})
    memory = instrument(app, monkeypatch)
    request(app, memory, "POST", "/pay")
    memo = memo_of(app)
    scope = {**_scope("POST", "/pay", "", b"h"), "app": app}
    _, extra = memo(scope)
    extra["http.route"] = "changed"
    assert memo(scope) == ("POST /pay", {"http.route": "/pay"})


def test_only_the_official_fastapi_details_are_remembered() -> None:
    """A callback of the user's and the Starlette instrumentation's are called as they are."""
    from opentelemetry.instrumentation import starlette as official_starlette

    def mine(scope: Any) -> tuple[str, dict[str, Any]]:
        return "x", {}

    assert _routes.route_details(mine) is mine
    starlette_details = official_starlette._get_default_span_details
    assert _routes.route_details(starlette_details) is starlette_details
    assert isinstance(_routes.route_details(official._get_default_span_details), _routes.RouteMemo)
