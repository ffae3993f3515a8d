"""A FastAPI checkout API calling the Flask risk service (``RISK_URL``) with httpx."""

from __future__ import annotations

import os

import httpx

import otelfin

otelfin.configure("checkout-api")  # spans file, processor: from the environment

from fastapi import FastAPI  # noqa: E402  (imported after configure() on purpose)

app = FastAPI()


@app.post("/checkout/{pid}")
async def checkout(pid: int) -> dict[str, int]:
    """Ask the risk service about the payment; answer with its status."""
    async with httpx.AsyncClient(base_url=os.environ["RISK_URL"], timeout=10) as client:
        risk = await client.post(f"/payments/{pid}")
    return {"pid": pid, "risk_status": risk.status_code}
