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


def test_every_own_instrumentor_is_an_entry_point() -> None:
    """Each BaseInstrumentor subclass otelfin defines is registered in pyproject.toml under
    opentelemetry_instrumentor (and nothing registered there is missing from the source)."""
    import ast
    from pathlib import Path

    import pytest

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["project"][
        "entry-points"
    ]["opentelemetry_instrumentor"]
    defined = set()
    for path in sorted((root / "otelfin").rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Name) and base.id == "BaseInstrumentor" for base in node.bases
            ):
                defined.add(f"{module}:{node.name}")
    assert len(defined) >= 14
    assert set(declared.values()) == defined
    assert all(name.startswith("otelfin") for name in declared)
