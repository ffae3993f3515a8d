"""The stdlib ``logging`` bridge: records from any library go through otelfin's chain.

:class:`OtelfinHandler` turns a ``LogRecord`` into an event dict (message, ``logger``, extra
fields, ``exc_info``) and hands it to the same chain as ``otelfin.get_logger()``: same JSON,
same masking, same trace ids (the handler runs in the logging call's context).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from otelfin import _internal
from otelfin._errors import (
    REQUEST_SPAN_KEY,
    SERVER_ERROR_CODE,
    UNHANDLED_ERROR_CODE,
    error_code_of,
    unhandled_span,
)
from otelfin.logging import _pipeline
from otelfin.logging._catalogue import UnregisteredErrorCodeError
from otelfin.scrub import ScrubOptions, scrub_text, scrub_value

__all__ = [
    "OtelfinHandler",
    "SERVER_LOGGERS",
    "give_back_server_loggers",
    "install",
    "install_record_scrubbing",
    "take_server_loggers",
    "uninstall",
]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


def _level_name(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class OtelfinHandler(logging.Handler):
    """A logging handler that writes records as otelfin JSON lines.

    A record logged while another is being written on the same thread (a handler that logs,
    a processor warning about a processor warning) is written at most one level deep, so a
    loop can never form.
    """

    def __init__(
        self,
        level: int = logging.NOTSET,
        error_code: str | None = None,
        scrub_options: ScrubOptions | None = None,
    ) -> None:
        super().__init__(level)
        self._local = threading.local()
        #: Given to error/critical records that carry no ``error_code`` of their own, so a
        #: library's errors are not dropped by the catalogue policy.
        self.error_code = error_code
        #: The scrubber's settings (None: the process default).
        self.scrub_options = scrub_options

    def emit(self, record: logging.LogRecord) -> None:
        depth = getattr(self._local, "depth", 0)
        if depth > 1:
            return
        self._local.depth = depth + 1
        try:
            args = scrubbed = record.args
            try:
                # Secret-named entries of a dict argument are redacted before formatting.
                scrubbed = scrub_value(args, options=self.scrub_options) if args else args
                message = record.getMessage() if scrubbed is args else str(record.msg) % scrubbed
            except Exception:  # a bad format string must not lose the record
                try:
                    message = f"{record.msg!s} {scrubbed!r}"
                except Exception:  # nor a message or argument whose text cannot be made
                    message = f"<unprintable {type(record.msg).__name__}>"
            # A bare non-text message (a dict) is handed over as the object, so secret-named
            # entries in it are redacted before the chain renders it as text.
            event = record.msg if not record.args and not isinstance(record.msg, str) else message
            if type(event) is str and "\x1b" in event:
                event = _strip_ansi(event)
            event_dict: dict[str, Any] = {"event": event, "logger": record.name}
            for key, value in record.__dict__.items():
                if key not in _RECORD_FIELDS and not key.startswith("_") and key not in _DROPPED:
                    event_dict[key] = value
            exc = None
            if record.exc_info and record.exc_info[0] is not None:
                event_dict["exc_info"] = record.exc_info
                exc = record.exc_info[1]
            if exc is not None or record.name in _SERVER_NAMES:
                _server_line(record, exc, event_dict, self.error_code)
            elif self.error_code is not None and record.levelno >= logging.ERROR:
                event_dict.setdefault("error_code", self.error_code)
            _pipeline.emit(_level_name(record.levelno), event_dict)
        except UnregisteredErrorCodeError:
            raise
        except Exception:  # reported the stdlib way
            self.handleError(record)
        finally:
            self._local.depth = depth


#: Record attributes never written: uvicorn's ``color_message`` is the message again with
#: terminal colour escapes, for its own coloured console formatter.
_DROPPED = frozenset({"color_message"})
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def _strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences (colours, cursor moves)."""
    return _ANSI.sub("", text).replace("\x1b", "")


def _server_line(
    record: logging.LogRecord,
    exc: BaseException | None,
    event_dict: dict[str, Any],
    default_code: str | None,
) -> None:
    """Give a crash line (a record carrying an exception) or a server's own error line the
    request's trace and an error code, so it is a first-class line: correlated, and valid
    under the catalogue's default policy.

    * trace ids: when no span is current (uvicorn and gunicorn log the crash after the
      request's span ended), the ids the exception was marked with as it left the handler;
    * a framework's line about a finished response (Django's "Service Unavailable: /path",
      logged after its span ended, the request as the record's ``request``): that request's
      span, and the code the span carries (``otelfin.error_code``);
    * code, on error/critical lines without one: the exception's own, else the configured
      ``stdlib_error_code``, else ``SYS-001`` (unhandled exception) for an exception that left
      a request or a server logger's crash line, ``SYS-002`` for a server's own error line.
    """
    marked = unhandled_span(exc)
    span_code = None
    if marked is None and exc is None and record.name in _SERVER_NAMES:
        marked, span_code = _request_span(getattr(record, "request", None))
    if (
        marked
        and "trace_id" not in event_dict
        and not trace.get_current_span().get_span_context().is_valid
    ):
        event_dict["trace_id"], event_dict["span_id"] = marked
    if record.levelno < logging.ERROR or "error_code" in event_dict:
        return
    code = error_code_of(exc) if exc is not None else span_code
    if code is None:
        code = default_code
    if code is None:
        if exc is not None and (marked is not None or record.name in _SERVER_NAMES):
            code = UNHANDLED_ERROR_CODE
        elif exc is None and record.name in _SERVER_NAMES:
            code = SERVER_ERROR_CODE
    if code is not None:
        event_dict["error_code"] = code


class _ScrubbingRecords:
    """A log-record factory that scrubs every stdlib record as it is made, for *every*
    handler: servers configure their own loggers (uvicorn's ``uvicorn.access`` and
    gunicorn's do not propagate to the root logger) and write them with their own handlers,
    which otelfin's bridge never sees.

    The formatted message is scrubbed (never the format string alone: masking ``pin=%s``
    would break the formatting) and kept as the record's message; an exception's text is
    formatted once, scrubbed and cached where ``logging.Formatter`` looks for it.
    """

    def __init__(
        self, inner: Callable[..., logging.LogRecord], options: ScrubOptions | None = None
    ) -> None:
        self.inner = inner
        #: The scrubber's settings (None: the process default, whose masking is always on).
        self.options = options

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        options = self.options
        try:
            _scrub_record(record, options)
        except Exception as exc:
            # Fail closed: the record goes on (the host's logging must not break), but
            # without anything that could not be scrubbed.
            _internal.report("logging.record_scrub", exc)
            _withhold(record, exc, options)
        return record


def _withhold(record: logging.LogRecord, exc: BaseException, options: ScrubOptions | None) -> None:
    """What is left of a record the scrubber failed on: its format string if that scrubs,
    no arguments, no exception text."""
    try:
        msg = scrub_text(record.msg, options=options) if isinstance(record.msg, str) else None
    except Exception:
        msg = None
    note = f"[otelfin: record withheld, scrubbing failed: {type(exc).__name__}]"
    record.msg = f"{msg} {note}" if msg else note
    record.args = None
    record.exc_info = None
    record.exc_text = note if record.exc_text else None
    record.stack_info = None


def _scrub_record(record: logging.LogRecord, options: ScrubOptions | None) -> None:
    msg = record.msg
    args = record.args
    if args or isinstance(msg, str):
        # The arguments first, kept as arguments (filters such as the gunicorn span lookup
        # read them); only when the formatted text still changes is it frozen as the message.
        if args:
            scrubbed_args = scrub_value(args, options=options)
            if scrubbed_args is not args:
                record.args = args = scrubbed_args
        try:
            message = record.getMessage()
        except Exception:
            # A bad format string: the handler reports it as usual, and its report quotes
            # the format string, which may hold a card number too.
            if isinstance(msg, str):
                record.msg = scrub_text(msg, options=options)
            return
        scrubbed = scrub_text(message, options=options)
        if scrubbed is not message and scrubbed != message:
            record.msg = scrubbed
            record.args = None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        text = _FORMATTER.formatException(record.exc_info)
        scrubbed = scrub_text(text, options=options)
        if scrubbed != text:
            record.exc_text = scrubbed


_FORMATTER = logging.Formatter()


class _State:
    """What the bridge installed and what it must put back."""

    __slots__ = (
        "factory",
        "guarded",
        "hooked",
        "installed",
        "lowered_to",
        "previous_level",
        "taken",
        "wanted",
    )

    def __init__(self) -> None:
        self.factory: _ScrubbingRecords | None = None
        self.installed: OtelfinHandler | None = None
        self.previous_level: int | None = None
        #: The root level otelfin set when it lowered it (None: it did not).
        self.lowered_to: int | None = None
        #: The host's handlers given a :class:`_KeepThreshold`, and the filter each got.
        self.guarded: list[tuple[logging.Handler, logging.Filter]] = []
        #: The servers' loggers taken over: their own handlers and the filters otelfin added.
        self.taken: dict[str, tuple[list[logging.Handler], list[logging.Filter]]] = {}
        #: Whether the servers' loggers are to be taken again when a server sets them up.
        self.wanted = False
        #: Whether the servers' set-up functions are hooked (post-import hooks stay).
        self.hooked = False


_state = _State()


def install_record_scrubbing(options: ScrubOptions | None = None) -> None:
    """Scrub every stdlib record as it is made (idempotent), without the bridge, with
    ``options`` (None: the process default)."""
    _install_factory(options)


def _install_factory(options: ScrubOptions | None) -> None:
    factory = _state.factory
    if factory is None or logging.getLogRecordFactory() is not factory:
        factory = _ScrubbingRecords(logging.getLogRecordFactory(), options)
        _state.factory = factory
        logging.setLogRecordFactory(factory)
    factory.options = options


def _uninstall_factory() -> None:
    if _state.factory is not None and logging.getLogRecordFactory() is _state.factory:
        logging.setLogRecordFactory(_state.factory.inner)
    _state.factory = None


def install(
    level: str, error_code: str | None = None, scrub_options: ScrubOptions | None = None
) -> None:
    """Attach one :class:`OtelfinHandler` to the root logger (idempotent) at ``level``; it
    and the record factory scrub with ``scrub_options`` (None: the process default).

    Also repairs what a host's logging reset undid: ``logging.basicConfig(force=True)`` and
    ``logging.config.dictConfig(...)`` remove otelfin's handler from the root logger, and
    ``dictConfig`` disables existing loggers, ``otelfin``'s own among them, so a later
    ``configure()`` puts the handler back and enables the ``otelfin`` logger again. Handlers
    the host added since are guarded like the first ones: they keep the threshold the host
    would have without otelfin, whatever ``log_level`` otelfin runs at.
    """
    number = _pipeline.LEVELS[level]
    root = logging.getLogger()
    _install_factory(scrub_options)
    if _state.installed is None or _state.installed not in root.handlers:
        if _state.installed is None:
            _state.previous_level = root.level
            _state.installed = OtelfinHandler()
        else:  # the host reset logging and removed the handler (the same one goes back)
            _state.previous_level = _host_level(root)
            _unguard_handlers()
        root.addHandler(_state.installed)
    own = logging.getLogger("otelfin")
    if own.disabled:
        own.disabled = False
    _state.installed.setLevel(number)
    _state.installed.error_code = error_code
    _state.installed.scrub_options = scrub_options
    # Libraries' info records must reach the handler; only ever lower the root threshold
    # (NOTSET already lets everything through). The host's handlers keep the threshold the
    # host chose: otelfin's lowering must never make them print a record they would not have
    # printed (raw, before otelfin masks it, in library debug/info records).
    host = _host_level(root)
    if host > number:
        _guard_handlers(host)
    if root.level > number:
        root.setLevel(number)
        _state.lowered_to = number


def _host_level(root: logging.Logger) -> int:
    """The root threshold as the host set it: the level otelfin found, unless the host has set
    a different one since otelfin lowered it."""
    if (
        _state.lowered_to is not None
        and root.level == _state.lowered_to
        and _state.previous_level is not None
    ):
        return _state.previous_level
    return root.level


class _KeepThreshold(logging.Filter):
    """Put on the application's own handlers while otelfin has lowered the root level, so they
    keep receiving exactly the records they received before: otelfin lowers it for its own
    handler, and library records the application never saw (raw, unmasked) must stay unseen.
    """

    def __init__(self, root_level: int) -> None:
        super().__init__()
        self.root_level = root_level

    def filter(self, record: logging.LogRecord) -> bool:
        # The record's logger's level as it was: its own or an ancestor's, else the old root's.
        logger = logging.root.manager.loggerDict.get(record.name)
        while isinstance(logger, logging.Logger) and logger is not logging.root:
            if logger.level:
                return record.levelno >= logger.level
            logger = logger.parent
        return record.levelno >= self.root_level


def _guard_handlers(root_level: int) -> None:
    """Give every handler already attached (root's and other loggers') a :class:`_KeepThreshold`
    for the root level as it was; handlers with a level of their own at or above it need none."""
    loggers = [logging.root] + [
        lg
        for lg in list(logging.root.manager.loggerDict.values())
        if isinstance(lg, logging.Logger)
    ]
    seen: set[int] = {id(handler) for handler, _ in _state.guarded}
    for logger in loggers:
        for handler in list(logger.handlers):
            if handler is _state.installed or id(handler) in seen or handler.level >= root_level:
                continue
            seen.add(id(handler))
            guard = _KeepThreshold(root_level)
            handler.addFilter(guard)
            _state.guarded.append((handler, guard))


def _unguard_handlers() -> None:
    while _state.guarded:
        handler, guard = _state.guarded.pop()
        handler.removeFilter(guard)


def uninstall() -> None:
    """Remove the handler and restore the root logger's level."""
    _uninstall_factory()
    if _state.installed is None:
        return
    give_back_server_loggers()
    root = logging.getLogger()
    root.removeHandler(_state.installed)
    _unguard_handlers()
    if _state.previous_level is not None:
        root.setLevel(_host_level(root))
    _state.installed = None
    _state.previous_level = None
    _state.lowered_to = None


#: The loggers uvicorn and gunicorn write their own lines to. They do not propagate to the
#: root logger (each has its own plain-text handler), so the bridge alone never sees them.
SERVER_LOGGERS = ("uvicorn", "uvicorn.access", "gunicorn.error", "gunicorn.access")
#: The names server records carry (uvicorn's error lines propagate to "uvicorn"'s handler).
_SERVER_NAMES = frozenset((*SERVER_LOGGERS, "uvicorn.error", "django.request", "django.server"))


def _request_span(request: Any) -> tuple[tuple[str, str] | None, str | None]:
    """``((trace_id, span_id), code)`` a framework left on ``request.META`` while the request's
    span was current (Django: otelfin's response hook), or ``(None, None)``."""
    meta = getattr(request, "META", None)
    kept = meta.get(REQUEST_SPAN_KEY) if isinstance(meta, dict) else None
    if not (isinstance(kept, tuple) and len(kept) == 3):
        return None, None
    trace_id, span_id, code = kept
    return (str(trace_id), str(span_id)), code if isinstance(code, str) else None
    for value in meta.values():
        get_context = getattr(value, "get_span_context", None)
        if get_context is None:
            continue
        try:
            ctx = get_context()
            if not ctx.is_valid:
                continue
            code = (getattr(value, "attributes", None) or {}).get("otelfin.error_code")
            ids = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
            return ids, code if isinstance(code, str) else None
        except Exception:  # a foreign object with that method name
            continue
    return None, None


class _SpanFromEnviron(logging.Filter):
    """Give a gunicorn access line the trace of its request.

    gunicorn writes the access line after the WSGI call returned, when no span is current; its
    record carries the request's environ as ``{key}e`` atoms, where Flask's and Django's
    instrumentations keep the request's span.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if isinstance(atoms, dict) and not hasattr(record, "trace_id"):
            for value in atoms.values():
                get_context = getattr(value, "get_span_context", None)
                if get_context is None:
                    continue
                try:
                    ctx = get_context()
                    if ctx.is_valid:
                        record.trace_id = format(ctx.trace_id, "032x")
                        record.span_id = format(ctx.span_id, "016x")
                        break
                except Exception:  # a foreign object with that method name
                    continue
        return True


def take_server_loggers() -> list[str]:
    """Route uvicorn's and gunicorn's own loggers through otelfin's handler (idempotent).

    Only loggers the server has set up in this process (with handlers of their own) are taken;
    their plain-text handlers are put aside, so the lines are written once, as otelfin JSON,
    masked. :func:`give_back_server_loggers` restores them. Returns the names taken.
    """
    handler = _state.installed
    if handler is None:
        return []
    _state.wanted = True
    _hook_server_setup()
    for name in SERVER_LOGGERS:
        if name not in logging.root.manager.loggerDict:
            continue
        logger = logging.getLogger(name)
        theirs = [h for h in logger.handlers if h is not handler]
        if name in _state.taken:
            # The server set its logging up again (uvicorn after opentelemetry-instrument ran
            # configure(), gunicorn on reload): put its new handlers aside too.
            _state.taken[name][0].extend(theirs)
        elif theirs:
            filters: list[logging.Filter] = []
            if name == "gunicorn.access":
                filters.append(_SpanFromEnviron())
            _state.taken[name] = (theirs, filters)
            for flt in filters:
                logger.addFilter(flt)
        else:
            continue
        for old in theirs:
            logger.removeHandler(old)
        if handler not in logger.handlers:
            logger.addHandler(handler)
    return sorted(_state.taken)


def _retake(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    if _state.wanted and _state.installed is not None:
        try:
            take_server_loggers()
        except Exception as exc:  # the server's own start-up must go on
            from otelfin import _internal

            _internal.report("logging.server_loggers", exc)
    return result


def _hook_server_setup() -> None:
    """Take the servers' loggers again whenever the server (re)configures its logging.

    Under ``opentelemetry-instrument uvicorn app:app`` or ``gunicorn`` started the same way,
    ``configure()`` runs before the server sets up its loggers; the server's set-up function
    is wrapped (when the server is imported) so the takeover follows it.
    """
    if _state.hooked:
        return
    _state.hooked = True
    import wrapt

    wrapt.register_post_import_hook(
        lambda module: wrapt.wrap_function_wrapper(module, "Config.configure_logging", _retake),
        "uvicorn.config",
    )
    wrapt.register_post_import_hook(
        lambda module: wrapt.wrap_function_wrapper(module, "Logger.setup", _retake),
        "gunicorn.glogging",
    )


def give_back_server_loggers() -> None:
    """Put the servers' own handlers back."""
    _state.wanted = False
    handler = _state.installed
    while _state.taken:
        name, (handlers, filters) = _state.taken.popitem()
        logger = logging.getLogger(name)
        if handler is not None:
            logger.removeHandler(handler)
        for flt in filters:
            logger.removeFilter(flt)
        for old in handlers:
            logger.addHandler(old)
