"""Reconfiguration: after a failed configure(), after the host resets logging, higher levels."""

from __future__ import annotations

import importlib
import io
import logging
import logging.config
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import otelfin
from otelfin.logging import capture_logs

VISA = "4111111111111111"


@pytest.fixture
def host_logging() -> Iterator[None]:
    """Put the root logger's handlers and level and every logger's disabled flag back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        otelfin.shutdown()
        root.handlers[:] = handlers
        root.setLevel(level)
        for logger in [root, *logging.root.manager.loggerDict.values()]:
            if isinstance(logger, logging.Logger):
                logger.disabled = False


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throw-away module with one function, importable by a unique name."""
    name = f"shop_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text("def charge(n):\n    return n * 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_configure_after_a_failed_configure_installs_everything(
    tmp_path: Path, shop: str, host_logging: None
) -> None:
    """The same configure() retried after it failed gives metrics, bridge and instrumentation."""
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log directory should be")
    registry = CollectorRegistry()
    spans = InMemorySpanExporter()
    settings = {
        "log_file": blocker / "app.jsonl",
        "metrics_registry": registry,
        "methods_include": f"{shop}:charge",
        "span_exporter": spans,
        "span_processor": "simple",
    }
    with pytest.raises(ValueError, match="cannot be opened"):
        otelfin.configure("payment-gateway", **settings)  # type: ignore[arg-type]
    blocker.unlink()
    otelfin.configure("payment-gateway", **settings)  # type: ignore[arg-type]
    module = importlib.import_module(shop)
    assert module.charge(21) == 42
    assert [s.name for s in spans.get_finished_spans()] == ["charge"]
    count = registry.get_sample_value(
        "otelfin_requests_total",
        {"service": "payment-gateway", "operation": "charge", "outcome": "ok", "channel": ""},
    )
    assert count == 1
    logging.getLogger("vendor.lib").warning("retrying")
    otelfin.shutdown()
    assert '"event":"retrying"' in (blocker / "app.jsonl").read_text()


@pytest.mark.parametrize("reset", ["basicConfig", "dictConfig"])
def test_configure_after_the_host_reset_logging_restores_the_bridge(
    reset: str, host_logging: None
) -> None:
    """After basicConfig(force=True) or dictConfig, configure() brings the bridge back."""
    otelfin.configure("payment-gateway")
    host_out = io.StringIO()
    if reset == "basicConfig":
        logging.basicConfig(force=True, stream=host_out)
    else:
        logging.config.dictConfig(
            {
                "version": 1,
                "handlers": {"out": {"class": "logging.StreamHandler", "stream": host_out}},
                "root": {"handlers": ["out"], "level": "WARNING"},
            }
        )
    library = logging.getLogger(f"vendor.{reset}")  # made after the reset: not disabled by it
    with capture_logs() as lost:
        library.warning("before repair")
    assert "before repair" not in [r["event"] for r in lost]  # the reset removed the bridge
    otelfin.configure("payment-gateway")
    with capture_logs() as logs:
        library.warning("after repair")
        otelfin.get_logger().error("no code here")
    events = [r["event"] for r in logs]
    assert "after repair" in events
    own = [r for r in logs if r.get("logger") == "otelfin"]
    assert own and "catalogue" in own[0]["event"]  # otelfin's own warning is heard again


def test_higher_otelfin_level_never_opens_a_host_handler(host_logging: None) -> None:
    """configure(log_level="debug") after a host reset: the host handler prints no raw PAN."""
    logging.basicConfig(level=logging.WARNING, force=True, stream=io.StringIO())
    otelfin.configure("payment-gateway")
    host_out = io.StringIO()
    logging.basicConfig(force=True, stream=host_out)  # a new handler, the root level untouched
    otelfin.configure("payment-gateway", log_level="debug")
    with capture_logs() as logs:
        logging.getLogger("vendor.lib").debug("card %s", VISA)
        logging.getLogger("vendor.lib").info("card %s again", VISA)
        logging.getLogger("vendor.lib").warning("visible warning")
    assert VISA not in host_out.getvalue()
    assert "visible warning" in host_out.getvalue()
    masked = [r["event"] for r in logs if r.get("logger") == "vendor.lib"]
    assert masked[:2] == ["card XXXXXXXXXXXX1111", "card XXXXXXXXXXXX1111 again"]
