"""Containment: failures inside otelfin are counted and reported once, never raised.

Everything otelfin does on the host's call path (span start/end, attribute callables,
observers, exporters, hooks) runs behind :func:`report` so the host's result, exception and
latency profile stay its own.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

__all__ = ["internal_error_counts", "report", "reset"]

_log = logging.getLogger("otelfin")
_lock = threading.Lock()
_counts: Counter[str] = Counter()


def report(where: str, exc: BaseException | None = None, detail: str = "") -> None:
    """Count a failure at ``where``; log it the first time ``where`` fails.

    Never raises: a broken log handler must not turn a contained failure into a host failure.
    """
    with _lock:
        _counts[where] += 1
        first = _counts[where] == 1
    if not first:
        return
    try:
        message = f"otelfin: {where} failed"
        if detail:
            message += f": {detail}"
        if exc is not None:
            message += f" ({type(exc).__name__}: {exc})"
        message += "; further failures here are counted, not logged"
        # The exception's text may quote host data (a card number in an argument); the
        # application's own handlers on the root logger see this record, not only otelfin's.
        from otelfin.scrub import scrub_text  # late: the scrubber reports through here

        _log.warning(scrub_text(message))
    except Exception:
        pass


def internal_error_counts() -> dict[str, int]:
    """A copy of the failure counts by place, for metrics and tests."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """Forget all counts (tests)."""
    with _lock:
        _counts.clear()
