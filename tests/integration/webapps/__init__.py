"""Small payment apps served by real servers in ``test_web_frameworks.py`` (not tests)."""

from __future__ import annotations

import otelfin

PAN = "4111 1111 1111 1111"


def outcome(pid: int) -> None:
    """The handler's behaviour for a payment id: 402 a decline, 503 a ledger outage, 500 a bug."""
    if pid == 402:
        raise otelfin.OtelfinError("PAY-012", f"card {PAN} has insufficient balance")
    if pid == 503:
        raise otelfin.OtelfinError("DB-003", "ledger unavailable")
    if pid == 500:
        raise RuntimeError("handler bug")
