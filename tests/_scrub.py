"""Card numbers for the scrubber tests."""

from __future__ import annotations

from otelfin.scrub import luhn_valid


def luhn_complete(body: str) -> str:
    """``body`` plus the check digit that makes it Luhn-valid."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))
