"""A bare ASGI acquirer answering every request with 200 "approved" (served by uvicorn)."""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer any HTTP request; ignore lifespan events."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"approved"})
