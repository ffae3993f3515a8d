"""A FastAPI payment API: ``configure()`` first, FastAPI imported after it (uvicorn serves it)."""

from __future__ import annotations

import otelfin

otelfin.configure("payments-api")  # spans file, processor, metrics port: from the environment

from fastapi import FastAPI  # noqa: E402  (imported after configure() on purpose)

from tests.integration.webapps import outcome  # noqa: E402

app = FastAPI()
otelfin.instrument.problem_details(app)


@app.post("/payments/{pid}")
async def pay(pid: int) -> dict[str, int]:
    """Pay, decline (402), fail with a coded 503 or crash (500), by payment id."""
    outcome(pid)
    return {"pid": pid}
