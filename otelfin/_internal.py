"""Containment: failures inside otelfin are counted and reported once, never raised.

Everything otelfin does on the host's call path (span start/end, attribute callables,
observers, exporters, hooks) runs behind :func:`report` so the host's result, exception and
latency profile stay its own.

This module is the bottom of the house: it imports nothing of otelfin. What it logs may quote
host data (a card number in an exception's text), so it is masked with the function the
scrubber hands over when it is imported (:func:`mask_with`; ``otelfin.scrub`` is imported with
``otelfin`` itself, before anything can report); until then every digit is masked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = [
    "export_health",
    "internal_error_counts",
    "mask_with",
    "logs_dropped",
    "otlp_export_failed",
    "otlp_health",
    "report",
    "reset",
    "span_export_failed",
    "spans_dropped",
]

_log = logging.getLogger("otelfin")


def _every_digit(text: str) -> str:
    return re.sub(r"\d", "X", text)


class _State:
    """Containment's counters, their lock, and the mask for what it logs."""

    __slots__ = (
        "counts",
        "dropped",
        "export_failures",
        "lock",
        "logs_dropped",
        "mask",
        "otlp_failures",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mask: Callable[[str], str] = _every_digit
        self.counts: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.export_failures: Counter[str] = Counter()
        self.logs_dropped: Counter[str] = Counter()
        self.otlp_failures: Counter[tuple[str, str]] = Counter()


_state = _State()


def mask_with(mask: Callable[[str], str]) -> None:
    """Mask what containment logs with ``mask`` (the scrubber's ``scrub_text``)."""
    _state.mask = mask


def _after_fork_in_child() -> None:
    _state.lock = threading.Lock()  # a parent thread may have held it at fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def report(where: str, exc: BaseException | None = None, detail: str = "") -> None:
    """Count a failure at ``where``; log it the first time ``where`` fails.

    Never raises: a broken log handler must not turn a contained failure into a host failure.
    """
    with _state.lock:
        _state.counts[where] += 1
        first = _state.counts[where] == 1
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
        _log.warning(_state.mask(message))
    except Exception:
        pass


def _tally(counts: Counter[Any], key: Any, count: int) -> bool:
    """Add ``count`` to ``counts[key]``; True the first time ``key`` is counted (warn then)."""
    with _state.lock:
        first = counts[key] == 0
        counts[key] += count
    return first


def _count_and_say(
    counts: Counter[Any], key: Any, count: int, event: str, detail: str, further: str, series: str
) -> None:
    """Count; the first time ``key`` is counted, warn once with where the rest are counted."""
    if count > 0 and _tally(counts, key, count):
        _warn(
            f"otelfin: {event}{': ' + detail if detail else ''}; "
            f"further {further} are counted in {series}"
        )


def spans_dropped(reason: str, count: int, detail: str = "") -> None:
    """Count ``count`` spans that will never reach the exporter, by ``reason``
    (``queue_full``, ``export_failed``, ``shutdown``); the first time per reason, warn.

    Exposed as ``otelfin_spans_dropped_total{reason}`` on ``/metrics``. Never raises.
    """
    _count_and_say(
        _state.dropped,
        reason,
        count,
        f"{count} span(s) dropped ({reason})",
        detail,
        "drops",
        f'otelfin_spans_dropped_total{{reason="{reason}"}}',
    )


def span_export_failed(reason: str, detail: str = "") -> None:
    """Count one failed export call by ``reason`` (``failure``: the exporter said so,
    ``exception``: it raised, ``timeout``: it had not returned by the shutdown deadline); the
    first time per reason, warn. Exposed as ``otelfin_span_export_failures_total{reason}``.
    """
    _count_and_say(
        _state.export_failures,
        reason,
        1,
        f"a span export failed ({reason})",
        detail,
        "failures",
        f'otelfin_span_export_failures_total{{reason="{reason}"}}',
    )


def logs_dropped(reason: str, count: int, detail: str = "") -> None:
    """Count ``count`` log records bound for OTLP that will never reach the collector, by
    ``reason`` (``queue_full``, ``export_failed``, ``shutdown``); warn the first time per reason.

    Exposed as ``otelfin_logs_dropped_total{reason}``. The JSON lines themselves (stdout or
    the log file) are written regardless. Never raises.
    """
    _count_and_say(
        _state.logs_dropped,
        reason,
        count,
        f"{count} log record(s) not sent over OTLP ({reason})",
        detail,
        "drops",
        f'otelfin_logs_dropped_total{{reason="{reason}"}}',
    )


def otlp_export_failed(signal: str, reason: str, detail: str = "") -> None:
    """Count one failed OTLP export call of ``signal`` (``logs``, ``metrics``) by ``reason``
    (``failure``, ``exception``, ``timeout``); warn the first time. Exposed as
    ``otelfin_otlp_export_failures_total{signal,reason}``."""
    _count_and_say(
        _state.otlp_failures,
        (signal, reason),
        1,
        f"an OTLP {signal} export failed ({reason})",
        detail,
        "failures",
        f'otelfin_otlp_export_failures_total{{signal="{signal}",reason="{reason}"}}',
    )


def otlp_health() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Copies of (log records dropped by reason, OTLP export failures by (signal, reason))."""
    with _state.lock:
        return dict(_state.logs_dropped), dict(_state.otlp_failures)


def export_health() -> tuple[dict[str, int], dict[str, int]]:
    """Copies of (spans dropped by reason, export failures by reason), for metrics and tests."""
    with _state.lock:
        return dict(_state.dropped), dict(_state.export_failures)


def _warn(message: str) -> None:
    with contextlib.suppress(Exception):  # a broken handler must not reach the exporter
        _log.warning(_state.mask(message))


def internal_error_counts() -> dict[str, int]:
    """A copy of the failure counts by place, for metrics and tests."""
    with _state.lock:
        return dict(_state.counts)


def reset() -> None:
    """Forget all counts (tests)."""
    with _state.lock:
        _state.counts.clear()
        _state.dropped.clear()
        _state.export_failures.clear()
        _state.logs_dropped.clear()
        _state.otlp_failures.clear()


def lazy_attribute(
    package: str, table: dict[str, str], namespace: dict[str, Any], name: str
) -> Any:
    """PEP 562 ``__getattr__`` for a package whose names live in submodules loaded on first
    use: ``table`` maps each name to its submodule; the value is kept in ``namespace`` (the
    package's globals), so the lookup runs once per name."""
    import importlib

    module = table.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{package}.{module}"), name)
    namespace[name] = value
    return value
