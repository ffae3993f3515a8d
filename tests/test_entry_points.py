"""Entry points other tools load otelfin through."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points


def test_propagator_entry_point_via_otel_propagators() -> None:
    """OTEL_PROPAGATORS=otelfin makes OpenTelemetry itself use otelfin's propagator."""
    (ep,) = [e for e in entry_points(group="opentelemetry_propagator") if e.name == "otelfin"]
    code = (
        "from opentelemetry import propagate\n"
        "p = propagate.get_global_textmap()\n"
        "inner = getattr(p, '_propagators', [p])\n"
        "print(sorted(type(x).__name__ for x in inner))\n"
        "ctx = propagate.extract({'X-B3-TraceId': '463ac35c9f6413ad48485a3953bb6124',"
        " 'X-B3-SpanId': 'a2fb4a1d1a96d312', 'X-B3-Sampled': '1'})\n"
        "carrier = {}\n"
        "propagate.inject(carrier, context=ctx)\n"
        "print(carrier['traceparent'])\n"
    )
    env = {**os.environ, "OTEL_PROPAGATORS": "otelfin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    assert out[0] == "['OtelfinPropagator']"
    assert out[1] == "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01"
    assert ep.load().__name__ == "OtelfinPropagator"


def test_every_instrumentor_entry_point_loads() -> None:
    """Each opentelemetry_instrumentor entry point otelfin declares imports and instantiates."""
    ours = [
        e
        for e in entry_points(group="opentelemetry_instrumentor")
        if e.value.startswith("otelfin.")
    ]
    assert {e.name for e in ours} >= {"otelfin", "otelfin_nats"}
    for ep in ours:
        instrumentor = ep.load()()
        assert hasattr(instrumentor, "instrument") and hasattr(instrumentor, "uninstrument")
