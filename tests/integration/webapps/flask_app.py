"""A Flask risk service: the app is created before ``configure()`` (gunicorn serves it)."""

from __future__ import annotations

from flask import Flask

import otelfin
from tests.integration.webapps import outcome

app = Flask(__name__)
otelfin.configure("risk-service")  # spans file, processor, metrics port: from the environment
otelfin.instrument.problem_details(app)


@app.post("/payments/<pid>")
def pay(pid: str) -> dict[str, str]:
    """Pay, decline (402), fail with a coded 503 or crash (500), by payment id."""
    outcome(int(pid))
    return {"pid": pid}
