"""An example payment gateway, instrumented only the ways otelfin's README teaches.

``otelfin demo`` runs it on 127.0.0.1, one process per service:

* ``checkout`` (the merchant's checkout, the demo's own process) POSTs payments with httpx;
* ``payment-api`` (FastAPI on uvicorn) scores risk, asks the channel's acquirer, and posts to
* ``ledger`` (gRPC, ``grpc.aio``), which writes the entries to SQLite through the stdlib
  ``sqlite3`` driver and publishes a settlement message on a bus, consumed by
* ``settlement-worker``.

The bus is an in-memory queue owned by the demo unless a RabbitMQ (``--amqp``) or NATS
(``--nats``) URL is given. Request payloads carry card numbers; every artefact must show them
masked. :mod:`.risk` carries no decorator on purpose: it is traced through
``OTELFIN_METHODS_INCLUDE``.

These files are package data of otelfin (``otelfin.tools.demo.payment_gateway``, in the source
tree and the wheel alike), so ``otelfin demo`` works from ``pip install 'otelfin[demo]'``;
modules import each other relatively.
"""

from __future__ import annotations

SERVICES = ("checkout", "payment-api", "ledger", "settlement-worker")
