"""The error type that carries a catalogue code across spans, metrics and logs."""

from __future__ import annotations

from typing import Any

__all__ = ["OtelfinError", "error_code_of"]


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
