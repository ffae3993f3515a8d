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
    exporters, gRPC nor requests."""
    found = _modules(OTEL_TRACES_EXPORTER="none")["configure"]
    for prefix in (
        "google.protobuf",
        "opentelemetry.exporter",
        "opentelemetry.proto",
        "grpc",
        "requests",
    ):
        assert not _loaded(found, prefix), (prefix, _loaded(found, prefix))
    assert "otelfin._config" in found and "opentelemetry.sdk.trace" in found


def test_configure_with_otlp_http_loads_the_http_exporter_not_grpc() -> None:
    """OTLP over HTTP (the default protocol) loads its exporter and protobuf, never gRPC."""
    found = _modules(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318")["configure"]
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in found
    assert not _loaded(found, "grpc"), _loaded(found, "grpc")
    assert not _loaded(found, "opentelemetry.exporter.otlp.proto.grpc")
