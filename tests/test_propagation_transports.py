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
