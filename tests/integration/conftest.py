"""Integration tests talk to real servers on 127.0.0.1.

A missing service skips the test with the reason, unless ``OTELFIN_REQUIRE_INTEGRATION=1``
(set by ``.ci/run``), where it fails instead: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import socket

import pytest


def require_service(name: str, host: str, port: int, how_to_start: str = "") -> None:
    """Skip (or, under OTELFIN_REQUIRE_INTEGRATION=1, fail) unless host:port accepts TCP."""
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc})"
        if how_to_start:
            reason += f"; start it with: {how_to_start}"
    if os.environ.get("OTELFIN_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{reason} and OTELFIN_REQUIRE_INTEGRATION=1", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str) -> str:
    """The path of an executable, or skip/fail like :func:`require_service`."""
    import shutil

    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed (Debian package 'prometheus' provides prometheus/promtool)"
    if os.environ.get("OTELFIN_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{reason} and OTELFIN_REQUIRE_INTEGRATION=1", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.path):
            item.add_marker(pytest.mark.integration)
