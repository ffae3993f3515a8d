"""Small text helpers the offline tools' reports share."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: float, word: str, many: str | None = None) -> str:
    """``1 line``, ``2 lines``, ``0 lines``: the count and the word in agreement.

    ``many`` is the plural when adding an ``s`` is wrong (``plural(n, "entry", "entries")``).
    """
    return f"{count:g} {word if count == 1 else (many or word + 's')}"
