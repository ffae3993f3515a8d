"""The HTTP server span of the FastAPI and Starlette apps otelfin instruments, made cheaply.

The official instrumentation (``opentelemetry-instrumentation-fastapi``/``-starlette``) builds
the app's middleware stack around the official ``OpenTelemetryMiddleware``. That middleware is
most of the per-request cost of tracing a small handler: it hands every request attribute to
``start_span`` and then sets each one again on the started span, wraps ``send`` with
``functools.wraps`` per request, and parses the target and computes the attributes of six
metric instruments per request, which it records through the OpenTelemetry meter even when no
meter provider is configured (the records then go nowhere).

:class:`LeanServerSpan` stands in front of that official middleware (which stays in the stack)
and makes the same span for an HTTP request: the official helpers decide its name, its
attributes (``collect_request_attributes`` plus the framework's route details), its kind
(SERVER, or INTERNAL inside an active span), its parent (the global propagator over the
request's headers), its status code attribute and status, the exceptions recorded, and when it
ends (at the response's last body message). What it leaves out is the repeated work above.
Callgrind, ``benchmarks/e2e_overhead.py``'s app driven in-process with otelfin configured: 3.44M
instructions a request with the official middleware answering, 3.17M with this one (the rest of
the request unchanged). The span's name and ``http.route`` come from the official FastAPI
details function, remembered for static routes (``_routes.py``: 18 us -> 0.8 us a request on a
5-route app, timeit).

Everything the fast path does not implement goes to the official middleware, whole: websocket
connections and other scope types, receive/send spans, request hooks, captured headers, a
semantic-convention opt-in other than the default, and any configured meter provider (whose
``http.server.*`` metrics the official middleware records). Keeping the official middleware as
``.app`` also lets FastAPI see it and keep its own telemetry off, as it does for the official
stack.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from opentelemetry import context, metrics, trace
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.propagate import extract

from otelfin import _internal
from otelfin.instrument.transports._routes import route_details

__all__ = ["LeanServerSpan", "adopt", "request_attributes"]

_NO_METER = ("_ProxyMeterProvider", "NoOpMeterProvider")


class LeanServerSpan:
    """ASGI middleware: the official ``OpenTelemetryMiddleware``'s span for HTTP requests,
    without its repeated work (see the module docstring). ``app`` is the official middleware;
    ``fast`` says whether its configuration allows the fast path at all."""

    def __init__(self, official: Any) -> None:
        from opentelemetry.instrumentation import asgi, utils
        from opentelemetry.instrumentation._semconv import _StabilityMode

        self.app = official  # FastAPI looks for the official middleware down the .app chain
        self.inner = official.app
        self.tracer = official.tracer
        self.details: Callable[[Any], tuple[str, dict[str, Any]]] = route_details(
            official.default_span_details
        )
        self.excluded = official.excluded_urls
        self.mode = official._sem_conv_opt_in_mode
        self.url_of: Any = asgi.get_host_port_url_tuple
        self.set_status_code: Any = asgi.set_status_code
        self.getter = asgi.asgi_getter
        self.enabled: Callable[[], bool] = utils.is_http_instrumentation_enabled
        self.fast = (
            self.mode is _StabilityMode.DEFAULT
            and official.exclude_receive_span
            and official.exclude_send_span
            and official.server_request_hook is None
            and official.client_request_hook is None
            and official.client_response_hook is None
            and not official.http_capture_headers_server_request
            and not official.http_capture_headers_server_response
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            not self.fast
            or scope["type"] != "http"
            or type(metrics.get_meter_provider()).__name__ not in _NO_METER
            or get_global_response_propagator() is not None  # type: ignore[no-untyped-call]
        ):
            await self.app(scope, receive, send)
            return
        if not self.enabled():
            await self.inner(scope, receive, send)
            return
        if self.excluded:
            _, _, url = self.url_of(scope)
            if self.excluded.url_disabled(url):
                await self.inner(scope, receive, send)
                return
        name, extra = self.details(scope)
        attributes = request_attributes(scope)
        attributes.update(extra)
        token = None
        if trace.get_current_span() is trace.INVALID_SPAN:
            parent = extract(scope, getter=self.getter)
            token = context.attach(parent)
            kind = trace.SpanKind.SERVER
        else:
            parent = context.get_current()
            kind = trace.SpanKind.INTERNAL
        span = self.tracer.start_span(name, parent, kind, attributes)
        set_status_code = self.set_status_code
        mode = self.mode

        trailers = False

        async def send_and_end(message: dict[str, Any]) -> None:
            nonlocal trailers
            kind = message["type"]
            if kind == "http.response.start":
                trailers = bool(message.get("trailers", False))
                if message["status"]:
                    set_status_code(span, message["status"], attributes, mode)
            await send(message)
            if (
                not trailers
                and kind == "http.response.body"
                and not message.get("more_body", False)
            ) or (
                trailers
                and kind == "http.response.trailers"
                and not message.get("more_trailers", False)
            ):
                span.end()

        try:
            with trace.use_span(span, end_on_exit=False):
                await self.inner(scope, receive, send_and_end)
        finally:
            if token is not None:
                context.detach(token)
            if span.is_recording():
                span.end()


def adopt(app: Any) -> None:
    """Put :class:`LeanServerSpan` in front of the official middleware in ``app``'s stack,
    once the official ``instrument_app`` made it (each time the stack is built)."""
    build = app.build_middleware_stack

    def build_middleware_stack() -> Any:
        stack = build()
        try:
            official = getattr(stack, "app", None)
            if type(official).__name__ == "OpenTelemetryMiddleware":
                stack.app = LeanServerSpan(official)
        except Exception as exc:  # the official stack as built, unchanged
            _internal.report("transports.server.adopt", exc)
        return stack

    app.build_middleware_stack = build_middleware_stack


def _decode(value: Any) -> Any:
    # as the official middleware decodes header names and values
    try:
        return value.decode("utf-8")
    except ValueError:
        return value.decode("unicode_escape")


def request_attributes(scope: Any) -> dict[str, Any]:
    """The official ``collect_request_attributes(scope)`` in the default semantic conventions,
    with the headers decoded once instead of once per header looked up (the official getter
    decodes every header for each of its three lookups), and the URL parsed for redaction
    only when it could hold credentials or a query. ``tests/test_server_span.py`` holds the
    two equal over generated scopes."""
    from opentelemetry.util.http import (
        detect_synthetic_user_agent,
        redact_url,
        sanitize_method,
    )

    hosts: list[str] = []
    agent: str | None = None
    for key, value in scope.get("headers") or ():
        name = _decode(key).lower()
        if name == "host":
            hosts.append(_decode(value))
        elif name == "user-agent":
            decoded = _decode(value)  # each one, as the official decodes (and may raise)
            if agent is None:
                agent = decoded
    server = scope.get("server") or ["0.0.0.0", 80]
    port = server[1]
    server_host = server[0] + (":" + str(port) if str(port) != "80" else "")
    url = scope.get("scheme", "http") + "://" + (hosts[0] if hosts else server_host)
    url += scope.get("path", "")
    query = scope.get("query_string")
    if query:
        if isinstance(query, bytes):
            query = query.decode("utf8")
        url += "?" + unquote(query)
    result: dict[str, Any] = {}
    scheme = scope.get("scheme")
    if scheme:
        result["http.scheme"] = scheme
    if server_host:
        result["http.host"] = server_host
    _int(result, "net.host.port", port)
    flavor = scope.get("http_version")
    if flavor:
        result["http.flavor"] = flavor
    path = scope.get("path")
    if path:
        result["http.target"] = path
    if url:
        result["http.url"] = url if "@" not in url and "?" not in url else redact_url(url)
    method = scope.get("method", "")
    if method:
        normalized = sanitize_method(method).strip()
        if normalized:
            result["http.method"] = normalized
    if hosts:
        result["http.server_name"] = ",".join(hosts)
    if agent is not None:
        if agent:
            result["http.user_agent"] = agent
        synthetic = detect_synthetic_user_agent(agent)
        if synthetic:
            result["user_agent.synthetic.type"] = synthetic
    client = scope.get("client")
    if client is not None and "client" in scope:
        if client[0]:
            result["net.peer.ip"] = client[0]
        _int(result, "net.peer.port", client[1])
    return {k: v for k, v in result.items() if v is not None}


def _int(result: dict[str, Any], key: str, value: Any) -> None:
    if value:
        with contextlib.suppress(ValueError, TypeError):
            result[key] = int(value)
