"""End-to-end cost of instrumentation on equal work: one FastAPI payment app, several ways.

The same app (``POST /pay``: pydantic body, two nested functions, JSON work, 2 ms of simulated
I/O with ``asyncio.sleep``, two log lines) runs in one uvicorn worker per variant, selected by
the ``E2E_VARIANT`` environment variable:

* ``none``          no instrumentation (structlog JSON lines without trace ids, orjson renderer);
* ``otel``          OpenTelemetry by hand, as a careful user configures it, **span-matched** with
                    otelfin: SDK + BatchSpanProcessor + OTLP/HTTP exporter, the official FastAPI
                    instrumentation with its per-message spans excluded
                    (``exclude_spans=["receive", "send"]``), the nested functions as hand-written
                    spans, a ``prometheus_client`` histogram per operation (requests with
                    exemplars, functions), structlog with trace ids (orjson, bytes logger);
* ``otel-default``  the same with the instrumentation's defaults (receive/send spans kept, one
                    request histogram): what a user gets without tuning;
* ``otelfin``       ``otelfin.configure()`` defaults (OTLP through ``OTEL_EXPORTER_OTLP_ENDPOINT``),
                    nested functions with ``@otelfin.traced``, ``otelfin.get_logger()``;
* ``ddtrace``       ``ddtrace.auto`` + ``tracer.wrap``, prometheus_client, structlog with its ids;
                    run by ``--peers-python`` (a venv with ddtrace) or this interpreter when
                    ddtrace imports; otherwise reported as not measured, with the reason;
* ``otelfin-gcfreeze`` (only when asked for in ``--variants``) otelfin with ``gc_freeze``.

Every exporter sends to one local sink process, which decodes what it receives (OTLP protobuf;
the Datadog agent's msgpack) and counts spans per server and name, so "spans/request" is read,
not assumed. Method, chosen so that the comparison is fair:

* servers run **one at a time** (started, warmed, measured, stopped), in an order shuffled per
  repetition (interleaved), so no variant pays for another's export thread;
* every request carries a W3C ``traceparent`` of its own: a new trace per request;
* closed loop (``wrk`` when installed, else a bounded asyncio client): requests/s and CPU per
  request from the server's ``/proc/<pid>/stat`` (utime + stime, export thread included), split
  into the main thread (uvicorn's loop: the requests and everything on their path) and the other
  threads (the exporters'), with the cyclic collector's time from the server's ``gc.callbacks``;
* open loop at a rate below 30% of the slowest variant's saturation (``--rate-fraction``, 0.25,
  from a calibration pass; or ``--rate``): an asyncio client sends on schedule whatever the server
  does, latency counted from the scheduled send (no coordinated omission); p50 and p99;
* optional rows: ``--extra N`` (marginal CPU of one more span / log line), ``--slow-ms 20``
  (p50 with a 20 ms handler).

Medians over repetitions with their spread ``[min-max]``; ratios are taken per repetition
(against that repetition's ``none``) and shown as median [min-max]: span-matched (``otel``)
and default against default (``otel-default``, ``ddtrace``).
``--soak`` instead holds an open-loop rate for 30 minutes (``--quick``: 2) with the exporter's
endpoint down half the time, and reports errors, RSS at start and end, spans dropped and
generation-2 garbage collections.

Run: ``python benchmarks/e2e_overhead.py [--quick] [--soak] [--peers-python /venv/bin/python]``
(needs the ``fastapi`` extra and uvicorn, both in ``dev``).
"""

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

BODY = json.dumps(
    {
        "merchant": "m-1042",
        "amount": "129.95",
        "currency": "EUR",
        "channel": "web",
        "items": [{"sku": f"sku-{i}", "qty": i % 3 + 1, "price": "9.99"} for i in range(8)],
    }
).encode()
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# --- the application (runs in the server process; imports only what its variant needs) --------


def _gc_monitor() -> dict[str, Any]:
    """Counts collections per generation and their pauses (generation 2: the tail's first
    suspect; all three: the collector's share of the CPU per request)."""
    stats: dict[str, Any] = {
        "gen2": 0,
        "gen2_ms_total": 0.0,
        "gen2_ms_max": 0.0,
        "collections": [0, 0, 0],
        "collector_ms": [0.0, 0.0, 0.0],
        "started": 0.0,
    }

    def callback(phase: str, info: dict[str, Any]) -> None:
        generation = info.get("generation", 0)
        if phase == "start":
            stats["started"] = time.perf_counter()
            return
        pause = (time.perf_counter() - stats["started"]) * 1000
        stats["collections"][generation] += 1
        stats["collector_ms"][generation] += pause
        if generation == 2:
            stats["gen2"] += 1
            stats["gen2_ms_total"] += pause
            stats["gen2_ms_max"] = max(stats["gen2_ms_max"], pause)

    gc.callbacks.append(callback)
    return stats


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def build_app() -> Any:
    """The ASGI app for ``E2E_VARIANT`` (see the module docstring)."""
    variant = os.environ.get("E2E_VARIANT", "none")
    io_s = float(os.environ.get("E2E_IO_MS", "2")) / 1000
    extra_spans = int(os.environ.get("E2E_EXTRA_SPANS", "0"))
    extra_logs = int(os.environ.get("E2E_EXTRA_LOGS", "0"))
    # E2E_WITHOUT=spans,logs takes a part out of any variant (the decorated functions run bare,
    # the log calls do nothing), so e2e_instructions.py --components can price each part
    without = set(filter(None, os.environ.get("E2E_WITHOUT", "").split(",")))
    # each server exports under its own path, so the sink counts its spans apart
    sink = os.environ.get("E2E_SINK", "http://127.0.0.1:4318")
    name = os.environ.get("E2E_NAME", variant)
    gc_stats = _gc_monitor()
    modules_before = len(sys.modules)

    if variant == "otelfin":
        # configure() first: it may instrument FastAPI when FastAPI is imported
        os.environ.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", f"{sink}/{name}")
        import otelfin

        otelfin.configure(service_name="payment-api")

    import structlog
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Item(BaseModel):
        sku: str
        qty: int
        price: str

    class Payment(BaseModel):
        merchant: str
        amount: str
        currency: str
        channel: str
        items: list[Item]

    app = FastAPI()
    metrics: Callable[[Any], Any] = lambda inner: inner  # noqa: E731  (identity middleware)
    devnull_logs = os.environ.get("E2E_LOG_FILE")

    def plain_structlog(processors: list[Any]) -> Any:
        # structlog's own production advice: orjson rendering to a bytes logger, cached loggers
        import orjson

        out = open(devnull_logs or os.devnull, "wb")  # noqa: SIM115  (lives with the process)
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                *processors,
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            logger_factory=structlog.BytesLoggerFactory(out),
            cache_logger_on_first_use=True,
        )
        return structlog.get_logger()

    if variant == "none":
        log = plain_structlog([])

        def span(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            return lambda fn: fn

    elif variant == "otelfin":
        import otelfin

        log = otelfin.get_logger()

        def span(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            return otelfin.traced(name=name)

    elif variant in ("otel", "otel-default"):
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "payment-api"}))
        exporter = OTLPSpanExporter(endpoint=f"{sink}/{name}/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        tracer = trace.get_tracer("payment-api")

        def add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                event["trace_id"] = format(context.trace_id, "032x")
                event["span_id"] = format(context.span_id, "016x")
            return event

        log = plain_structlog([add_trace_ids])

        # The careful user ("otel", span-matched): the same spans otelfin makes (the ASGI
        # middleware's per-message receive/send spans excluded) and a histogram per operation.
        # "otel-default": what the instrumentation's defaults give, one request histogram.
        matched = variant == "otel"
        function_seconds = _function_histogram() if matched else None

        def span(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
                if asyncio.iscoroutinefunction(fn):

                    async def run_async(*args: Any, **kwargs: Any) -> Any:
                        start = time.perf_counter()
                        outcome = "error"
                        try:
                            with tracer.start_as_current_span(name):
                                result = await fn(*args, **kwargs)
                            outcome = "ok"
                            return result
                        finally:
                            if function_seconds is not None:
                                function_seconds.labels(name, outcome).observe(
                                    time.perf_counter() - start
                                )

                    return run_async

                def run(*args: Any, **kwargs: Any) -> Any:
                    start = time.perf_counter()
                    outcome = "error"
                    try:
                        with tracer.start_as_current_span(name):
                            result = fn(*args, **kwargs)
                        outcome = "ok"
                        return result
                    finally:
                        if function_seconds is not None:
                            function_seconds.labels(name, outcome).observe(
                                time.perf_counter() - start
                            )

                return run

            return decorate

        metrics = _prometheus_red(lambda: trace.get_current_span().get_span_context().trace_id)
        if matched:
            FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"])
        else:
            FastAPIInstrumentor.instrument_app(app)
    elif variant == "ddtrace":
        os.environ.setdefault("DD_TRACE_AGENT_URL", f"{sink}/{name}")
        # no agent here: keep ddtrace to tracing (no remote config or telemetry polling)
        for flag in ("DD_REMOTE_CONFIGURATION_ENABLED", "DD_INSTRUMENTATION_TELEMETRY_ENABLED"):
            os.environ.setdefault(flag, "false")
        os.environ.setdefault("DD_SERVICE", "payment-api")
        import ddtrace.auto  # noqa: F401  (patches FastAPI, starlette, asyncio)
        from ddtrace.trace import tracer as dd_tracer

        def add_dd_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
            current = dd_tracer.current_span()
            if current is not None:
                event["dd.trace_id"] = str(current.trace_id)
                event["dd.span_id"] = str(current.span_id)
            return event

        log = plain_structlog([add_dd_ids])

        def span(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            return dd_tracer.wrap(name=name)  # type: ignore[no-any-return]

        metrics = _prometheus_red(lambda: getattr(dd_tracer.current_span(), "trace_id", 0))
    else:
        raise SystemExit(f"unknown E2E_VARIANT {variant!r}")

    if "logs" in without:
        log = _Silent()
    if "spans" in without:

        def span(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
            return lambda fn: fn

    @span("risk_score")
    def risk_score(payment: Payment) -> float:
        basket = sum(item.qty * float(item.price) for item in payment.items)
        features = json.dumps({"m": payment.merchant, "basket": basket, "n": len(payment.items)})
        return (len(features) % 17) / 17

    @span("step")
    def step(i: int) -> int:
        return i + 1

    @span("authorise")
    async def authorise(payment: Payment) -> dict[str, Any]:
        score = risk_score(payment)
        await asyncio.sleep(io_s)  # the acquirer's round trip
        for i in range(extra_spans):
            step(i)
        return {"status": "authorised", "score": round(score, 3), "auth_code": "A1B2C3"}

    @app.post("/pay")
    async def pay(payment: Payment) -> dict[str, Any]:
        log.info("payment_received", merchant=payment.merchant, amount=payment.amount)
        result = await authorise(payment)
        for i in range(extra_logs):
            log.info("payment_step", step=i)
        log.info("payment_authorised", merchant=payment.merchant, status=result["status"])
        return {"merchant": payment.merchant, "amount": payment.amount, **result}

    served: Any = metrics(app)
    if variant == "otelfin" and not _otelfin_instruments_fastapi():
        from otelfin.instrument.transports import asgi

        served = asgi.middleware(served)

    stats_base = {
        "variant": variant,
        "modules_added": len(sys.modules) - modules_before,
        "rss_kb_start": _rss_kb(),
    }

    async def outer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/_stats":
            full = scope.get("query_string", b"") == b"full=1"
            body = json.dumps(
                {
                    **stats_base,
                    "rss_kb": _rss_kb(),
                    "modules": len(sys.modules),
                    "gc": {k: v for k, v in gc_stats.items() if k != "started"},
                    "gc_counts": gc.get_count(),
                    "tracked_objects": len(gc.get_objects()) if full else None,
                    "internal_errors": _internal_errors(),
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await served(scope, receive, send)

    return outer


class _Silent:
    """A logger whose lines go nowhere (``E2E_WITHOUT=logs``)."""

    def info(self, event: str, **fields: Any) -> None:
        pass


def _otelfin_instruments_fastapi() -> bool:
    try:
        from otelfin.instrument.transports import TABLE
    except ImportError:
        return False
    return any(row.library == "fastapi" for row in TABLE)


def _internal_errors() -> Any:
    try:
        from otelfin import _internal

        return _internal.internal_error_counts()
    except Exception:
        return None


def _function_histogram() -> Any:
    """One histogram for the functions' spans (the by-hand twin of otelfin's function series)."""
    from prometheus_client import Histogram

    return Histogram(
        "function_duration_seconds",
        "Duration of instrumented functions",
        ["operation", "outcome"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    )


def _prometheus_red(trace_id: Callable[[], int]) -> Callable[[Any], Any]:
    """RED metrics by hand: a pure ASGI middleware with a prometheus_client histogram."""
    from prometheus_client import Counter, Histogram

    duration = Histogram(
        "http_server_request_duration_seconds",
        "HTTP server request duration",
        ["method", "route", "status_code"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    )
    errors = Counter("http_server_errors_total", "HTTP 5xx responses", ["method", "route"])

    def wrap(app: Any) -> Any:
        async def red(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = [500]

            async def capture(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                tid = trace_id()
                exemplar = {"trace_id": format(tid, "032x")} if tid else None
                duration.labels(scope["method"], route, str(status[0])).observe(
                    time.perf_counter() - start, exemplar=exemplar
                )
                if status[0] >= 500:
                    errors.labels(scope["method"], route).inc()

        return red

    return wrap


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        build_app(),
        host="127.0.0.1",
        port=port,
        workers=1,
        log_level="warning",
        access_log=False,
        lifespan="off",
        # idle keep-alive connections stay open: the open-loop client's pool reuses them
        timeout_keep_alive=120,
    )


# --- the span sink (its own process: an OTLP/HTTP endpoint, optionally down half the time) ----


class Sink:
    """Accepts OTLP/HTTP (and any other POST), counts spans per first path segment."""

    def __init__(self, toggle_s: float) -> None:
        self.toggle_s = toggle_s
        self.counts: dict[str, dict[str, int]] = {}
        self.names: dict[str, dict[str, int]] = {}
        self.writers: set[asyncio.StreamWriter] = set()
        try:
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                ExportTraceServiceRequest,
            )

            self.request_type: Any = ExportTraceServiceRequest
        except ImportError:
            self.request_type = None

    def _count(self, path: str, body: bytes, content_type: str) -> None:
        variant = path.strip("/").split("/", 1)[0] or "-"
        if variant.startswith("v0."):  # the Datadog agent API, used by ddtrace only
            variant = "ddtrace"
        entry = self.counts.setdefault(variant, {"posts": 0, "spans": 0, "bytes": 0})
        entry["posts"] += 1
        entry["bytes"] += len(body)
        if self.request_type is not None and "protobuf" in content_type:
            request = self.request_type()
            request.ParseFromString(body)
            names = self.names.setdefault(variant, {})
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    entry["spans"] += len(scope_spans.spans)
                    for span in scope_spans.spans:
                        key = f"{scope_spans.scope.name}: {span.name}"
                        names[key] = names.get(key, 0) + 1
        elif "msgpack" in content_type:  # the Datadog agent API (ddtrace): decode and count
            names = self.names.setdefault(variant, {})
            for span_name in _datadog_span_names(path, body):
                entry["spans"] += 1
                key = f"ddtrace: {span_name}"
                names[key] = names.get(key, 0) + 1
        elif "json" in content_type:
            entry["spans"] += body.count(b'"spanId"')

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "GET" and path == "/_counts":
                    payload = json.dumps(self.counts).encode()
                elif method == "GET" and path == "/_names":
                    payload = json.dumps(self.names).encode()
                elif method == "GET" and path == "/_start_toggling":
                    self.toggling.set()
                    payload = b"{}"
                else:
                    self._count(path, body, headers.get("content-type", ""))
                    payload = b"{}"
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def run(self, port: int, control_port: int) -> None:
        self.toggling = asyncio.Event()
        control = await asyncio.start_server(self.handle, "127.0.0.1", control_port)
        async with control:
            server = await asyncio.start_server(self.handle, "127.0.0.1", port)
            if not self.toggle_s:
                await server.serve_forever()
            await self.toggling.wait()  # up until the driver has calibrated
            while True:
                await asyncio.sleep(self.toggle_s)
                server.close()  # down: connections refused, open ones cut
                for writer in list(self.writers):
                    if writer.get_extra_info("sockname")[1] == port:
                        writer.close()
                await server.wait_closed()
                await asyncio.sleep(self.toggle_s)
                server = await asyncio.start_server(self.handle, "127.0.0.1", port)


def _unpack(data: bytes, at: int = 0) -> tuple[Any, int]:
    """A minimal MessagePack decoder (the types ddtrace's agent payloads use)."""
    b = data[at]
    at += 1
    if b <= 0x7F:
        return b, at
    if b >= 0xE0:
        return b - 0x100, at
    if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
        if b <= 0x8F:
            n = b & 0x0F
        else:
            size = 2 if b == 0xDE else 4
            n, at = int.from_bytes(data[at : at + size], "big"), at + size
        out: dict[Any, Any] = {}
        for _ in range(n):
            key, at = _unpack(data, at)
            out[key], at = _unpack(data, at)
        return out, at
    if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
        if b <= 0x9F:
            n = b & 0x0F
        else:
            size = 2 if b == 0xDC else 4
            n, at = int.from_bytes(data[at : at + size], "big"), at + size
        items = []
        for _ in range(n):
            item, at = _unpack(data, at)
            items.append(item)
        return items, at
    if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        if b <= 0xBF:
            n = b & 0x1F
        else:
            size = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[b]
            n, at = int.from_bytes(data[at : at + size], "big"), at + size
        raw = data[at : at + n]
        return (raw.decode("utf-8", "replace") if b < 0xC4 or b > 0xC6 else raw), at + n
    if b == 0xC0:
        return None, at
    if b in (0xC2, 0xC3):
        return b == 0xC3, at
    if b in (0xCA, 0xCB):
        import struct

        size = 4 if b == 0xCA else 8
        return struct.unpack(">f" if size == 4 else ">d", data[at : at + size])[0], at + size
    sizes = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
    if b in sizes:
        size = sizes[b]
        value = int.from_bytes(data[at : at + size], "big", signed=b >= 0xD0)
        return value, at + size
    raise ValueError(f"msgpack type 0x{b:02x} not handled")


def _datadog_span_names(path: str, body: bytes) -> list[str]:
    """The span names in one Datadog agent payload (v0.4: maps; v0.5: a string table)."""
    if not body:
        return []
    payload, _ = _unpack(body)
    if "v0.5" in path:
        strings, traces = payload
        return [strings[span[1]] for trace in traces for span in trace]
    return [str(span.get("name")) for trace in payload for span in trace]


# --- load generators (the driver process) --------------------------------------------------------


def _request_bytes(port: int) -> bytes:
    """One request, with a sampled W3C parent of its own (a new trace each time, as behind a
    gateway: requests never share a trace)."""
    ids = random.getrandbits(192).to_bytes(24, "big").hex()
    return (
        f"POST /pay HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"traceparent: 00-{ids[:32]}-{ids[32:]}-01\r\n"
        f"content-length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    late: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def fail(self, kind: str) -> None:
        self.errors += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


async def open_loop(port: int, rate: float, seconds: float, max_inflight: int = 512) -> LoadResult:
    """Send at ``rate`` req/s on schedule; latency from the scheduled time to the last byte."""
    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    result = LoadResult()
    inflight = 0
    total = int(rate * seconds)
    start = loop.time() + 0.05

    async def one(scheduled: float) -> None:
        nonlocal inflight
        try:
            connection = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
            reader, writer = connection
            writer.write(_request_bytes(port))
            status = await asyncio.wait_for(_read_response(reader), 30)
            result.latencies.append(loop.time() - scheduled)
            if status != 200:
                result.fail(f"HTTP {status}")
            idle.append(connection)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            result.fail(type(exc).__name__)
        finally:
            inflight -= 1

    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if inflight >= max_inflight:  # bounded: the server cannot keep up
            result.fail("not sent (client bound reached)")
            result.late += 1
            continue
        inflight += 1
        tasks.append(asyncio.ensure_future(one(scheduled)))
    await asyncio.gather(*tasks)
    result.requests = len(result.latencies)
    result.seconds = loop.time() - start
    for _, writer in idle:
        writer.close()
    return result


async def closed_loop_python(port: int, connections: int, seconds: float) -> LoadResult:
    """A bounded closed-loop client (``connections`` keep-alive clients) when wrk is missing."""
    loop = asyncio.get_running_loop()
    result = LoadResult()
    deadline = loop.time() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while loop.time() < deadline:
                writer.write(_request_bytes(port))
                if await _read_response(reader) != 200:
                    result.errors += 1
                result.requests += 1
        finally:
            writer.close()

    started = loop.time()
    await asyncio.gather(*(client() for _ in range(connections)))
    result.seconds = loop.time() - started
    return result


_WRK_LUA = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
local hex = "0123456789abcdef"
local function id(n)
  local t = {{}}
  for i = 1, n do
    local k = math.random(1, 16)
    t[i] = hex:sub(k, k)
  end
  return table.concat(t)
end
request = function()
  wrk.headers["traceparent"] = "00-" .. id(32) .. "-" .. id(16) .. "-01"
  return wrk.format()
end
"""


def closed_loop_wrk(wrk: str, port: int, connections: int, seconds: float, lua: str) -> LoadResult:
    out = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            lua,
            f"http://127.0.0.1:{port}/pay",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if done is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    elapsed = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return LoadResult(requests=int(done.group(1)), errors=errors, seconds=elapsed)


# --- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU seconds of the whole server process (all its threads)."""
    return _stat_seconds(f"/proc/{pid}/stat")


def request_thread_seconds(pid: int) -> float:
    """CPU seconds of the server's main thread (uvicorn's event loop: the requests and
    everything done on their path), apart from its other threads (the exporters')."""
    return _stat_seconds(f"/proc/{pid}/task/{pid}/stat")


def _stat_seconds(path: str) -> float:
    with open(path) as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def collector_ms(server: "Server") -> float:
    """Milliseconds the server's cyclic garbage collector has run so far (all generations)."""
    try:
        return float(sum(server.stats()["gc"].get("collector_ms", [0.0])))
    except (OSError, KeyError, TypeError, ValueError):
        return float("nan")


def get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class Server:
    name: str
    variant: str
    env: dict[str, str]
    python: str = sys.executable
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self, sink: str, log_dir: str) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            **self.env,
            "E2E_VARIANT": self.variant,
            "E2E_NAME": self.name,
            "E2E_SINK": sink,
            "OTEL_SERVICE_NAME": "payment-api",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_PROPAGATORS"):
            if name not in self.env:
                env.pop(name, None)
        stderr = open(os.path.join(log_dir, f"{self.name}.stderr"), "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [self.python, os.path.abspath(__file__), "--serve", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )  # the priority (--nice) is inherited from the driver

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            with contextlib.suppress(OSError):
                self.stats()
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start within {timeout} s")

    def stats(self, full: bool = False) -> dict[str, Any]:
        query = "?full=1" if full else ""
        return get_json(f"http://127.0.0.1:{self.port}/_stats{query}")  # type: ignore[no-any-return]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_sink(toggle_s: float = 0.0) -> tuple[subprocess.Popen[bytes], str, str]:
    port, control = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--sink",
            str(port),
            str(control),
            str(toggle_s),
        ]
    )
    for _ in range(100):
        with contextlib.suppress(OSError):
            get_json(f"http://127.0.0.1:{control}/_counts")
            break
        time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{control}/_counts"


# --- the study -----------------------------------------------------------------------------------


@dataclass
class Measure:
    """One variant's figures over the repetitions."""

    cpu_us: list[float] = field(default_factory=list)
    #: of cpu_us: the main thread (requests) and the garbage collector (any thread)
    request_thread_us: list[float] = field(default_factory=list)
    collector_us: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    errors: int = 0
    requests: int = 0


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def show(values: Sequence[float], digits: int = 0) -> str:
    if not values:
        return "-"
    text = f"{med(values):,.{digits}f}"
    if len(values) > 1:
        text += f" [{min(values):,.{digits}f}-{max(values):,.{digits}f}]"
    return text


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def measure_closed(
    server: Server, args: argparse.Namespace, wrk: str | None, lua: str, into: Measure
) -> None:
    gc_before = collector_ms(server)
    before = cpu_seconds(server.pid)
    main_before = request_thread_seconds(server.pid)
    if wrk:
        result = closed_loop_wrk(wrk, server.port, args.connections, args.closed_seconds, lua)
    else:
        result = asyncio.run(closed_loop_python(server.port, args.connections, args.closed_seconds))
    used = cpu_seconds(server.pid) - before
    main_used = request_thread_seconds(server.pid) - main_before
    gc_used = collector_ms(server) - gc_before
    if result.requests:
        into.cpu_us.append(used / result.requests * 1e6)
        into.request_thread_us.append(main_used / result.requests * 1e6)
        into.collector_us.append(gc_used / result.requests * 1e3)
        into.rps.append(result.requests / result.seconds)
    into.errors += result.errors
    into.requests += result.requests


def measure_open(server: Server, args: argparse.Namespace, into: Measure) -> None:
    result = asyncio.run(open_loop(server.port, args.rate, args.open_seconds))
    latencies = sorted(result.latencies)
    into.p50_ms.append(percentile(latencies, 0.50) * 1000)
    into.p99_ms.append(percentile(latencies, 0.99) * 1000)
    into.errors += result.errors
    into.requests += result.requests


LABELS = {
    "none": "no instrumentation",
    "otel": "OpenTelemetry by hand, span-matched",
    "otel-default": "OpenTelemetry by hand, instrumentation defaults",
    "otelfin": "otelfin configure() defaults",
    "ddtrace": "ddtrace defaults",
    "otelfin-gcfreeze": "otelfin defaults + gc_freeze",
}

#: Variants that are another variant with settings: (app variant, environment).
DERIVED = {
    "otelfin-gcfreeze": ("otelfin", {"OTELFIN_GC_FREEZE": "1"}),
}


_PEER_IMPORTS = "import ddtrace, fastapi, uvicorn, structlog, orjson, prometheus_client"


def _python_for(variant: str, args: argparse.Namespace) -> tuple[str | None, str]:
    """The interpreter that runs ``variant``, or None and the reason it is not measured."""
    if variant != "ddtrace":
        return sys.executable, ""
    missing = ""
    for python in filter(None, (args.peers_python, sys.executable)):
        found = subprocess.run(
            [
                python,
                "-c",
                "import ddtrace, fastapi, uvicorn, structlog, orjson, prometheus_client",
            ],
            capture_output=True,
        )
        if found.returncode == 0:
            return python, ""
        lines = found.stderr.decode(errors="replace").strip().splitlines()
        missing = missing or f" ({python}: {lines[-1] if lines else 'import failed'})"
    return None, (
        "not measured: ddtrace and the app's libraries (fastapi, uvicorn, structlog, orjson, "
        f"prometheus_client) do not all import{missing}; give --peers-python, a venv with them"
    )


def run_server(
    server: Server, sink: str, counts_url: str, log_dir: str, phases: Callable[[Server], None]
) -> tuple[int, dict[str, int], dict[str, Any]]:
    """Start ``server`` alone, run ``phases`` on it, stop it (it flushes its spans on exit).

    Returns the spans the sink received from this server's life, by name, and its end stats.
    """
    before = get_json(counts_url)
    names_before = get_json(counts_url.replace("_counts", "_names"))
    server.start(sink, log_dir)
    try:
        server.wait_ready()
        phases(server)
        stats = server.stats(full=False)
    finally:
        server.stop()
    # the exporter's last batch goes out at exit; give the sink a moment to count it
    deadline = time.monotonic() + 5
    key = server.name
    while True:
        counts = get_json(counts_url)
        got = counts.get(key, {}).get("spans", 0) - before.get(key, {}).get("spans", 0)
        if got or time.monotonic() > deadline or server.variant == "none":
            break
        time.sleep(0.2)
    time.sleep(0.3)
    counts = get_json(counts_url)
    names = get_json(counts_url.replace("_counts", "_names")).get(key, {})
    old = names_before.get(key, {})
    spans = counts.get(key, {}).get("spans", 0) - before.get(key, {}).get("spans", 0)
    return spans, {k: v - old.get(k, 0) for k, v in names.items() if v - old.get(k, 0)}, stats


def study(args: argparse.Namespace) -> int:
    wrk = None if args.python_client else shutil.which("wrk")
    log_dir = tempfile.mkdtemp(prefix="otelfin-e2e-")
    lua = os.path.join(log_dir, "post.lua")
    with open(lua, "w") as out:
        out.write(_WRK_LUA.format(body=json.dumps(BODY.decode())))
    requested = [v for v in args.variants.split(",") if v]
    servers: dict[str, Server] = {}
    skipped: dict[str, str] = {}
    for variant in requested:
        python, reason = _python_for(variant, args)
        if python is None:
            skipped[variant] = reason
            print(f"{variant}: {reason}", flush=True)
            continue
        # the Datadog agent API has no per-server path: the sink files it under "ddtrace"
        app, env = DERIVED.get(variant, (variant, {}))
        servers[variant] = Server(variant, app, env, python)
    main_variants = list(servers)
    n = args.extra
    scaling = [v for v in ("otel", "otelfin") if v in main_variants] if n else []
    for variant in scaling:
        for kind, env in (("spans", "E2E_EXTRA_SPANS"), ("logs", "E2E_EXTRA_LOGS")):
            name = f"{variant}+{n}{kind}"
            servers[name] = Server(name, variant, {env: str(n)})
    slow = [v for v in ("none", "otel", "otelfin") if v in main_variants] if args.slow_ms else []
    for variant in slow:
        name = f"{variant}@{args.slow_ms:g}ms"
        servers[name] = Server(name, variant, {"E2E_IO_MS": str(args.slow_ms)})
    sink_process, sink, counts_url = start_sink()
    results: dict[str, Measure] = {name: Measure() for name in servers}
    spans: dict[str, int] = dict.fromkeys(servers, 0)
    served: dict[str, int] = dict.fromkeys(servers, 0)
    span_names: dict[str, dict[str, int]] = {name: {} for name in servers}
    startup: dict[str, Any] = {}
    end_stats: dict[str, Any] = {}
    started = time.monotonic()
    try:
        # Calibration: each variant saturated once, alone; the open-loop rate is then a fraction
        # of the slowest one's saturation, so the p99 measures the instrumentation, not a queue.
        saturation: dict[str, float] = {}
        for name in main_variants:
            probe = Measure()

            def calibrate(server: Server, probe: Measure = probe) -> None:
                asyncio.run(closed_loop_python(server.port, 4, args.warmup_seconds))
                measure_closed(server, args, wrk, lua, probe)

            run_server(servers[name], sink, counts_url, log_dir, calibrate)
            saturation[name] = med(probe.rps)
        slowest = min(saturation.values())
        if args.rate is None:
            args.rate = round(max(10.0, slowest * args.rate_fraction), -1) or 10.0
        print(
            "saturation (calibration): "
            + ", ".join(f"{k} {v:,.0f} req/s" for k, v in saturation.items())
            + f"; open-loop rate {args.rate:g} req/s = {args.rate / slowest:.0%} of the slowest",
            flush=True,
        )
        for rep in range(args.reps):
            order = list(servers)
            random.Random(rep).shuffle(order)
            print(f"repetition {rep + 1}/{args.reps}: {', '.join(order)}", flush=True)
            for name in order:

                def phases(server: Server, name: str = name) -> None:
                    startup.setdefault(name, server.stats())
                    warm = asyncio.run(closed_loop_python(server.port, 4, args.warmup_seconds))
                    served[name] += warm.requests
                    m = results[name]
                    before = m.requests
                    if "@" not in name:
                        measure_closed(server, args, wrk, lua, m)
                    if name in main_variants or "@" in name:
                        measure_open(server, args, m)
                    served[name] += m.requests - before

                got, names, stats = run_server(servers[name], sink, counts_url, log_dir, phases)
                end_stats[name] = stats
                spans[name] += got
                for key, count in names.items():
                    span_names[name][key] = span_names[name].get(key, 0) + count
    finally:
        for server in servers.values():
            server.stop()
        sink_process.terminate()
    elapsed = time.monotonic() - started
    report(args, main_variants, scaling, slow, results, startup, end_stats, spans, served, wrk)
    for variant, reason in skipped.items():
        print(f"{LABELS.get(variant, variant)}: {reason}")
    print("\nspans per request by instrumentation scope and name (all phases)")
    for variant in main_variants:
        for key, count in sorted(span_names[variant].items(), key=lambda kv: -kv[1]):
            print(f"  {variant:13} {count / max(served[variant], 1):5.2f}  {key}")
    print(f"\n(took {elapsed:.0f} s; server logs in {log_dir})")
    return 0


def report(
    args: argparse.Namespace,
    main_variants: list[str],
    scaling: list[str],
    slow: list[str],
    results: dict[str, Measure],
    startup: dict[str, Any],
    end_stats: dict[str, Any],
    spans: dict[str, int],
    served: dict[str, int],
    wrk: str | None,
) -> None:
    client = "wrk" if wrk else "python client"
    print(
        f"\nservers one at a time; closed loop: {client}, {args.connections} connections, "
        f"{args.closed_seconds:g} s; open loop: {args.rate:g} req/s for {args.open_seconds:g} s; "
        f"{args.reps} interleaved repetitions (median [min-max]); a new trace id per request\n"
    )
    base_cpu = med(results["none"].cpu_us) if "none" in results else float("nan")
    print(
        "| variant | CPU/request us | added CPU us | req/s (saturated) | p50 ms @rate | "
        "p99 ms @rate | spans/request | RSS MB | modules added | gen-2 GCs | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for variant in main_variants:
        m = results[variant]
        per = spans[variant] / served[variant] if served[variant] else float("nan")
        added = [c - base_cpu for c in m.cpu_us]
        end = end_stats.get(variant, {})
        print(
            f"| {LABELS.get(variant, variant)} | {show(m.cpu_us)} | "
            f"{show(added) if variant != 'none' else '-'} | {show(m.rps)} | {show(m.p50_ms, 2)} | "
            f"{show(m.p99_ms, 2)} | {'-' if variant == 'none' else format(per, '.2f')} | "
            f"{end.get('rss_kb', 0) / 1024:.0f} | "
            f"{startup.get(variant, {}).get('modules_added', '-')} | "
            f"{end.get('gc', {}).get('gen2', '-')} | {m.errors} |"
        )
    base_main = med(results["none"].request_thread_us) if "none" in results else float("nan")
    print(
        "\nwhere the CPU goes, saturated (us a request, median [min-max]): the main thread runs "
        "the requests and everything on their path; the other threads are the exporters' "
        "(encoding, scrubbing, sending); the collector time is part of whichever thread ran it\n"
    )
    print("| variant | main thread | added on the main thread | other threads | collector |")
    print("|---|---|---|---|---|")
    for variant in main_variants:
        m = results[variant]
        others = [t - r for t, r in zip(m.cpu_us, m.request_thread_us, strict=False)]
        main_added = [r - base_main for r in m.request_thread_us]
        print(
            f"| {LABELS.get(variant, variant)} | {show(m.request_thread_us)} | "
            f"{show(main_added) if variant != 'none' else '-'} | {show(others)} | "
            f"{show(m.collector_us)} |"
        )
    marginal: dict[str, dict[str, float]] = {}
    if scaling:
        n = args.extra
        print(f"\nscaling: marginal CPU per request of one more span / log line ({n} extra)\n")
        print("| variant | one more span us | one more log line us |")
        print("|---|---|---|")
        for variant in scaling:
            base = med(results[variant].cpu_us)
            span = (med(results[f"{variant}+{n}spans"].cpu_us) - base) / n
            line = (med(results[f"{variant}+{n}logs"].cpu_us) - base) / n
            marginal[variant] = {"span": span, "log": line}
            print(f"| {LABELS[variant]} | {span:.1f} | {line:.1f} |")
    if slow:
        print(f"\n{args.slow_ms:g} ms handler, open loop at {args.rate:g} req/s\n")
        print("| variant | p50 ms | p99 ms |")
        print("|---|---|---|")
        for variant in slow:
            m = results[f"{variant}@{args.slow_ms:g}ms"]
            print(f"| {LABELS[variant]} | {show(m.p50_ms, 2)} | {show(m.p99_ms, 2)} |")

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b and b == b and a == a else "n/a"

    def ratios(a: str, b: str) -> str:
        # per repetition (the same rep's none as base), then median [min-max]
        base = results["none"].cpu_us
        ra = [x - y for x, y in zip(results[a].cpu_us, base, strict=True)]
        rb = [x - y for x, y in zip(results[b].cpu_us, base, strict=True)]
        per = [x / y for x, y in zip(ra, rb, strict=True) if y > 0]
        return show(per, 2) if per else "n/a"

    added = {v: med(results[v].cpu_us) - base_cpu for v in main_variants if v != "none"}
    print("\nratios (targets in brackets; per-repetition ratios as median [min-max])\n")
    print("span-matched (the same spans, a histogram per operation, structlog with trace ids):")
    if "otelfin" in added and "otel" in added:
        print(
            f"  otelfin added CPU / OpenTelemetry by hand: {ratios('otelfin', 'otel')}  [<= 0.70]"
        )
        main_base = results["none"].request_thread_us
        on_main = [
            (f - b) / (o - b)
            for f, o, b in zip(
                results["otelfin"].request_thread_us,
                results["otel"].request_thread_us,
                main_base,
                strict=False,
            )
            if o > b
        ]
        off_main = [
            (ft - fr) / (ot - orr)
            for ft, fr, ot, orr in zip(
                results["otelfin"].cpu_us,
                results["otelfin"].request_thread_us,
                results["otel"].cpu_us,
                results["otel"].request_thread_us,
                strict=False,
            )
            if ot > orr
        ]
        print(
            f"    of which on the main thread: {show(on_main, 2)}; "
            f"on the other threads: {show(off_main, 2)}"
        )
    print("default against default:")
    for peer in ("otel-default", "ddtrace"):
        if "otelfin" in added and peer in added:
            print(
                f"  otelfin added CPU / {LABELS[peer]}: {ratios('otelfin', peer)}"
                f"  [{'<= 0.70' if peer == 'ddtrace' else 'report'}]"
            )
    peers = [v for v in ("otel", "ddtrace") if v in results]
    if "otelfin" in results and peers:
        lowest = min(peers, key=lambda v: med(results[v].p99_ms))
        print(
            f"otelfin p99 / lower of {', '.join(peers)} ({lowest}) @{args.rate:g} req/s: "
            f"{ratio(med(results['otelfin'].p99_ms), med(results[lowest].p99_ms))}  [<= 1.00]"
        )
    if "otelfin" in results and "otelfin-gcfreeze" in results:
        print(
            f"otelfin p99 with gc_freeze / without @{args.rate:g} req/s: "
            f"{ratio(med(results['otelfin-gcfreeze'].p99_ms), med(results['otelfin'].p99_ms))}"
        )
    if "otelfin" in results and "none" in results:
        print(
            f"otelfin p50 / none p50 @{args.rate:g} req/s: "
            f"{ratio(med(results['otelfin'].p50_ms), med(results['none'].p50_ms))}  [<= 1.05]"
        )
    if slow and "otelfin" in slow and "none" in slow:
        key = f"@{args.slow_ms:g}ms"
        print(
            f"otelfin p50 / none p50, {args.slow_ms:g} ms handler: "
            f"{ratio(med(results['otelfin' + key].p50_ms), med(results['none' + key].p50_ms))}"
            "  [<= 1.05]"
        )
    if "otelfin" in marginal and "otel" in marginal:
        print(
            "one more span, otelfin @traced / hand-written: "
            f"{ratio(marginal['otelfin']['span'], marginal['otel']['span'])}"
        )
        print(
            "one more log line, otelfin / plain structlog: "
            f"{ratio(marginal['otelfin']['log'], marginal['otel']['log'])}"
        )


# --- soak ----------------------------------------------------------------------------------------


def soak(args: argparse.Namespace) -> int:
    seconds = args.soak_seconds or (120.0 if args.quick else 1800.0)
    variant = args.variants.split(",")[0] if args.variants != DEFAULT_VARIANTS else "otelfin"
    log_dir = tempfile.mkdtemp(prefix="otelfin-soak-")
    sink_process, sink, counts_url = start_sink(toggle_s=args.toggle_seconds)
    server = Server(variant, variant, {})
    try:
        server.start(sink, log_dir)
        server.wait_ready()
        # calibration with the endpoint up: spans per request, to count what the soak drops
        warm = asyncio.run(closed_loop_python(server.port, 4, args.warmup_seconds))
        time.sleep(args.drain_seconds)
        counts_before = get_json(counts_url).get(variant, {}).get("spans", 0)
        per_request = args.spans_per_request or (counts_before / max(warm.requests, 1))
        get_json(counts_url.replace("_counts", "_start_toggling"))
        start = server.stats(full=True)
        print(
            f"soak: {variant} at {args.rate:g} req/s for {seconds:g} s, exporter endpoint "
            f"up/down every {args.toggle_seconds:g} s",
            flush=True,
        )
        total = LoadResult()
        latencies: list[float] = []
        chunk = 30.0
        done = 0.0
        while done < seconds:
            part = min(chunk, seconds - done)
            result = asyncio.run(open_loop(server.port, args.rate, part))
            total.requests += result.requests
            total.errors += result.errors
            for kind, count in result.kinds.items():
                total.kinds[kind] = total.kinds.get(kind, 0) + count
            latencies.extend(result.latencies)
            done += part
            rss = server.stats()["rss_kb"] / 1024
            print(
                f"  {done:5.0f} s: {total.requests} requests, {total.errors} errors, "
                f"RSS {rss:.0f} MB",
                flush=True,
            )
        time.sleep(args.toggle_seconds * 2 + 6)  # the exporter retries once the endpoint is up
        end = server.stats(full=True)
        received = get_json(counts_url).get(variant, {}).get("spans", 0) - counts_before
    finally:
        server.stop()
        sink_process.terminate()
    latencies.sort()
    expected = round(total.requests * per_request) if per_request else None
    print(f"\n| soak ({variant}, {seconds / 60:g} min) | value |\n|---|---|")
    print(f"| requests | {total.requests} |")
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(total.kinds.items())) or "none"
    print(f"| application errors (non-200, refused, timeouts) | {total.errors} ({kinds}) |")
    print(
        f"| p50 / p99 ms | {percentile(latencies, 0.5) * 1000:.2f} / "
        f"{percentile(latencies, 0.99) * 1000:.2f} |"
    )
    print(f"| RSS start -> end MB | {start['rss_kb'] / 1024:.0f} -> {end['rss_kb'] / 1024:.0f} |")
    print(
        f"| tracked objects start -> end | {start['tracked_objects']} -> {end['tracked_objects']} |"
    )
    gc_end = end["gc"]
    print(
        f"| gen-2 collections (max / total pause ms) | {gc_end['gen2']} "
        f"({gc_end['gen2_ms_max']:.1f} / {gc_end['gen2_ms_total']:.0f}) |"
    )
    print(f"| spans received by the endpoint | {received} |")
    if expected:
        print(
            f"| spans dropped (expected {expected}, {per_request:.2f} a request) | "
            f"{expected - received} "
            f"({(expected - received) / expected:.1%}) |"
        )
    print(f"| otelfin internal errors | {end.get('internal_errors')} |")
    print(f"\n(server log: {log_dir}/{variant}.stderr)")
    return 0


DEFAULT_VARIANTS = "none,otel,otel-default,otelfin,ddtrace"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 repetition, short phases: checks it runs (CI)"
    )
    parser.add_argument(
        "--soak", action="store_true", help="steady load, endpoint down half the time"
    )
    parser.add_argument("--variants", default=DEFAULT_VARIANTS)
    parser.add_argument("--peers-python", help="python of a venv with ddtrace installed")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--closed-seconds", type=float)
    parser.add_argument("--open-seconds", type=float)
    parser.add_argument("--warmup-seconds", type=float)
    parser.add_argument(
        "--rate", type=float, help="open-loop req/s (default: --rate-fraction of the slowest)"
    )
    parser.add_argument(
        "--rate-fraction",
        type=float,
        default=0.25,
        help="open-loop rate as a fraction of the slowest variant's saturation (< 0.30)",
    )
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--extra", type=int, help="extra spans / log lines for the scaling rows")
    parser.add_argument("--slow-ms", type=float, help="handler I/O for the p50 row (0: skip)")
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    parser.add_argument(
        "--nice", type=int, default=0, help="scheduling priority for the run (e.g. -10, root)"
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=6.0,
        help="wait for the last span exports before counting",
    )
    parser.add_argument("--soak-seconds", type=float)
    parser.add_argument("--toggle-seconds", type=float, default=10.0)
    parser.add_argument(
        "--spans-per-request",
        type=float,
        default=0.0,
        help="soak: spans each request makes, to count drops",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sink", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    if args.sink:
        port, control, toggle = args.sink
        asyncio.run(Sink(float(toggle)).run(int(port), int(control)))
        return 0
    quick = args.quick
    defaults = {
        "reps": 1 if quick else 5,
        "closed_seconds": 1.5 if quick else 5.0,
        "open_seconds": 1.5 if quick else 8.0,
        "warmup_seconds": 0.5 if quick else 2.0,
        "extra": 0,  # --extra 10: the scaling rows (two more servers per variant)
        "slow_ms": 0.0,  # --slow-ms 20: the p50 rows with a 20 ms handler
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.nice:
        # On a shared machine the servers otherwise get a small share of a core and queue:
        # a raised priority (root only) for this process and all it starts (servers, wrk, sink).
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    if args.soak:
        if args.rate is None:
            args.rate = 150.0
        return soak(args)
    return study(args)


if __name__ == "__main__":
    sys.exit(main())
