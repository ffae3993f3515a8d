"""What a measured operation's end counts as: ``ok``, ``declined`` or ``error``.

One function decides it for every pillar (the ``@traced`` observer, the transport span
processor, the problem-details handler), so the span attribute ``otelfin.outcome``, the metrics'
``outcome`` label and the tail-sampling rules can never disagree. The rules, in order:

1. The response says the service failed: HTTP status 5xx, or one of the gRPC codes the
   OpenTelemetry semantic conventions count as a server error (UNKNOWN, DEADLINE_EXCEEDED,
   UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS) -> ``error``. A catalogue code cannot
   turn a 5xx into a decline: the client saw a failure.
2. An outcome otelfin already decided on the span (``otelfin.outcome``, set when the handler's
   error was classified) stands.
3. A registered catalogue code -> the code's outcome: its ``outcome`` field when present, else
   ``declined`` for severity info/warning and ``error`` for error/critical.
4. Any other 4xx, or any other non-OK gRPC code -> ``declined``: the service answered "no" on
   purpose (validation, authentication, not found, rate limit). It did not fail, and the
   error budget is for failures the service owns; a surge of them shows on the decline-ratio
   panel and rule instead of paging as an outage.
5. An unregistered code, an unhandled exception, or status ERROR -> ``error``.
6. Otherwise ``ok``.

A request that ends ``declined`` or ``error`` without a code of its own (a handler that caught
``OtelfinError("PAY-006")`` from an internal ``@traced`` call and answered 402 itself) takes the
code of the last internal call that failed with one (:func:`note_code`): the span and the
``error_code`` label then name the decline, instead of ``unclassified``. The status, not that
code, decides the outcome: the handler chose the answer.

:class:`OutcomeSpanProcessor` puts the attribute on the spans other instrumentations make
(``@traced`` sets its own): SERVER, CONSUMER, CLIENT and PRODUCER spans, the kinds otelfin
measures. The outcome depends on the span's final state (its HTTP status, the code the error
handler put on it), so it is decided in the SDK's ending hook (``_on_ending``), which runs after
``end()`` and before *any* processor's ``on_end``: tail sampling, metrics and export all see it,
whatever the sampler decided. The span's attributes are read-only by then, so the outcome (and
a noted code) is written through the SDK's own bounded mapping, unlocked for those keys only:
the limits and the dropped count behave as for ``set_attribute``. (Earlier releases wrapped
each span's ``end`` in a closure at start: ~4 us and a reference cycle per span.) A declined
span whose instrumentation set status ERROR (gRPC marks every non-OK code, HTTP clients every
4xx) is set to OK: declined is never ERROR.

:func:`attributes_of` gives the span processors one plain-dict view of a span's attributes:
every public read of the SDK's ``BoundedAttributes`` goes through the ``Mapping`` mixin, about
0.5 us for a key the span does not have, and a measured span is read a dozen times.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otelfin import _internal
from otelfin.catalogue import ErrorCode, default_catalogue

#: What outcomes look codes up in: a Catalogue, or any mapping of code to entry.
Codes = Mapping[str, ErrorCode]

__all__ = [
    "ATTRIBUTE",
    "DECLINED",
    "ERROR",
    "OK",
    "OUTCOMES",
    "OutcomeSpanProcessor",
    "attributes_of",
    "of_code",
    "set_on_ending",
    "of_response",
    "of_span",
    "settle",
    "note_code",
]

#: The span attribute carrying the outcome (read by tail sampling and the offline tools).
ATTRIBUTE = "otelfin.outcome"
OK = "ok"
DECLINED = "declined"
ERROR = "error"
OUTCOMES = (OK, DECLINED, ERROR)

# gRPC codes the semantic conventions count as server errors (numeric, as on spans).
_GRPC_SERVER_ERRORS = frozenset({2, 4, 12, 13, 14, 15})
_GRPC_KEY = "rpc.grpc.status_code"


def of_code(code: str | None, catalogue: Codes | None = None) -> str:
    """The outcome of a request that ended with catalogue code ``code``.

    A registered code gives its catalogue outcome; None or an unregistered code is ``error``
    (nobody said it is a business outcome). ``catalogue`` defaults to the packaged one.
    """
    if code is None:
        return ERROR
    entry = _codes(catalogue).get(code)
    return str(entry.outcome) if entry is not None else ERROR


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def of_span(
    attributes: Mapping[str, object], status: StatusCode, catalogue: Codes | None = None
) -> str:
    """The outcome of a finished (or finishing) span from its attributes and status.

    ``catalogue`` (code -> entry) defaults to the packaged one.
    """
    get = attributes.get
    http = _int(get("http.response.status_code"))
    if http is None:
        http = _int(get("http.status_code"))
    grpc = _int(get(_GRPC_KEY))
    if (http is not None and http >= 500) or grpc in _GRPC_SERVER_ERRORS:
        return ERROR
    decided = get(ATTRIBUTE)
    if decided in OUTCOMES:
        return str(decided)
    code = get("otelfin.error_code")
    if isinstance(code, str) and code:
        entry = _codes(catalogue).get(code)
        if entry is not None:
            return str(entry.outcome)
    else:
        code = None
    if (http is not None and 400 <= http < 500) or (grpc is not None and grpc != 0):
        return DECLINED
    if code is not None or status is StatusCode.ERROR:
        return ERROR
    return OK


def _codes(catalogue: Codes | None) -> Codes:
    return catalogue if catalogue is not None else default_catalogue()


def of_response(code: str | None, status: int | None, catalogue: Codes | None = None) -> str:
    """The outcome of an HTTP response ``status`` that answered an error with ``code``."""
    attributes: dict[str, object] = {}
    if code is not None:
        attributes["otelfin.error_code"] = code
    if status is not None:
        attributes["http.response.status_code"] = status
    return of_span(attributes, StatusCode.ERROR if code is None else StatusCode.UNSET, catalogue)


_noted: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_noted_lock = threading.Lock()


def note_code(request: Any, code: str) -> None:
    """Remember ``code`` as what failed inside ``request`` (its span), for :func:`settle`."""
    with _noted_lock:
        _noted[request] = code


def _take_noted(request: Any) -> str | None:
    if not _noted:  # the common case: nothing noted, no lock taken
        return None
    with _noted_lock:
        return _noted.pop(request, None)


def attributes_of(span: Any) -> Mapping[str, object]:
    """A read-only view of an SDK span's attributes (live, ending or finished) as a plain
    dict, or its public ``attributes`` for any other span. Never write through it."""
    raw = getattr(getattr(span, "_attributes", None), "_dict", None)
    if type(raw) is dict:
        return raw
    return span.attributes or {}


def set_on_ending(span: Any, items: Mapping[str, str]) -> None:
    """Set ``items`` on a span whose attributes ``end()`` froze (in the ending hook), through
    the SDK's mapping so its limits and dropped count apply as for ``set_attribute``."""
    attributes = span._attributes
    if not isinstance(attributes, BoundedAttributes):
        return
    frozen = attributes._immutable
    attributes._immutable = False
    try:
        for key, value in items.items():
            attributes[key] = value
    finally:
        attributes._immutable = frozen


def _decide(
    span: Any, attributes: Mapping[str, object], status: StatusCode, catalogue: Codes | None
) -> tuple[str, dict[str, str]]:
    """The span's outcome and the attributes that say it (a noted code included)."""
    outcome = of_span(attributes, status, catalogue)
    noted = _take_noted(span)
    if outcome != OK and noted is not None and not attributes.get("otelfin.error_code"):
        items = {"otelfin.error_code": noted}
        if not attributes.get("error.type"):
            items["error.type"] = noted
        items[ATTRIBUTE] = outcome
        return outcome, items
    return outcome, {ATTRIBUTE: outcome}


def settle(span: Span, catalogue: Codes | None = None) -> str:
    """Decide a recording span's outcome and put it on the span; returns it.

    A span that is not ``error`` loses an ERROR status (set to OK). One that is not ``ok`` and
    carries no code takes the code noted for it (:func:`note_code`).
    """
    status = span.status.status_code
    outcome, items = _decide(span, span.attributes or {}, status, catalogue)
    span.set_attributes(items)
    if outcome != ERROR and status is StatusCode.ERROR:
        span.set_status(Status(StatusCode.OK))
    return outcome


def _settle_ending(span: Any, catalogue: Codes | None) -> str:
    """:func:`settle` for a span in the SDK's ending hook (``end()`` already ran)."""
    status = span.status.status_code
    outcome, items = _decide(span, attributes_of(span), status, catalogue)
    set_on_ending(span, items)
    if outcome != ERROR and status is StatusCode.ERROR:
        span._status = Status(StatusCode.OK)
    return outcome


# A tuple, not a set: SpanKind is an Enum whose __hash__ runs in Python (this runs on every span).
_SETTLED_KINDS = (SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.CLIENT, SpanKind.PRODUCER)


class OutcomeSpanProcessor(SpanProcessor):
    """Sets ``otelfin.outcome`` on measured spans just before they end (see module doc).

    ``catalogue`` returns the catalogue codes are looked up in (the live one, as configured).
    """

    def __init__(self, catalogue: Callable[[], Codes] = default_catalogue) -> None:
        self._catalogue = catalogue

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def _on_ending(self, span: Span) -> None:
        if span.kind not in _SETTLED_KINDS:
            return
        scope = span.instrumentation_scope
        if scope is not None and scope.name == "otelfin":
            return  # @traced decides its own spans' outcome
        try:
            _settle_ending(span, self._catalogue())
        except Exception as exc:
            _internal.report("outcome.settle", exc)
