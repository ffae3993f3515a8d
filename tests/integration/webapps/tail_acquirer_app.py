"""The acquirer the tail-sampling gateway calls (uvicorn serves it): declines ``pid % 20 == 1``."""

from __future__ import annotations

import otelfin

otelfin.configure("tail-acquirer")  # sampler, keep rules, spans file: from the environment

from fastapi import FastAPI  # noqa: E402  (imported after configure() on purpose)

app = FastAPI()
otelfin.instrument.problem_details(app)


@otelfin.traced(name="acquirer.authorise")
async def authorise(pid: int) -> None:
    if pid % 20 == 1:
        raise otelfin.OtelfinError("PAY-012", "insufficient balance")


@app.post("/authorise/{pid}")
async def authorise_route(pid: int) -> dict[str, int]:
    """Approve, or decline with a 402 problem document."""
    await authorise(pid)
    return {"pid": pid}
