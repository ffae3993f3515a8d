"""Transport instrumentation: each hop of a payment continues one trace.

``otelfin.configure()`` calls :func:`install`, which switches on every transport whose library
is installed: requests and httpx clients, gRPC client and server (sync and ``grpc.aio``), pika,
aio-pika, kafka-python / confluent-kafka producers and consumers, and nats-py. WSGI and ASGI
servers are wrapped explicitly with :func:`otelfin.instrument.transports.wsgi.middleware` /
``asgi.middleware``. ``configure(transports=False)`` (or a list of names) limits this.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from otelfin import _internal

__all__ = ["TRANSPORTS", "install", "uninstall", "installed"]

#: Transport modules switched on by ``configure()``, in this order.
TRANSPORTS = ("requests", "httpx", "grpc", "pika", "aio_pika", "kafka", "nats")
_installed: list[str] = []


def install(names: Iterable[str] | None = None) -> list[str]:
    """Instrument the given transports (default: all) whose library is installed.

    Returns the names now active. Unknown names raise ``ValueError``; a transport that fails
    to instrument is reported once and skipped.
    """
    wanted = TRANSPORTS if names is None else tuple(names)
    unknown = [n for n in wanted if n not in TRANSPORTS]
    if unknown:
        raise ValueError(f"unknown transports {unknown}: expected some of {', '.join(TRANSPORTS)}")
    for name in wanted:
        if name in _installed:
            continue
        try:
            module = importlib.import_module(f"otelfin.instrument.transports.{name}")
            if module.install():
                _installed.append(name)
        except Exception as exc:
            _internal.report(f"transports.install[{name}]", exc)
    return list(_installed)


def uninstall() -> None:
    """Undo :func:`install` for every transport otelfin switched on."""
    while _installed:
        name = _installed.pop()
        try:
            importlib.import_module(f"otelfin.instrument.transports.{name}").uninstall()
        except Exception as exc:
            _internal.report(f"transports.uninstall[{name}]", exc)


def installed() -> list[str]:
    """The transports otelfin has instrumented."""
    return list(_installed)
