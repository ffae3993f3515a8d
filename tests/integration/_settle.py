"""Waiting for what a server records after its response has gone out.

A server ends a request's SERVER span once the application has returned, which is after the
last byte of the response was written (the official ASGI middleware ends it in a ``finally``
after ``await app(...)``; the WSGI one when the server closes the response iterable). otelfin
records the request's RED metrics when that span ends. A client that already holds the whole
response can therefore look before the server has ended the span: the span is not exported
yet and ``/metrics`` does not count the request yet. Nothing is lost; it arrives a moment
later. These helpers wait for it, up to a deadline, instead of reading once.

A server in a subprocess that is stopped before its spans file is read needs none of this:
stopping it lets in-flight requests finish and flushes the exporter.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from tests.integration._procs import get

#: Long enough for any server thread to end a span it is about to end; only a bug waits it out.
DEADLINE_S = 10.0
_POLL_S = 0.01


def spans_once(
    exporter: InMemorySpanExporter,
    match: Callable[[ReadableSpan], bool],
    what: str,
    timeout: float = DEADLINE_S,
) -> tuple[ReadableSpan, ...]:
    """The exporter's finished spans as soon as one of them satisfies ``match``.

    Fails the test, naming ``what`` and the spans that were exported, when none does within
    ``timeout`` seconds. It blocks the calling thread, so the server must run in another
    thread or process (an in-process ``httpx.ASGITransport`` has ended the span already).
    """
    deadline = time.monotonic() + timeout
    while True:
        finished = tuple(exporter.get_finished_spans())
        if any(match(span) for span in finished):
            return finished
        if time.monotonic() > deadline:
            names = [(span.name, span.kind.name) for span in finished]
            pytest.fail(f"{what} was not exported within {timeout:.0f}s; exported: {names}")
        time.sleep(_POLL_S)


def requests_counted(exposition: str) -> float:
    """The sum of every ``otelfin_requests_total`` sample in a Prometheus exposition."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "otelfin_requests_total"
    )


def settled_metrics(url: str, requests: int, timeout: float = DEADLINE_S) -> str:
    """The exposition at ``url`` once it counts at least ``requests`` requests.

    At the deadline it returns the last exposition as it is, so the test's own assertions say
    what is missing.
    """
    deadline = time.monotonic() + timeout
    while True:
        exposition = get(url)[1]
        if requests_counted(exposition) >= requests:
            # otelfin_requests_total is derived from the duration histogram's count when it is
            # collected, after the histogram itself: a request ending between the two made the
            # exposition that first counts them all show the histogram one short. Every
            # request has ended now, so the next exposition is whole.
            return get(url)[1]
        if time.monotonic() > deadline:
            return exposition
        time.sleep(_POLL_S * 5)
