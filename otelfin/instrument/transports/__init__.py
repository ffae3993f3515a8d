"""Transport instrumentation: each hop of a payment continues one trace.

``otelfin.configure()`` calls :func:`install`, which switches on every transport whose library
is installed: requests and httpx clients, gRPC client and server (sync and ``grpc.aio``), pika,
aio-pika, kafka-python / confluent-kafka producers and consumers, nats-py, and the FastAPI,
Starlette, Flask and Django web frameworks (see ``web``). Each is a row of
:data:`TABLE` (see ``_table``): a library, the ``BaseInstrumentor`` for it (official where one
passes otelfin's tests, otelfin's own fix on top where it does not) and the extra that installs it.
``configure(transports=False)`` (or a list of names) limits this.

WSGI and ASGI applications of other frameworks are wrapped explicitly:
``otelfin.instrument.transports.wsgi.middleware(app)`` / ``asgi.middleware(app)``.
"""

from __future__ import annotations

import importlib
from typing import Any

from otelfin.instrument.transports._table import (
    TABLE,
    TRANSPORTS,
    Row,
    install,
    installed,
    rows,
    uninstall,
)

__all__ = ["TRANSPORTS", "TABLE", "Row", "install", "uninstall", "installed", "rows"]

# Submodules reachable as attributes after ``import otelfin`` (the docs write
# ``otelfin.instrument.transports.wsgi.middleware(app)``), imported on first use only.
_SUBMODULES = frozenset({"wsgi", "asgi", "web", "pika", "aio_pika", "kafka", "nats"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
