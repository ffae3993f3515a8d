"""Risk scoring, left without a decorator on purpose.

The demo traces this module through ``OTELFIN_METHODS_INCLUDE="<package>.risk:*"`` (the
zero-code path), the way a team instruments a legacy module it would rather not edit.
"""

from __future__ import annotations

import hashlib

import otelfin

#: Amounts above this are blocked outright (a toy rule).
BLOCK_ABOVE = 4_000.0


def score(channel: str, amount: float, card_bin: str) -> float:
    """A deterministic toy score in [0, 1): amount, channel and a hash of the card's BIN."""
    digest = hashlib.sha256(f"{channel}:{card_bin}".encode()).digest()
    base = digest[0] / 512
    return min(0.999, base + amount / (2 * BLOCK_ABOVE))


def check(channel: str, amount: float, card_bin: str) -> float:
    """The score, or ``RISK-001`` when the rules block the payment."""
    value = score(channel, amount, card_bin)
    if amount > BLOCK_ABOVE or value > 0.95:
        raise otelfin.OtelfinError("RISK-001", "Transaction blocked by fraud rules")
    return value
