"""The FastAPI route details of the lean server span: the official call vs the memo, same run.

The lean server span (``otelfin/instrument/transports/_server.py``) names each request's span
from the official FastAPI instrumentation's ``_get_default_span_details(scope)``, which walks
the app's routes calling each one's ``matches``. ``otelfin/instrument/transports/_routes.py``
remembers its answers for static routes. This prints microseconds per call of each, for a
``POST /pay`` request on a FastAPI app with 5 routes (its 4 docs routes and ``/pay``) and with
35 (30 more static and parametrised routes, half in an included router, ``/pay`` last), and
for ``POST /pay/7``, a 404 (never remembered: the memo's checks, then the official call).

Medians of repeated timing runs with their min-max, the two sides alternating, and the ratio
memo / official. Run: ``python benchmarks/bench_server_span.py [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import timeit
from typing import Any

from fastapi import APIRouter, FastAPI
from opentelemetry.instrumentation import fastapi as official

from otelfin.instrument.transports._routes import RouteMemo, route_details

REPEATS = 9


async def _ok() -> dict[str, str]:
    return {"ok": "1"}


def app_with(extra: int) -> FastAPI:
    """A FastAPI app: its docs routes, ``extra`` more routes, then ``/pay``."""
    app = FastAPI()
    router = APIRouter(prefix="/v1")
    for i in range(extra):
        target: Any = router if i % 2 else app
        target.get(f"/things{i}" if i % 3 else f"/things{i}/{{tid}}")(_ok)
    if extra:
        app.include_router(router)
    app.post("/pay")(_ok)
    return app


def scope_of(app: FastAPI, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "app": app,
    }


def timed(call: Any, number: int) -> list[float]:
    return [t / number * 1e6 for t in timeit.repeat(call, number=number, repeat=1)]


def paired(theirs: Any, mine: Any, number: int) -> tuple[list[float], list[float]]:
    """Microseconds per call of each, over REPEATS runs, in alternation."""
    runs: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEATS):
        runs[0].extend(timed(theirs, number))
        runs[1].extend(timed(mine, number))
    return runs


def show(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    quick = "--quick" in sys.argv
    number = 300 if quick else 5000
    details = official._get_default_span_details
    memo = route_details(details)
    assert isinstance(memo, RouteMemo)
    print(f"us per call, median [min-max] of {REPEATS} runs of {number} calls")
    print(f"{'app, request':<34} {'official':>22} {'memo':>22} {'memo/official':>13}")
    for extra in (0, 30):
        app = app_with(extra)
        routes = sum(1 for _ in official._flatten_routes(app.routes))
        label = f"{routes} routes"
        for path, kind in (("/pay", "static"), ("/pay/7", "404")):
            scope = scope_of(app, path)
            assert memo(scope) == details(scope)  # and the memo has answered once
            theirs, mine = paired(lambda s=scope: details(s), lambda s=scope: memo(s), number)
            ratio = statistics.median(mine) / statistics.median(theirs)
            print(
                f"{f'{label}, POST {path} ({kind})':<34} "
                f"{show(theirs):>22} {show(mine):>22} {ratio:>12.2f}x"
            )


if __name__ == "__main__":
    main()
