"""One entry point per service process; ``otelfin demo`` starts each with ``multiprocessing``.

Every service calls ``otelfin.configure()`` once with its own name, spans file, log file and a
``/metrics`` server on a free port, reports ``ready`` on the ``events`` queue, runs until
``stop`` is set, then shuts down cleanly (``otelfin.shutdown()`` flushes spans and logs).
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import otelfin
from otelfin.metrics import metrics_server

from .bus import make_bus

#: Settings that would give every demo process the same name or file if left in the
#: environment (an ``OTEL_SERVICE_NAME`` exported in the user's shell, say).
_PER_PROCESS_ENV = (
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_EXPORTER",
    "OTELFIN_SPANS_FILE",
    "OTELFIN_LOG_FILE",
    "OTELFIN_METRICS_PORT",
    "OTELFIN_SPAN_PROCESSOR",
    "OTELFIN_CATALOGUE",
    "OTELFIN_ERROR_CODE_POLICY",
    "OTELFIN_LOG_LEVEL",
)


#: The latency SLO of the payment API: the default bucket layout has a bound exactly on it.
SLO_SECONDS = 0.25


@dataclass(frozen=True)
class Settings:
    """What every service of one demo run shares (picklable: it crosses process starts)."""

    out_dir: str
    slow_channel: str | None = None
    bus: str = "memory"  # memory | amqp | nats
    bus_url: str | None = None
    bus_name: str = "otelfin-demo-settlements"
    otlp: str | None = None
    seed: int = 7

    @property
    def parts(self) -> Path:
        return Path(self.out_dir) / "parts"


_BUS_TRANSPORT = {"amqp": "aio_pika", "nats": "nats"}


def transports_of(service: str, settings: Settings) -> list[str]:
    """The transports each service uses (instrumenting only those keeps start-up quick)."""
    bus = [_BUS_TRANSPORT[settings.bus]] if settings.bus in _BUS_TRANSPORT else []
    return {
        "checkout": ["httpx"],
        "payment-api": ["grpc"],
        "ledger": ["grpc", "sqlite3", *bus],
        "settlement-worker": bus,
    }.get(service, [])


def configure_service(service: str, settings: Settings) -> str:
    """``otelfin.configure()`` for one demo service; returns its ``/metrics`` URL."""
    for name in _PER_PROCESS_ENV:
        os.environ.pop(name, None)
    settings.parts.mkdir(parents=True, exist_ok=True)
    otelfin.configure(
        service_name=service,
        traces_exporter="jsonl",
        spans_file=settings.parts / f"spans-{service}.jsonl",
        log_file=settings.parts / f"logs-{service}.jsonl",
        metrics_port=0,
        metrics_addr="127.0.0.1",
        metrics_slo=SLO_SECONDS,
        # metrics_buckets left out: the default layout, as a newcomer's service has it.
        transports=transports_of(service, settings) or False,
        # With --otlp a second processor ships the same spans; scrub once, before both.
        scrub_all_spans=bool(settings.otlp),
    )
    if settings.otlp:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        endpoint = settings.otlp.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider: Any = trace.get_tracer_provider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    server = metrics_server()
    return server.url if server is not None else ""


async def _until(stop: Any) -> None:
    await asyncio.get_running_loop().run_in_executor(None, stop.wait)


def run_ledger(settings: Settings, events: Any, stop: Any, shared: Any, published: Any) -> None:
    """The ledger process: gRPC on a free port, SQLite in ``out_dir/parts``."""
    metrics_url = configure_service("ledger", settings)
    from .ledger import Ledger

    async def main() -> None:
        import grpc

        bus = make_bus(settings.bus, settings.bus_url, settings.bus_name, shared)
        await bus.start()
        ledger = Ledger(str(settings.parts / "ledger.sqlite3"), bus, published)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((ledger.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        events.put(("ready", "ledger", {"target": f"127.0.0.1:{port}", "metrics": metrics_url}))
        await _until(stop)
        await server.stop(1.0)
        await bus.close()
        ledger.close()

    _run(main, "ledger", events)


def run_worker(settings: Settings, events: Any, stop: Any, shared: Any, settled: Any) -> None:
    """The settlement worker process."""
    metrics_url = configure_service("settlement-worker", settings)
    from .worker import SettlementWorker

    async def main() -> None:
        bus = make_bus(settings.bus, settings.bus_url, settings.bus_name, shared)
        await bus.start()
        worker = SettlementWorker(settled, seed=settings.seed + 1)
        await bus.subscribe(worker.handle)
        events.put(("ready", "settlement-worker", {"metrics": metrics_url}))
        await _until(stop)
        await bus.close()

    _run(main, "settlement-worker", events)


def run_api(settings: Settings, events: Any, stop: Any, ledger_targets: Any) -> None:
    """The payment API process: FastAPI on uvicorn, on a free port.

    It starts beside the ledger and reads the ledger's address from ``ledger_targets`` once
    the ledger is up, so the two processes import and configure in parallel.
    """
    metrics_url = configure_service("payment-api", settings)
    import uvicorn

    from .api import create_app, instrumented

    ledger_target = str(ledger_targets.get(timeout=120))
    app = create_app(ledger_target, settings.slow_channel, seed=settings.seed)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            instrumented(app), log_config=None, access_log=False, lifespan="off", workers=1
        )
    )

    async def main() -> None:
        serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                serving.result()  # raises what stopped it
                return
            await asyncio.sleep(0.02)
        events.put(
            ("ready", "payment-api", {"url": f"http://127.0.0.1:{port}", "metrics": metrics_url})
        )
        await _until(stop)
        server.should_exit = True
        await serving
        await app.state.ledger.close()

    _run(main, "payment-api", events)


def _run(main: Any, service: str, events: Any) -> None:
    try:
        asyncio.run(main())
    except Exception as exc:
        events.put(("failed", service, {"error": f"{type(exc).__name__}: {exc}"}))
        raise
    finally:
        otelfin.shutdown()
    events.put(("stopped", service, {}))
