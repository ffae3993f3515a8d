"""Keep rules: which local traces a process exports whatever its head sampler said.

``keep_traces`` / ``OTELFIN_KEEP_TRACES`` names the reasons (``error``, ``declined``,
``slow``); :class:`KeepRules` answers, for one finished entry span (the local root of a trace:
a SERVER or CONSUMER span, or a ``@traced`` call that started the trace here), why its local
trace is kept, or None. The tail-sampling processor (:mod:`otelfin._tail`) asks it when a
local root ends; the metrics ask the same question of the same span (or of the same call) to
decide whether an exemplar may name the trace, so an exemplar never points at a trace the
process threw away.

The outcome is :mod:`otelfin._outcome`'s, the one rule set the metrics' ``outcome`` label and
the span attribute ``otelfin.outcome`` use: the attribute when otelfin set it, else the same
decision made from the span's final state (HTTP/gRPC status, error code, status), so spans
otelfin did not mark are judged alike.

``slow`` compares the span's duration with its operation's SLO: ``metrics_operation_slos``
for that operation (``POST /payments/{id}``, ``risk.score``), else ``metrics_slo``. A span
exactly on the SLO is within it, as the histogram's ``le`` bucket counts it.

Nothing here imports a pillar: both the processor and the metrics pillar use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import StatusCode

from otelfin import _outcome
from otelfin._outcome import Codes
from otelfin._settings import DEFAULT_SLO

__all__ = [
    "KEEP_REASONS",
    "KEPT_BY",
    "OUTCOME",
    "KeepRules",
    "is_local_root",
    "keep_rules",
    "operation_of",
    "outcome_of",
]

#: The attribute a kept span carries: why its trace was exported.
KEPT_BY = "otelfin.kept_by"
#: The attribute otelfin sets on the spans it measures: ok, declined or error.
OUTCOME = _outcome.ATTRIBUTE
#: Reasons ``keep_traces`` accepts, in priority order (a trace that is both slow and failed
#: is marked ``error``).
KEEP_REASONS = ("error", "declined", "slow")


def operation_of(name: str, attributes: Mapping[str, object]) -> str:
    """The ``operation`` of an incoming span: a route template, never a raw HTTP target.

    ``<method> <http.route>`` for an HTTP server span with a route template, the method alone
    for one without (a bare middleware's span name holds the raw path, one series per payment
    id), the span name otherwise (``@traced`` functions, gRPC methods, consumers).
    """
    method = attributes.get("http.request.method", attributes.get("http.method"))
    route = attributes.get("http.route")
    if isinstance(method, str) and method and isinstance(route, str) and route:
        return f"{'HTTP' if method == '_OTHER' else method} {route}"
    if isinstance(route, str) and route:
        return name  # a route without a method: the instrumentation's own span name
    if isinstance(method, str) and method:
        return "HTTP" if method == "_OTHER" else method
    return name


def outcome_of(
    attributes: Mapping[str, object], status: StatusCode, catalogue: Codes | None = None
) -> str:
    """``ok``, ``declined`` or ``error`` for a finished span (see :func:`otelfin._outcome.
    of_span`); ``catalogue`` (code -> entry) defaults to the packaged one."""
    return _outcome.of_span(attributes, status, catalogue)


def is_local_root(span: Any) -> bool:
    """True when ``span`` (SDK span or finished span) has no parent in this process."""
    parent = span.parent
    return parent is None or bool(parent.is_remote)


@dataclass(frozen=True)
class KeepRules:
    """Why a local trace is kept: ``reasons`` out of :data:`KEEP_REASONS`; SLOs for ``slow``."""

    reasons: frozenset[str]
    slo: float = DEFAULT_SLO
    operation_slos: Mapping[str, float] = field(default_factory=dict)
    #: The catalogue (code -> entry) for spans that carry no ``otelfin.outcome``; None is the
    #: packaged one.
    catalogue: Codes | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.reasons) - set(KEEP_REASONS)
        if unknown:
            raise ValueError(
                f"keep_traces: unknown reason(s) {', '.join(sorted(unknown))} "
                f"(expected {', '.join(KEEP_REASONS)})"
            )
        if not 0 < self.slo < float("inf"):
            raise ValueError(f"keep_traces: the SLO must be a positive number, not {self.slo!r}")

    def slo_for(self, operation: str) -> float:
        """The latency SLO of ``operation`` in seconds."""
        return self.operation_slos.get(operation, self.slo)

    def reason(self, outcome: str, seconds: float, operation: str) -> str | None:
        """The keep reason for one entry call (outcome, duration, operation), or None."""
        reasons = self.reasons
        if outcome == "error" and "error" in reasons:
            return "error"
        if outcome == "declined" and "declined" in reasons:
            return "declined"
        if "slow" in reasons and seconds > self.slo_for(operation):
            return "slow"
        return None

    def span_reason(self, span: Any) -> str | None:
        """The keep reason for a finished local-root span (``ReadableSpan``), or None."""
        attributes = span.attributes or {}
        start, end = span.start_time, span.end_time
        seconds = (end - start) / 1e9 if start is not None and end is not None else 0.0
        outcome = outcome_of(attributes, span.status.status_code, self.catalogue)
        return self.reason(outcome, seconds, operation_of(span.name, attributes))


def keep_rules(
    reasons: Iterable[str],
    *,
    slo: float = DEFAULT_SLO,
    operation_slos: Iterable[tuple[str, float]] | Mapping[str, float] = (),
    catalogue: Codes | None = None,
) -> KeepRules | None:
    """The rules for ``reasons`` (None when there are none: tail sampling is off).

    ``catalogue`` (a :class:`~otelfin.catalogue.Catalogue`) judges spans that carry no
    ``otelfin.outcome``.
    """
    chosen = frozenset(reasons)
    if not chosen:
        return None
    slos = dict(operation_slos.items() if isinstance(operation_slos, Mapping) else operation_slos)
    return KeepRules(chosen, float(slo), slos, catalogue)
