"""Run-time catalogue enforcement for log events: ``error_code`` must be registered.

Policies (``Config.error_code_policy``):

``tag`` (default)
    The event is written with ``catalogue_violation`` saying what is wrong; it is counted in
    ``otelfin_unregistered_error_codes_total{code}`` and one warning per distinct code is
    logged on the ``otelfin`` logger. Nothing is lost: an error without a code is still an
    error someone must see.
``drop``
    The event is not written; it is counted and warned about the same way.
``raise``
    :class:`UnregisteredErrorCodeError` is raised from the log call (for tests).

``error`` and ``critical`` events without any ``error_code`` are violations too. Records of the
OpenTelemetry SDK's own loggers (``opentelemetry.*``, e.g. "Failed to export span batch") are
always kept and tagged, whatever the policy: they are often the only sign that telemetry is
being lost, and dropping them by the rule meant for application events hid exactly that.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from structlog import DropEvent

from otelfin import _internal, _registries, _settings
from otelfin.catalogue import CODE_PATTERN, Catalogue, CatalogueSlot
from otelfin.metrics import names
from otelfin.scrub import ScrubOptions, scrub_text

__all__ = [
    "CatalogueCheck",
    "UnregisteredErrorCodeError",
    "unregistered_counter",
]

_log = logging.getLogger("otelfin")
_POLICIES = _settings.by_name("error_code_policy").choices

METRIC = names.UNREGISTERED_CODES_BASE
#: Label value for events at error/critical level without any code.
MISSING = "missing"
#: Label value for codes that are not even of the form DOMAIN-NNN (never used as a label).
MALFORMED = "malformed"
#: Label value once the distinct-code budget is spent.
OTHER = "other"
_NEEDS_CODE = frozenset({"error", "critical"})
#: Logger-name prefix of the records that are kept whatever the policy.
_ALWAYS_KEPT = "opentelemetry"
_HELP = "Log events whose error_code is not in the catalogue (or missing on error/critical)"


class UnregisteredErrorCodeError(ValueError):
    """A log event broke the catalogue under policy ``raise``: unknown or missing code."""


class _CodeCounter:
    """The counter plus the label budget: at most ``max_codes`` distinct ``code`` values.

    Codes come from application data, so a label per raw value would be unbounded (and could
    carry anything, a card number included). Only well-formed ``DOMAIN-NNN`` codes become
    label values, up to the budget; the rest fold into ``malformed`` / ``other``.
    """

    def __init__(self, registry: CollectorRegistry, max_codes: int) -> None:
        self.registry = registry
        self.max_codes = max_codes
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def label(self, code: str | None) -> str:
        if code is None:
            return MISSING
        if not CODE_PATTERN.fullmatch(code):
            return MALFORMED
        if code in self.seen:
            return code
        with self.lock:
            if len(self.seen) < self.max_codes:
                self.seen.add(code)
                return code
        return OTHER

    def inc(self, code: str | None) -> None:
        # Registered on first use: importing otelfin must not touch the global registry.
        _counter_in(self.registry).labels(code=self.label(code)).inc()


def _new_counter(registry: CollectorRegistry | None) -> Counter:
    return Counter(METRIC, _HELP, labelnames=("code",), registry=registry)


def _counter_in(registry: CollectorRegistry) -> Counter:
    return _registries.collector_in(registry, METRIC, _new_counter)


def unregistered_counter(registry: CollectorRegistry | None = None) -> Counter:
    """The ``otelfin_unregistered_error_codes_total`` counter in ``registry`` (default global)."""
    return _counter_in(registry if registry is not None else REGISTRY)


#: The catalogue ``configure()`` handed to the logging pillar, which a check built with
#: ``catalogue=None`` follows: ``use_catalogue`` (``install_pillar``) sets it.
_given = CatalogueSlot()
use_catalogue = _given.use
live_catalogue = _given.current


class CatalogueCheck:
    """The structlog processor enforcing the catalogue on ``error_code``.

    Everything is decided in ``__init__`` (or :meth:`update`) so ``__call__`` stays small. A
    ``catalogue`` of None follows the one ``configure()`` gave the logging pillar (the packaged
    default before that).
    """

    def __init__(
        self,
        catalogue: Catalogue | None = None,
        policy: str = "tag",
        enrich: bool = False,
        registry: CollectorRegistry | None = None,
        max_codes: int = 100,
    ) -> None:
        self.warned: set[str] = set()
        self.update(catalogue, policy, enrich, registry, max_codes)
        #: Called with ``(reason, event_dict)`` for every violation (test captures).
        self.listeners: tuple[Any, ...] = ()

    def update(
        self,
        catalogue: Catalogue | None,
        policy: str,
        enrich: bool,
        registry: CollectorRegistry | None,
        max_codes: int = 100,
        scrub_options: ScrubOptions | None = None,
    ) -> None:
        """Apply new settings in place (reconfiguration keeps the chain object);
        ``scrub_options`` mask what a violation quotes (None: the process default)."""
        if policy not in _POLICIES:
            raise ValueError(f"error_code_policy {policy!r} must be {', '.join(_POLICIES)}")
        self.catalogue = catalogue
        self.policy = policy
        self.enrich = enrich
        self.scrub_options = scrub_options
        self.counter = _CodeCounter(registry if registry is not None else REGISTRY, max_codes)
        # One warning per kind per configuration: a new setup (a test, a new policy) warns anew.
        self.warned = set()

    def _catalogue(self) -> Catalogue:
        if self.catalogue is not None:
            return self.catalogue
        return live_catalogue()

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
        code = event_dict.get("error_code")
        if code is None:
            if event_dict.get("level") in _NEEDS_CODE:
                return self._violation(event_dict, None, "missing error_code on an error event")
            return event_dict
        entry = self._catalogue().get(code) if isinstance(code, str) else None
        if entry is None:
            if not isinstance(code, str):
                event_dict["error_code"] = code = scrub_text(str(code), options=self.scrub_options)
            return self._violation(event_dict, code, f"unregistered error_code {code!r}")
        if self.enrich:
            event_dict.setdefault("error_message", entry.message)
            event_dict.setdefault("retryable", entry.retryable)
            if entry.http_status is not None:
                event_dict.setdefault("http_status", entry.http_status)
        return event_dict

    def _violation(self, event_dict: dict[str, Any], code: str | None, reason: str) -> Any:
        reason = scrub_text(reason, options=self.scrub_options)
        for listener in self.listeners:
            listener(reason, event_dict)
        try:
            self.counter.inc(code)
        except Exception as exc:
            _internal.report("logging.unregistered_counter", exc)
        policy = self.policy
        source = event_dict.get("logger")
        if isinstance(source, str) and (
            source == _ALWAYS_KEPT or source.startswith(_ALWAYS_KEPT + ".")
        ):
            policy = "tag"
        if policy == "raise":
            event = scrub_text(str(event_dict.get("event")), options=self.scrub_options)
            raise UnregisteredErrorCodeError(f"{reason} (event {event!r})")
        key = code if code is not None else MISSING
        if key not in self.warned and len(self.warned) < 1000:
            self.warned.add(key)
            if policy == "tag":
                _log.warning(
                    "otelfin: a log event broke the catalogue: %s; it is kept with a "
                    "catalogue_violation field, further ones are counted in %s_total",
                    reason,
                    METRIC,
                )
            else:
                _log.warning(
                    "otelfin: dropped a log event: %s; further events like it are only counted "
                    "in %s_total",
                    reason,
                    METRIC,
                )
        if policy == "tag":
            event_dict["catalogue_violation"] = reason
            return event_dict
        raise DropEvent
