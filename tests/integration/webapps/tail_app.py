"""A FastAPI payment gateway for the tail-sampling tests (uvicorn serves it).

``POST /pay/{pid}``: risk.score (@traced), the acquirer over httpx (``ACQUIRER_URL``), then
ledger.post (@traced, a sqlite3 statement). By ``pid % 20``: 1 the acquirer declines (402),
2 the gateway fails after the ledger (500), 3 the ledger is slow (1.1 s, over the tests' 1 s SLO);
anything else is ok. ``POST /flood/{pid}``: five internal spans, then a 1.2 s wait.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3

import httpx

import otelfin

otelfin.configure("tail-gateway")  # sampler, keep rules, spans file, metrics port: environment

from fastapi import FastAPI  # noqa: E402  (imported after configure() on purpose)

app = FastAPI()
otelfin.instrument.problem_details(app)
_client = httpx.AsyncClient(base_url=os.environ.get("ACQUIRER_URL", "http://127.0.0.1:9"))


@otelfin.traced(name="risk.score")
async def risk(pid: int) -> int:
    return pid % 7


@otelfin.traced(name="ledger.post")
async def ledger(pid: int, slow: bool) -> None:
    db = sqlite3.connect(":memory:")
    try:
        db.execute("SELECT ?", (pid,))
    finally:
        db.close()
    if slow:
        await asyncio.sleep(1.1)


@app.post("/pay/{pid}")
async def pay(pid: int) -> dict[str, int]:
    """Pay, decline (402), fail (500) or take too long, by payment id."""
    await risk(pid)
    answer = await _client.post(f"/authorise/{pid}")
    if answer.status_code == 402:
        raise otelfin.OtelfinError("PAY-012", "insufficient balance")
    await ledger(pid, slow=pid % 20 == 3)
    if pid % 20 == 2:
        raise RuntimeError("gateway bug after the ledger")
    return {"pid": pid}


@otelfin.traced(name="flood.step")
async def step() -> None:
    return None


@app.post("/flood/{pid}")
async def flood(pid: int) -> dict[str, int]:
    """Five internal spans, then 1.2 s of waiting: slow, kept, and many at once."""
    for _ in range(5):
        await step()
    await asyncio.sleep(1.2)
    return {"pid": pid}
