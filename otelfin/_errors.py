"""The error type that carries a catalogue code across spans, metrics and logs."""

from __future__ import annotations

from typing import Any

__all__ = [
    "REQUEST_SPAN_KEY",
    "SERVER_ERROR_CODE",
    "UNHANDLED_ERROR_CODE",
    "OtelfinError",
    "error_code_of",
    "mark_unhandled",
    "unhandled_span",
]

#: The packaged catalogue's code for an exception no handler caught (a 500), given to the
#: server's crash line (uvicorn's "Exception in ASGI application", gunicorn's "Error handling
#: request", Flask's "Exception on ...") when the exception carries no code of its own.
UNHANDLED_ERROR_CODE = "SYS-001"
#: The packaged catalogue's code for a server's own error line without an exception
#: (gunicorn's "WORKER TIMEOUT", a worker that failed to boot).
SERVER_ERROR_CODE = "SYS-002"

#: Where a framework's request keeps its span for lines logged after the span ended (Django's
#: ``request.META``): ``(trace_id, span_id, error_code or None)``.
REQUEST_SPAN_KEY = "otelfin.request_span"

# Where an exception keeps the request it escaped from: (trace_id, span_id) as hex.
_SPAN_ATTRIBUTE = "_otelfin_request_span"


class OtelfinError(Exception):
    """An error with a registered catalogue code, e.g. ``OtelfinError("PAY-012", "...")``.

    The code lands on the span (``error.type`` and ``otelfin.error_code``), on the metrics
    (``error_code`` label) and on the log line. Extra keyword arguments are kept in
    :attr:`attributes` and recorded on the span (after scrubbing).
    """

    # Its public name: span events (``exception.type``), tracebacks and reprs say
    # ``otelfin.OtelfinError``, the path users import, not this private module. Pickling
    # resolves the same name.
    __module__ = "otelfin"

    def __init__(self, code: str, message: str = "", **attrs: Any) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.error_code = code
        self.message = message
        self.attributes = attrs

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep pickling (multiprocessing, Celery) working with the keyword attributes.
        return (_rebuild, (type(self), self.code, self.message, self.attributes))


def _rebuild(
    cls: type[OtelfinError], code: str, message: str, attrs: dict[str, Any]
) -> OtelfinError:
    return cls(code, message, **attrs)


def error_code_of(exc: BaseException) -> str | None:
    """The catalogue code an exception carries (``error_code`` attribute), if any."""
    try:
        code = getattr(exc, "error_code", None)
    except Exception:  # a property that raises: the exception carries no usable code
        return None
    return code if isinstance(code, str) and code else None


def mark_unhandled(exc: BaseException) -> None:
    """Remember on ``exc`` the current span (the request's) as it escapes the handler.

    Servers log the crash after the request's span has ended (uvicorn, gunicorn), so no span
    is current then; the stdlib bridge reads the ids kept here (:func:`unhandled_span`). The
    first mark wins: the innermost hook runs inside the request's span. Never raises.
    """
    try:
        if getattr(exc, _SPAN_ATTRIBUTE, None) is not None:
            return
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        ids = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")) if ctx.is_valid else ()
        setattr(exc, _SPAN_ATTRIBUTE, ids)
    except Exception:  # an exception type that takes no attributes: the line has no ids
        return


def unhandled_span(exc: BaseException | None) -> tuple[str, ...] | None:
    """``(trace_id, span_id)`` of the request ``exc`` escaped, ``()`` when it escaped one with
    no span, or None when ``exc`` was never marked (:func:`mark_unhandled`)."""
    if exc is None:
        return None
    try:
        ids = getattr(exc, _SPAN_ATTRIBUTE, None)
    except Exception:
        return None
    return ids if isinstance(ids, tuple) else None
