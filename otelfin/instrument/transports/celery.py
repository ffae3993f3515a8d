"""Celery: error codes and retries on top of the official instrumentation.

The official ``opentelemetry-instrumentation-celery`` gives a PRODUCER span per publish
(``apply_async/<task>``, context injected into the message headers) and a CONSUMER span per
run in the worker (``run/<task>``, continuing the producer's trace); a failure marks the run
span ERROR and records the exception. otelfin adds, through Celery's own signals:

* ``task_failure``: an exception carrying a catalogue code (:class:`otelfin.OtelfinError`)
  puts ``error.type`` and ``otelfin.error_code`` on the run span, so the RED metrics from the
  CONSUMER span get the ``error_code`` label, as ``@traced`` does. (The failure log line
  Celery writes, with the exception, gets the code from otelfin's logging pipeline.)
* ``task_retry``: a ``retry`` event on the run span that asked for it, with
  ``celery.retry.count`` (the attempt being scheduled, 1 for the first retry) and the reason.
  The official instrumentation only sets a ``celery.retry.reason`` attribute; each retried
  run is its own ``run/<task>`` span carrying ``celery.retries``.
* ``before_task_publish``: the broker the message goes to, as ``server.address`` (and
  ``server.port``, and ``messaging.system`` from the broker URL's scheme) on the PRODUCER
  span, which the official instrumentation leaves without any, so the dependency series has
  a ``peer`` (the broker host; ``memory`` and the like for brokers without one).

Celery's prefork pool forks worker processes after the parent imported the app: see the
docs (docs/guides/data-stores.md, "Celery") for the ``worker_process_init`` recipe.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.trace import SpanKind

from otelfin import _internal
from otelfin._errors import error_code_of

__all__ = ["CeleryFixInstrumentor"]


def _exception(einfo: Any, exception: Any) -> BaseException | None:
    if isinstance(exception, BaseException):
        return exception
    inner = getattr(einfo, "exception", None)
    inner = getattr(inner, "exc", inner)  # billiard's ExceptionWithTraceback
    return inner if isinstance(inner, BaseException) else None


def _on_failure(sender: Any = None, exception: Any = None, einfo: Any = None, **_: Any) -> None:
    """Put the exception's catalogue code on the run span (current while the task fails)."""
    try:
        exc = _exception(einfo, exception)
        code = error_code_of(exc) if exc is not None else None
        if code is None:
            return
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("error.type", code)
            span.set_attribute("otelfin.error_code", code)
    except Exception as exc:
        _internal.report("transports.celery.failure", exc)


def _on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    """A ``retry`` event with the retry number on the run span asking for the retry."""
    try:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        retries = getattr(request, "retries", 0)
        attributes: dict[str, Any] = {
            "celery.retry.count": (retries if isinstance(retries, int) else 0) + 1
        }
        if reason is not None:
            attributes["celery.retry.reason"] = str(reason)
            code = error_code_of(reason) if isinstance(reason, BaseException) else None
            if code is not None:
                attributes["otelfin.error_code"] = code
        span.add_event("retry", attributes)
    except Exception as exc:
        _internal.report("transports.celery.retry", exc)


_SYSTEMS = {"amqp": "rabbitmq", "amqps": "rabbitmq", "pyamqp": "rabbitmq", "rediss": "redis"}


def _broker_attributes(app: Any) -> dict[str, Any]:
    """server.address/server.port/messaging.system of the app's broker URL (never secrets)."""
    from urllib.parse import urlsplit

    url = app.conf.broker_write_url or app.conf.broker_url or "amqp://localhost"  # the default
    if isinstance(url, (list, tuple)):
        url = url[0] if url else ""
    first = str(url).split(";", 1)[0].strip()
    parts = urlsplit(first if "://" in first else f"{first}://")
    scheme = parts.scheme.split("+", 1)[0].lower() or "amqp"  # Celery's default transport
    attributes: dict[str, Any] = {"messaging.system": _SYSTEMS.get(scheme, scheme)}
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    attributes["server.address"] = host or scheme
    if port is not None:
        attributes["server.port"] = port
    return attributes


def _on_publish(sender: Any = None, **_: Any) -> None:
    try:
        span = trace.get_current_span()
        if not span.is_recording() or getattr(span, "kind", None) is not SpanKind.PRODUCER:
            return
        from celery import current_app

        task = current_app.tasks.get(sender) if isinstance(sender, str) else sender
        app = getattr(task, "app", None) or current_app
        for key, value in _broker_attributes(app).items():
            if key != "messaging.system" or not getattr(span, "attributes", {}).get(key):
                span.set_attribute(key, value)
    except Exception as exc:
        _internal.report("transports.celery.publish", exc)


# Celery runs the first two while the official run span is open and current (it ends in
# task_postrun), and before_task_publish after the official receiver opened the publish span.
_RECEIVERS = (
    ("task_failure", _on_failure),
    ("task_retry", _on_retry),
    ("before_task_publish", _on_publish),
)


class CeleryFixInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Error codes and retry events for Celery (see module docstring).

    A row of the transport table after the official Celery instrumentor.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The Celery versions the official instrumentor (and so this fix) supports."""
        return ("celery >= 4.0, < 6.0",)

    def _instrument(self, **kwargs: Any) -> None:
        from celery import signals

        for name, receiver in _RECEIVERS:
            getattr(signals, name).connect(receiver, weak=False)

    def _uninstrument(self, **kwargs: Any) -> None:
        from celery import signals

        for name, receiver in _RECEIVERS:
            getattr(signals, name).disconnect(receiver)
