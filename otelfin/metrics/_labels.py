"""Label policy and the per-metric series cap.

Every Prometheus series costs memory in the process and in the TSDB, and a label fed from an
unbounded value (a user id, a trace id, a card number) turns one metric into millions of
series. Two guards:

* at definition time, label *names* are checked against a deny-list of high-cardinality or
  sensitive names (always refused) and an allow-list of names known to stay small (anything
  else needs an explicit ``allow=``);
* at run time, a :class:`SeriesGuard` caps the number of label-value combinations per metric;
  combinations beyond the cap fold into one ``other`` series and
  ``otelfin_metric_overflow_total{metric}`` counts every folded observation.

prometheus_client has neither (its children dict grows without bound), hence this module.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter

from otelfin import _registries
from otelfin.metrics import names
from otelfin.scrub import scrub_text

__all__ = [
    "ALLOWED_LABELS",
    "DENIED_LABELS",
    "DEFAULT_MAX_SERIES",
    "OTHER",
    "LabelPolicyError",
    "check_label_names",
    "SeriesGuard",
    "overflow_counter",
]

#: Label names known to stay small, and why:
ALLOWED_LABELS: frozenset[str] = frozenset(
    {
        "service",  # one per deployment
        "operation",  # a code path: one per instrumented function
        "endpoint",  # an HTTP/gRPC route template, never the raw path
        "route",  # same as endpoint, OpenTelemetry's name for it
        "method",  # HTTP method or RPC method
        "status_code",  # HTTP / gRPC status: a few dozen at most
        "outcome",  # ok / error
        "error_code",  # catalogue codes: a registered, reviewed list
        "channel",  # payment channel: card-present, e-commerce, wallet, ...
        "transport",  # http, grpc, amqp, kafka, nats
        "payment_method",  # card, bank transfer, wallet: a product list
        "currency",  # ISO 4217: bounded, and usually a handful per service
        "region",  # deployment region
        "acquirer",  # the processing bank: a contract list
        "messaging_system",  # OpenTelemetry messaging.system
        "destination",  # a queue or topic name (not a reply queue per request)
        "system",  # a dependency's kind: postgresql, redis, rabbitmq, http, grpc
        "peer",  # a dependency's host or service name: the service's own list of peers
        "metric",  # used by otelfin_metric_overflow_total itself
        "where",  # used by otelfin_internal_errors_total
        "code",  # used by otelfin_unregistered_error_codes_total
    }
)

#: Exact names that are always refused (high cardinality, or personal/card data).
DENIED_LABELS: frozenset[str] = frozenset(
    {
        "instance",
        "pod",
        "pod_name",
        "pod_id",
        "host",
        "hostname",
        "container",
        "container_id",
        "ip",
        "client_ip",
        "remote_addr",
        "user",
        "user_id",
        "username",
        "customer",
        "customer_id",
        "merchant_id",
        "email",
        "phone",
        "trace_id",
        "span_id",
        "request_id",
        "correlation_id",
        "session_id",
        "transaction_id",
        "payment_id",
        "order_id",
        "idempotency_key",
        "card",
        "card_number",
        "pan",
        "cvv",
        "account",
        "account_number",
        "iban",
        "token",
        "url",
        "path",
    }
)

# Name parts that mark a label as unbounded or sensitive wherever they appear.
_DENIED_PARTS = frozenset(
    {"id", "uuid", "pan", "card", "account", "iban", "user", "email", "ip", "token", "session"}
)
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

#: Label-value combinations one metric may hold before folding into ``other``.
DEFAULT_MAX_SERIES = 1000
#: The label value that replaces every value of a folded series.
OTHER = "other"


class LabelPolicyError(ValueError):
    """A label name the policy refuses (raised when the metric is defined)."""


def _denied_reason(name: str) -> str | None:
    lowered = name.lower()
    if lowered in DENIED_LABELS:
        return "it is on the deny-list of high-cardinality or sensitive labels"
    parts = set(lowered.split("_"))
    hit = sorted(parts & _DENIED_PARTS)
    if hit:
        return f"its part {hit[0]!r} marks an unbounded or sensitive value"
    return None


def check_label_names(
    labelnames: Iterable[str], *, allow: Iterable[str] = (), metric: str = ""
) -> tuple[str, ...]:
    """Validate label names for a metric; returns them as a tuple.

    Raises :class:`LabelPolicyError` (a ``ValueError``) for a denied name (no override: put
    such values on spans, not metrics) or for a name neither in :data:`ALLOWED_LABELS` nor in
    ``allow``. ``allow`` is for names a team has reviewed and knows to be bounded.
    """
    names = tuple(labelnames)
    allowed = ALLOWED_LABELS | frozenset(allow)
    where = f" on metric {metric!r}" if metric else ""
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name.startswith("__"):
            raise LabelPolicyError(f"label name {name!r}{where} is not a valid Prometheus name")
        reason = _denied_reason(name)
        if reason is not None:
            raise LabelPolicyError(
                f"label {name!r}{where} is refused: {reason}. Record it as a span attribute "
                "(traces are the place for per-request values) and keep metric labels bounded"
            )
        if name not in allowed:
            raise LabelPolicyError(
                f"label {name!r}{where} is not on the allow-list "
                f"({', '.join(sorted(ALLOWED_LABELS))}); "
                "if its values are bounded, pass allow=[...] naming it"
            )
    if len(set(names)) != len(names):
        raise LabelPolicyError(f"duplicate label names{where}: {names}")
    return names


def _new_overflow_counter(registry: CollectorRegistry | None) -> Counter:
    return Counter(
        names.OVERFLOW_BASE,
        "Observations folded into the 'other' series: the metric hit its series cap.",
        ["metric"],
        registry=registry,
    )


def overflow_counter(registry: CollectorRegistry | None = REGISTRY) -> Counter:
    """``otelfin_metric_overflow_total{metric}`` in ``registry`` (created once per registry)."""
    return _registries.collector_in(registry, names.OVERFLOW_BASE, _new_overflow_counter)


def forget_overflow_counter(registry: CollectorRegistry | None) -> None:
    """Unregister the overflow counter from ``registry`` (the metrics pillar's uninstall)."""
    _registries.forget(registry, names.OVERFLOW_BASE)


def _masked(values: tuple[str, ...]) -> tuple[str, ...]:
    """Label values with card numbers masked: a value taken from a span attribute or a route
    may hold one, and ``/metrics`` is read by anyone who can scrape. Runs once per series."""
    return tuple(scrub_text(v) if isinstance(v, str) else v for v in values)


class SeriesGuard:
    """Caps the label-value combinations of one labelled prometheus_client metric.

    ``child(values)`` returns the bound child for a tuple of label values (strings), creating
    it while the metric has fewer than ``max_series`` combinations; after that, unseen
    combinations get the single ``other`` child (every label value replaced by ``other``
    except those named in ``keep``) and the overflow counter increments. Those folded series
    count too: once the metric holds ``2 * max_series`` combinations (the kept labels are
    flooding as well, e.g. an operation named after raw URL paths), new combinations fold every
    label except ``outcome``. Memory stays bounded by about ``2 * max_series`` series whatever
    values arrive.
    """

    def __init__(
        self,
        metric: Any,
        name: str,
        labelnames: tuple[str, ...],
        *,
        max_series: int = DEFAULT_MAX_SERIES,
        keep: Iterable[str] = ("service",),
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        if max_series < 1:
            raise ValueError(f"max_series must be at least 1, not {max_series}")
        self.metric = metric
        self.name = name
        self.labelnames = labelnames
        self.max_series = max_series
        self._keep = tuple(i for i, label in enumerate(labelnames) if label in set(keep))
        self._last_keep = tuple(i for i, label in enumerate(labelnames) if label == "outcome")
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()
        self._overflow = overflow_counter(registry).labels(name)

    def __len__(self) -> int:
        return len(self._children)

    def child(self, values: tuple[str, ...]) -> Any:
        """The child for ``values``, or the ``other`` child once the cap is reached."""
        found = self._children.get(values)
        if found is not None:
            return found
        return self._slow(values)

    def bind(self, values: tuple[str, ...]) -> tuple[Any, bool]:
        """``(child, folded)``: like :meth:`child`, also saying whether it was folded."""
        found = self._children.get(values)
        if found is not None:
            return found, False
        child = self._slow(values)
        return child, self._children.get(values) is not child

    def _slow(self, values: tuple[str, ...]) -> Any:
        with self._lock:
            found = self._children.get(values)
            if found is not None:
                return found
            if len(self._children) < self.max_series - 1:
                # One slot stays reserved for the 'other' series itself.
                child = self.metric.labels(*_masked(values))
                self._children[values] = child
                return child
            folded = tuple(v if i in self._keep else OTHER for i, v in enumerate(values))
            other = self._children.get(folded)
            if other is None and len(self._children) >= 2 * self.max_series:
                # The kept labels flood too: fold them as well (bounded by the outcomes).
                folded = tuple(v if i in self._last_keep else OTHER for i, v in enumerate(values))
                other = self._children.get(folded)
            if other is None:
                other = self.metric.labels(*_masked(folded))
                self._children[folded] = other
        self._overflow.inc()
        return other
