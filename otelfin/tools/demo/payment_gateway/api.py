"""The payment API: FastAPI, one route, ``POST /v1/payments``.

A payment is scored by :mod:`.risk` (traced through ``OTELFIN_METHODS_INCLUDE``), authorised
by its channel's acquirer (:mod:`.channels`) and booked by the ledger over gRPC. A registered
error becomes an RFC 9457 ``application/problem+json`` answer with the catalogue's HTTP status
through otelfin's one-line ``problem_details(app)``: the code lands on the server span, the RED
counters (``otelfin_request_declines_total`` for a decline such as PAY-006,
``otelfin_request_errors_total`` for a failure such as PAY-011) and one log line.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from pydantic import BaseModel

import otelfin

from . import risk
from .channels import Acquirers
from .ledger import LedgerClient

log = otelfin.get_logger(component="payment-api")


class PaymentRequest(BaseModel):
    """What the checkout sends (the card number travels in the clear, as over TLS)."""

    channel: str
    amount: float
    currency: str = "CNY"
    merchant: str
    card_number: str


def create_app(ledger_target: str, slow_channel: str | None, seed: int = 7) -> Any:
    """The FastAPI application (not yet wrapped for tracing: see :func:`instrumented`)."""
    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # FastAPI's native telemetry: no per-phase spans, so the endpoint runs in the server
        # span and the channel set below lands on it.
        options["telemetry"] = {"operation_spans": False}
    app = FastAPI(title="otelfin demo payment API", **options)
    otelfin.instrument.problem_details(app)
    acquirers = Acquirers(slow_channel, seed=seed)
    ledger = LedgerClient(ledger_target)

    @app.post("/v1/payments", status_code=201)
    async def create_payment(req: PaymentRequest) -> Any:
        payment_id = str(uuid.uuid4())
        # The server span carries the channel too, so its RED series can be attributed by it.
        trace.get_current_span().set_attribute("payment.channel", req.channel)
        log.info(
            "payment_received",
            payment_id=payment_id,
            channel=req.channel,
            amount=f"{req.amount:.2f}",
            card=req.card_number,
        )
        # A registered error (a decline, a timeout) leaves as problem details: see the module doc.
        risk.check(req.channel, req.amount, req.card_number[:6])
        auth_code = await acquirers.authorise(req.channel, req.amount, req.card_number)
        await ledger.post(
            {
                "payment_id": payment_id,
                "merchant": req.merchant,
                "amount": req.amount,
                "currency": req.currency,
                "channel": req.channel,
                "card_number": req.card_number,
            }
        )
        log.info("payment_authorised", payment_id=payment_id, auth_code=auth_code)
        return {"payment_id": payment_id, "status": "authorised", "auth_code": auth_code}

    app.state.ledger = ledger
    return app


def instrumented(app: Any) -> Any:
    """The app with server spans.

    NOT YET VIA configure(): the one place the demo instruments a framework itself. FastAPI
    releases with native OpenTelemetry (``fastapi.telemetry``) trace through the global tracer
    provider ``otelfin.configure()`` set, with route templates, so they need nothing; wrapping
    them as well would give every request two server spans. Older releases get the README's
    ASGI middleware. Once ``configure()`` switches FastAPI on itself, this function goes away.
    """
    try:
        import fastapi.telemetry  # noqa: F401
    except ImportError:
        from otelfin.instrument.transports.asgi import middleware

        return middleware(app)
    return app
