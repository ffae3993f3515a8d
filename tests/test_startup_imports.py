"""Start-up: which modules ``import otelfin`` and ``configure()`` load (not how long they take:
benchmarks/bench_startup.py times them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_CHILD = r"""
import json, sys
before = set(sys.modules)
import otelfin
after_import = set(sys.modules) - before
otelfin.configure(service_name="payment-api")
after_configure = set(sys.modules) - before
print(json.dumps({"import": sorted(after_import), "configure": sorted(after_configure)}))
"""


def _modules(**env: str) -> dict[str, list[str]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTELFIN_"))}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _loaded(modules: list[str], prefix: str) -> list[str]:
    return [m for m in modules if m == prefix or m.startswith(prefix + ".")]


#: What exporting spans over OTLP needs, and a service without an exporter never loads.
_EXPORTER_MODULES = (
    "google.protobuf",
    "opentelemetry.exporter",
    "opentelemetry.proto",
    "grpc",
    "requests",
    "urllib3",
)


def test_import_otelfin_loads_nothing_else() -> None:
    """``import otelfin`` loads only the package itself: the SDK, scrubber, catalogue (YAML),
    wrapt and importlib.metadata load when configure() or @traced first needs them."""
    found = _modules(OTEL_TRACES_EXPORTER="none")["import"]
    assert _loaded(found, "otelfin") == ["otelfin"], found
    for prefix in ("opentelemetry", "yaml", "wrapt", "structlog", "prometheus_client", "google"):
        assert not _loaded(found, prefix), (prefix, found)
    assert "importlib.metadata" not in found


def test_configure_without_otlp_loads_no_encoder_or_transport() -> None:
    """With no OTLP exporter, configure() loads neither protobuf, the OTLP encoders and
    exporters, gRPC, requests nor urllib3."""
    found = _modules(OTEL_TRACES_EXPORTER="none")["configure"]
    for prefix in _EXPORTER_MODULES:
        assert not _loaded(found, prefix), (prefix, _loaded(found, prefix))
    assert "otelfin._config" in found and "opentelemetry.sdk.trace" in found


_EXPORT_CHILD = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Collector(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
threading.Thread(target=server.serve_forever, daemon=True).start()
import os
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{server.server_address[1]}"
before = set(sys.modules)
import otelfin
otelfin.configure(service_name="payment-api")
after_configure = set(sys.modules) - before
from opentelemetry import trace
with trace.get_tracer("t").start_as_current_span("first"):
    pass
from otelfin import _config
flushed = _config.force_flush(10)
after_export = set(sys.modules) - before
print(json.dumps({"configure": sorted(after_configure), "export": sorted(after_export),
                  "flushed": flushed}))
"""


def test_configure_with_otlp_http_defers_the_exporter_to_the_first_export() -> None:
    """With OTLP over HTTP configured, configure() loads neither the exporter, protobuf nor
    requests/urllib3 (the bulk of its former start-up time); the first export loads the HTTP
    exporter, never gRPC."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTELFIN_"))}
    out = subprocess.run(
        [sys.executable, "-c", _EXPORT_CHILD],
        env=clean,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    for prefix in _EXPORTER_MODULES:
        assert not _loaded(found["configure"], prefix), (
            prefix,
            _loaded(found["configure"], prefix),
        )
    assert "otelfin._config" in found["configure"]
    assert found["flushed"] is True
    exported = found["export"]
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in exported
    assert "otelfin._exporters._sliced" in exported
    assert not _loaded(exported, "grpc"), _loaded(exported, "grpc")
    assert not _loaded(exported, "opentelemetry.exporter.otlp.proto.grpc")


_DEFERRED_CHILD = r"""
import json, sys
import otelfin
otelfin.configure(service_name="payment-api")
from otelfin.scrub import _sql
seen = {
    "configure": sorted(
        m for m in ("otelfin.metrics._design", "otelfin.metrics._server",
                    "otelfin.instrument._include", "otelfin._tail")
        if m in sys.modules
    ),
    "sql_compiled": _sql._patterns.cache_info().currsize,
}

# First use after configure() loads each deferred piece, and it works.
from otelfin.metrics import BucketDesign, WindowAccuracy, evaluate_buckets, suggest_buckets
design = suggest_buckets([0.001 * (1 + i % 250) for i in range(2000)], slo=0.2)
seen["design"] = [isinstance(design, BucketDesign), 0.2 in design.buckets,
                  isinstance(design.window_accuracy, WindowAccuracy),
                  evaluate_buckets(design.buckets, [0.05] * 300, windows=2)[0] >= 0]

from otelfin.scrub import scrub_attributes
attrs = scrub_attributes({"db.statement": "UPDATE cards SET cvv = '123' WHERE id = 7"})
seen["sql"] = [attrs["db.statement"], _sql._patterns.cache_info().currsize]

import types
shop = types.ModuleType("shop")
exec("def charge(amount):\n    return amount * 2\n", shop.__dict__)
sys.modules["shop"] = shop
otelfin.configure(service_name="payment-api", methods_include="shop:charge")
from otelfin.instrument import applied
seen["include"] = [applied(), shop.charge(21), hasattr(shop.charge, "__wrapped__")]
otelfin.configure(service_name="payment-api")  # the list dropped: the original is back
seen["include_undone"] = [applied(), hasattr(shop.charge, "__wrapped__")]

from otelfin.metrics import metrics_server, start_metrics_server, MetricsServer
otelfin.configure(service_name="payment-api", metrics_port=0, metrics_addr="127.0.0.1")
server = metrics_server()
seen["server"] = [isinstance(server, MetricsServer), callable(start_metrics_server)]
otelfin.shutdown()
print(json.dumps(seen))
"""


def test_pieces_configure_defers_load_and_work_on_first_use() -> None:
    """configure() leaves out bucket design, the /metrics server, the include list, tail
    sampling and the SQL statement patterns when nothing asks for them; each loads on first
    use afterwards and behaves as before (a design, a redacted statement, a traced method that
    is put back when the list is dropped, a server on an asked-for port)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTELFIN_"))}
    out = subprocess.run(
        [sys.executable, "-c", _DEFERRED_CHILD],
        env={**clean, "OTEL_TRACES_EXPORTER": "none"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["configure"] == []
    assert seen["sql_compiled"] == 0
    assert seen["design"] == [True, True, True, True]
    assert seen["sql"] == ["UPDATE cards SET cvv = '[REDACTED]' WHERE id = 7", 1]
    assert seen["include"] == [["shop:charge"], 42, True]
    assert seen["include_undone"] == [[], False]
    assert seen["server"] == [True, True]
