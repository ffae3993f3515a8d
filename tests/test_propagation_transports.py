"""Transport switching: configure() installs what is present, shutdown() restores originals."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from otelfin.instrument import transports
from otelfin.testing import configured_for_test


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # kafka-python 3 import warning
def test_configure_instruments_every_installed_transport_and_shutdown_undoes_it() -> None:
    """All transports present here are switched on, and every patch is gone afterwards."""
    from aio_pika.queue import QueueIterator
    from kafka import KafkaConsumer
    from nats.aio.client import Client
    from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

    patched = [
        (Client, "publish"),
        (QueueIterator, "__anext__"),
        (BlockingConnection, "channel"),
        (BlockingChannel, "cancel"),
        (KafkaConsumer, "__next__"),
    ]
    originals = [cls.__dict__[name] for cls, name in patched]
    with configured_for_test():
        assert set(transports.installed()) == set(transports.TRANSPORTS)
        for (cls, name), original in zip(patched, originals, strict=True):
            assert cls.__dict__[name] is not original, name
    assert transports.installed() == []
    for (cls, name), original in zip(patched, originals, strict=True):
        assert cls.__dict__[name] is original, name


def test_reconfigure_does_not_stack_wrappers() -> None:
    """configure() twice leaves a single wrapper layer on each patched function."""
    from nats.aio.client import Client

    with configured_for_test():
        first = Client.__dict__["publish"]
        from otelfin import _config

        _config.configure("other-service", traces_exporter="none")
        assert Client.__dict__["publish"] is first


def test_transports_can_be_switched_off_or_picked() -> None:
    """configure(transports=False) instruments nothing; a list picks transports."""
    with configured_for_test(transports=False):
        assert transports.installed() == []
    with configured_for_test(transports=["nats"]):
        assert transports.installed() == ["nats"]


def test_unknown_transport_is_a_configuration_error() -> None:
    """A transport name otelfin does not know fails at configure time."""
    with pytest.raises(ValueError, match="unknown transports"):
        transports.install(["carrier-pigeon"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # kafka-python 3 import warning
def test_instrumentors_are_registered_for_opentelemetry_instrument() -> None:
    """opentelemetry-instrument finds otelfin's own instrumentors and can load them."""
    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    for name in ("otelfin_nats", "otelfin_pika", "otelfin_aio_pika_iterator", "otelfin_kafka"):
        instrumentor = found[name].load()()
        instrumentor.instrument()
        assert instrumentor.is_instrumented_by_opentelemetry
        instrumentor.uninstrument()


def _fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return its stdout."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_wsgi_middleware_is_reachable_after_import_otelfin() -> None:
    """``otelfin.instrument.transports.wsgi.middleware(app)`` works after ``import otelfin``."""
    out = _fresh_python(
        "import otelfin\n"
        "app = otelfin.instrument.transports.wsgi.middleware(lambda environ, start: [])\n"
        "print(type(app).__name__, otelfin.instrument.transports.asgi.middleware.__name__)\n"
    )
    assert out == "OpenTelemetryMiddleware middleware"


def test_library_imported_after_configure_is_instrumented_and_configure_imports_nothing() -> None:
    """configure() leaves an unused library unimported; importing it later instruments it."""
    out = _fresh_python(
        "import sys, otelfin\n"
        "otelfin.configure('svc', traces_exporter='none')\n"
        "before = 'nats' in sys.modules\n"
        "from nats.aio.client import Client\n"
        "print(before, hasattr(Client.__dict__['publish'], '__wrapped__'),\n"
        "      otelfin.instrument.transports.installed().count('nats'))\n"
        "otelfin.shutdown()\n"
        "print(hasattr(Client.__dict__['publish'], '__wrapped__'))\n"
    )
    assert out.splitlines() == ["False True 1", "False"]


def test_transport_the_application_instrumented_is_left_to_it() -> None:
    """An instrumentor the application switched on is neither listed nor switched off by otelfin."""
    from otelfin.instrument.transports.nats import NatsInstrumentor

    own = NatsInstrumentor()
    own.instrument()
    try:
        with configured_for_test(transports=["nats", "pika"]):
            assert transports.installed() == ["pika"]
        assert own.is_instrumented_by_opentelemetry
    finally:
        own.uninstrument()


def test_every_row_names_an_instrumentor_with_an_install_hint() -> None:
    """Each table row loads a BaseInstrumentor here and tells which extra to install."""
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )

    for row in transports.TABLE:
        assert row.name in transports.TRANSPORTS
        assert row.hint == f"pip install 'otelfin[{row.extra}]'"
        assert isinstance(row.load(), BaseInstrumentor), row
