"""A FastAPI payment API with internal ``@traced`` functions and an acquirer behind httpx.

``configure()`` takes its spans file and metrics port from the environment; ``ACQUIRER_URL``
names the acquirer. A payment is: limits check, a risk score of three rules, the acquirer's
authorisation over HTTP. The acquirer's 402 becomes ``PAY-006`` (a decline, severity warning),
its 503 ``PAY-010`` (severity error); an amount of 13.00 crashes the handler (500).
"""

from __future__ import annotations

import os

import otelfin

otelfin.configure("checkout-api")

import httpx  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from pydantic import BaseModel  # noqa: E402

ACQUIRER = os.environ.get("ACQUIRER_URL", "http://127.0.0.1:9")
app = FastAPI()
otelfin.instrument.problem_details(app)
_client = httpx.AsyncClient(timeout=10)


class Payment(BaseModel):
    """The request body."""

    amount: float
    channel: str


@otelfin.traced(name="limits.check")
def check_limits(amount: float) -> None:
    if amount <= 0:
        raise otelfin.OtelfinError("PAY-001", "amount must be positive")


@otelfin.traced(name="risk.rule")
def rule(index: int, amount: float) -> float:
    return (amount * (index + 1)) % 1.0


@otelfin.traced(name="risk.score", attributes={"payment.channel": "channel"})
async def score(amount: float, channel: str) -> float:
    return sum(rule(i, amount) for i in range(3)) / 3


@otelfin.traced(name="acquirer.authorise", attributes={"payment.channel": "channel"})
async def authorise(amount: float, channel: str) -> str:
    response = await _client.post(
        f"{ACQUIRER}/authorise", json={"amount": amount, "channel": channel}
    )
    if response.status_code == 402:
        raise otelfin.OtelfinError("PAY-006", "issuer declined")
    if response.status_code >= 500:
        raise otelfin.OtelfinError("PAY-010", "acquirer unavailable")
    return str(response.json()["approval"])


@app.post("/payments")
async def pay(payment: Payment) -> dict[str, str]:
    """Authorise one payment."""
    check_limits(payment.amount)
    await score(payment.amount, payment.channel)
    if payment.amount == 13.0:
        raise RuntimeError("handler bug")
    return {"approval": await authorise(payment.amount, payment.channel)}
