"""The lean HTTP server span (otelfin/instrument/transports/_server.py) makes the same span as
the official OpenTelemetryMiddleware: same name, kind, parent, attributes (in order), status,
events and end, for FastAPI and Starlette apps, and hands everything it does not implement to
the official middleware."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.instrumentation import asgi
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelfin.instrument.transports import _server

pytest.importorskip("fastapi")

_token = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12)
_header_value = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=20)


@st.composite
def scopes(draw: Any) -> dict[str, Any]:
    names = st.sampled_from([b"host", b"Host", b"user-agent", b"User-Agent", b"x-other"])
    headers = draw(
        st.lists(st.tuples(names, _header_value.map(lambda v: v.encode("latin-1"))), max_size=5)
    )
    scope: dict[str, Any] = {
        "type": "http",
        "method": draw(st.sampled_from(["GET", "post", "PATCH", "BREW", " get ", ""])),
        "path": draw(st.sampled_from(["/pay", "/pay/7", "", "/a@b", "/x?y"])),
        "headers": headers,
    }
    if draw(st.booleans()):
        scope["scheme"] = draw(st.sampled_from(["http", "https", ""]))
    if draw(st.booleans()):
        scope["http_version"] = draw(st.sampled_from(["1.1", "2", ""]))
    if draw(st.booleans()):
        scope["query_string"] = draw(
            st.sampled_from([b"", b"a=1", b"sig=secret&b=%20x", b"AWSAccessKeyId=k", "q=1"])
        )
    if draw(st.booleans()):
        scope["server"] = draw(
            st.sampled_from([("127.0.0.1", 8000), ("h", 80), ("h", "80"), ("h", None), None])
        )
    if draw(st.booleans()):
        scope["client"] = draw(st.sampled_from([("10.0.0.1", 4000), ("", 0), ("u@x", "p"), None]))
    return scope


@settings(max_examples=1500, deadline=None)
@given(scopes())
@example(
    {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"user-agent", b"a"), (b"user-agent", b"\x80\\")],
    }
)
def test_request_attributes_equal_the_official(scope: dict[str, Any]) -> None:
    with warnings.catch_warnings():  # "unicode_escape" warns on a stray backslash, both sides
        warnings.simplefilter("ignore", DeprecationWarning)
        official = _outcome(lambda: asgi.collect_request_attributes(scope, _StabilityMode.DEFAULT))
        ours = _outcome(lambda: _server.request_attributes(scope))
    assert ours == official


def _outcome(collect: Any) -> Any:
    # a header the official cannot decode raises there (and so in the lean span, alike)
    try:
        return list(collect().items())
    except UnicodeDecodeError as exc:
        return type(exc)


def _spans(app: Any, paths: list[tuple[str, str]], **scope_extra: Any) -> None:
    """Run requests through ``app`` in-process (the caller reads the spans it made)."""

    async def call(method: str, path: str) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"a=1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 40000),
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"user-agent", b"curl/8"),
                (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ],
            **scope_extra,
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(10)
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            return None

        with contextlib.suppress(Exception):
            await app(scope, receive, send)

    for method, path in paths:
        asyncio.run(call(method, path))


def _shape(span: Any, names: dict[int, str]) -> tuple[Any, ...]:
    parent = span.parent.span_id if span.parent else None
    return (
        span.name,
        span.kind,
        names.get(parent, parent) if parent is not None else None,  # a local parent by name
        list(span.attributes.items()),
        span.status.status_code,
        span.status.description,
        [(e.name, dict(e.attributes or {})) for e in span.events],
    )


REQUESTS = [
    ("POST", "/pay/7"),
    ("GET", "/pay/7"),  # 405: a partial match
    ("POST", "/missing"),  # 404
    ("POST", "/pay/boom"),  # an unhandled exception: 500
    ("POST", "/pay/http"),  # an HTTPException answered 503
    ("POST", "/stream"),  # a streamed body (more_body)
]


def _fastapi_app() -> Any:
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.post("/pay/{pid}")
    async def pay(pid: str) -> dict[str, str]:
        if pid == "boom":
            raise RuntimeError("boom")
        if pid == "http":
            raise HTTPException(503, "later")
        return {"ok": pid}

    @app.post("/stream")
    async def stream() -> Any:
        async def chunks() -> Any:
            yield b"a"
            yield b"b"

        return StreamingResponse(chunks())

    return app


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def pay(request: Any) -> Any:
        pid = request.path_params["pid"]
        if pid == "boom":
            raise RuntimeError("boom")
        if pid == "http":
            raise HTTPException(503, "later")
        return JSONResponse({"ok": pid})

    async def stream(request: Any) -> Any:
        async def chunks() -> Any:
            yield b"a"
            yield b"b"

        return StreamingResponse(chunks())

    return Starlette(
        routes=[
            Route("/pay/{pid}", pay, methods=["POST"]),
            Route("/stream", stream, methods=["POST"]),
        ]
    )


def _run(framework: str, lean: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], str]:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor

    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    app = _fastapi_app() if framework == "fastapi" else _starlette_app()
    official = FastAPIInstrumentor if framework == "fastapi" else StarletteInstrumentor
    # a provider of its own, as a user may hand one: FastAPI's own telemetry stays off by the
    # official middleware's presence (it finds it down the stack), not by an unset provider
    # (the Starlette instrumentation has no exclude_spans: its receive/send spans stay, and the
    # lean span hands those requests to the official middleware)
    options: dict[str, Any] = (
        {"exclude_spans": ["receive", "send"]} if framework == "fastapi" else {}
    )
    official.instrument_app(app, tracer_provider=provider, **options)
    if lean:
        _server.adopt(app)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    _spans(app, REQUESTS)
    stack = app.middleware_stack
    kind = type(getattr(stack, "app", None)).__name__
    finished = memory.get_finished_spans()
    names = {s.context.span_id: s.name for s in finished}
    return [_shape(s, names) for s in finished], kind


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
def test_lean_span_equals_the_official(framework: str, monkeypatch: pytest.MonkeyPatch) -> None:
    official, official_kind = _run(framework, False, monkeypatch)
    lean, lean_kind = _run(framework, True, monkeypatch)
    assert official_kind == "OpenTelemetryMiddleware"
    assert lean_kind == "LeanServerSpan"
    if framework == "fastapi":  # one span a request (FastAPI's own telemetry off)
        assert len(official) == len(REQUESTS)
    assert lean == official


def test_a_configured_meter_provider_goes_to_the_official(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The official middleware records http.server.* metrics through a configured meter
    provider; the lean span then hands each request to it."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    provider = TracerProvider()
    app = _fastapi_app()
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, meter_provider=meters, exclude_spans=["receive", "send"]
    )
    _server.adopt(app)
    monkeypatch.setattr("opentelemetry.metrics._internal._METER_PROVIDER", meters)
    _spans(app, [("POST", "/pay/7")])
    data = reader.get_metrics_data()
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "http.server.duration" in names
