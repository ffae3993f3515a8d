"""The structlog chain, the logger class and the output sink.

The chain (what :func:`processors` returns) is a list of plain structlog processors::

    merge_contextvars -> add_level -> exception_info -> CatalogueCheck -> scrub_event
        -> Correlate -> render_json

otelfin's own loggers are concrete structlog bound loggers (no lazy proxy: it costs ~0.6 us a
call) that read the live chain, level and sink from module state, so a logger made at import
time, before ``configure()``, follows every later ``configure()``.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import orjson
from opentelemetry import trace
from structlog import BoundLoggerBase, DropEvent
from structlog.contextvars import merge_contextvars
from structlog.processors import format_exc_info

from otelfin import _internal, _settings
from otelfin._errors import error_code_of
from otelfin.catalogue import LEVEL_NAMES
from otelfin.logging._catalogue import CatalogueCheck, UnregisteredErrorCodeError
from otelfin.scrub import (
    MIN_LEN,
    PAN_MIN,
    REDACTED,
    ScrubOptions,
    is_secret_key,
    scrub_text,
    scrub_value,
)

__all__ = [
    "LEVELS",
    "Correlate",
    "OtelfinLogger",
    "add_level",
    "exception_info",
    "processors",
    "render_json",
    "scrub_event",
]

#: Level names in order, with their stdlib numbers.
LEVELS = dict(zip(LEVEL_NAMES, (10, 20, 30, 40, 50), strict=True))
# structlog method names that are not level names.
_METHOD_LEVEL = {
    **{name: name for name in LEVELS},
    "warn": "warning",
    "exception": "error",
    "fatal": "critical",
    "msg": "info",
}


def add_level(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Set ``level`` from the method name (``warn`` -> ``warning``, ``exception`` -> ``error``)."""
    event_dict["level"] = _METHOD_LEVEL.get(method_name, method_name)
    return event_dict


def exception_info(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Render ``exc_info`` into an ``exception`` string; take ``error_code`` from the exception.

    An :class:`~otelfin.OtelfinError` (or any exception with an ``error_code``) logged with
    ``log.exception(...)`` gives the line its code: one code on span, metric and log.
    """
    if "exc_info" not in event_dict:
        return event_dict
    exc = event_dict["exc_info"]
    if exc is True:
        exc = sys.exc_info()[1]
    elif isinstance(exc, tuple):
        exc = exc[1]
    if isinstance(exc, BaseException) and "error_code" not in event_dict:
        code = error_code_of(exc)
        if code is not None:
            event_dict["error_code"] = code
    return dict(format_exc_info(logger, method_name, event_dict))


class ScrubEvent:
    """Mask card numbers and redact secret-keyed fields, at any depth, in place.

    ``options`` are the scrubber's settings, given when the chain is built (``configure()``
    hands over the ones the scrub pillar made); None follows the process default
    (:func:`otelfin.scrub.current_options`) at each event.
    """

    __slots__ = ("options",)

    def __init__(self, options: ScrubOptions | None = None) -> None:
        self.options = options

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
        options = self.options
        renamed: list[str] = []
        for key, value in event_dict.items():
            if type(key) is str and len(key) >= 13 and scrub_text(key, options=options) is not key:
                renamed.append(key)  # a card number as a field name (**{...}): renamed below
            if is_secret_key(key, options):
                if value is not None:
                    event_dict[key] = REDACTED
            elif isinstance(value, str):
                n = len(value)
                # Short values can only hold a secret pair (pin=1): skip the call otherwise.
                if n >= PAN_MIN or (
                    n >= MIN_LEN and ("=" in value or ":" in value or "%" in value)
                ):
                    new = scrub_text(value, options=options)
                    if new is not value:
                        event_dict[key] = new
            else:
                new = scrub_value(value, options=options)
                if new is not value:
                    event_dict[key] = new
        for key in renamed:
            event_dict[scrub_text(key, options=options)] = event_dict.pop(key)
        return event_dict


#: The scrubbing processor on the process default options (for chains built by hand).
scrub_event = ScrubEvent()


class _Clock:
    """ISO 8601 UTC timestamps with an explicit offset, the date part cached per second."""

    def __init__(self) -> None:
        # One tuple, swapped atomically, so threads never pair one second's prefix with
        # another second's fraction.
        self.cached: tuple[int, str] = (-1, "")

    def now(self) -> str:
        t = time.time()
        second = int(t)
        cached = self.cached
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self.cached = cached
        return f"{cached[1]}.{int((t - second) * 1_000_000):06d}+00:00"


class Correlate:
    """Put ``timestamp``, ``level``, ``service_name``, ``event``, ``trace_id`` and ``span_id``
    first, in that order, followed by the caller's fields.

    ``service_name`` None means the configured one (read at call time).
    """

    def __init__(self, service_name: str | None = None) -> None:
        self.service_name = log_service_name(service_name) if service_name else None
        self.clock = _Clock()
        # The hex ids of the last span context seen: the lines of one request share them
        # (two format() calls saved a line). One tuple, swapped whole: safe across threads.
        self.ids: tuple[object, str, str] = (None, "", "")

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
        out: dict[str, Any] = {
            "timestamp": self.clock.now(),
            "level": event_dict.get("level") or _METHOD_LEVEL.get(method_name, method_name),
            "service_name": self.service_name or _state.service_name,
            "event": event_dict.get("event"),
        }
        if type(out["event"]) is not str:  # the schema wants text: log.info(42), log.info()
            event = out["event"]
            text = "" if event is None else _default(event)
            out["event"] = text if isinstance(text, str) else str(text)  # a set became a list
        ctx = trace.get_current_span().get_span_context()
        ids = self.ids
        if ids[0] is ctx:
            out["trace_id"], out["span_id"] = ids[1], ids[2]
        elif ctx.is_valid:
            ids = (ctx, format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
            self.ids = ids
            out["trace_id"], out["span_id"] = ids[1], ids[2]
        for key, value in event_dict.items():
            if key not in out:
                out[key] = value
        return out


def _default(value: Any) -> Any:
    # Objects orjson cannot serialise become text, scrubbed (their repr may hold anything).
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, bytes):
        return scrub_text(value.decode("utf-8", "replace"))
    try:
        return scrub_text(str(value))
    except Exception:  # a broken __str__ must not cost the line
        return f"<unprintable {type(value).__name__}>"


def _finite(value: Any, depth: int = 0) -> Any:
    """``value`` with non-finite floats as None, in dicts, lists and tuples (a copy)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth > 64:
        return value
    if isinstance(value, dict):
        return {k: _finite(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, depth + 1) for v in value]
    return value


def render_json(logger: Any, method_name: str, event_dict: dict[str, Any]) -> bytes:
    """One JSON object as bytes, no newline (orjson; stdlib json for what orjson refuses).

    Like structlog's own renderers, the line end is the logger's job: structlog's
    ``BytesLogger`` adds one, and so does otelfin's sink.
    """
    try:
        return orjson.dumps(event_dict, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        # Integers beyond 64 bits, recursion past orjson's limit and the like. NaN and
        # infinities become null as orjson writes them: json.dumps would write bare NaN.
        text = json.dumps(
            _finite(event_dict), default=_default, ensure_ascii=False, check_circular=True
        )
        return text.encode("utf-8", "replace")


def processors(
    *,
    service_name: str | None = None,
    render: bool = True,
    catalogue_check: Any = None,
    scrub_options: ScrubOptions | None = None,
) -> list[Callable[..., Any]]:
    """otelfin's processor chain, for teams with their own structlog configuration::

        structlog.configure(
            processors=otelfin.logging.processors(),
            logger_factory=structlog.BytesLoggerFactory(),
        )

    The chain merges ``structlog.contextvars`` (request-scoped fields bound with
    ``bind_contextvars``), sets ``level``, renders exceptions (taking their ``error_code``),
    enforces the catalogue, scrubs card numbers and secrets, adds ``timestamp``,
    ``service_name`` and the active span's ``trace_id``/``span_id``, and (``render=True``)
    renders a JSON line as bytes.
    Settings are read from the live ``otelfin.configure()`` state unless given here
    (``scrub_options``: the scrubber's, default the process default).
    """
    chain: list[Callable[..., Any]] = [
        merge_contextvars,
        add_level,
        exception_info,
        catalogue_check if catalogue_check is not None else _state.check,
        scrub_event if scrub_options is None else ScrubEvent(scrub_options),
        Correlate(service_name),
    ]
    if render:
        chain.append(render_json)
    return chain


class _Sink:
    """Where rendered lines go: stdout (looked up at write time), a stream, or a file."""

    def __init__(self) -> None:
        self.stream: IO[Any] | None = None
        self.binary = False
        self.owned = False
        self.path: str | None = None
        #: Listeners for every written line (test captures); ``mute`` > 0 silences output.
        self.taps: tuple[Callable[[bytes], None], ...] = ()
        self.mute = 0
        self.lock = threading.Lock()
        self.held_for_fork = False

    def use(self, path: str | None, stream: IO[Any] | None) -> None:
        """Switch the destination (None, None = stdout)."""
        with self.lock:
            key_same = path == self.path and (path is not None or stream is self.stream)
            if key_same:
                return
            self._close()
            if path is not None:
                directory = os.path.dirname(path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                # Unbuffered: each line is one write(2) on an O_APPEND file, so processes
                # sharing the file (forked workers) never split each other's lines.
                self.stream = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open
                self.binary = True
                self.owned = True
                self.path = path
            else:
                self.stream = stream
                self.binary = stream is not None and not hasattr(stream, "encoding")
                self.owned = False
                self.path = None

    def _close(self) -> None:
        if self.owned and self.stream is not None:
            try:
                self.stream.close()
            except OSError as exc:
                _internal.report("logging.close", exc)
        self.stream = None
        self.owned = False
        self.path = None

    def close(self) -> None:
        with self.lock:
            self._close()

    def flush(self) -> None:
        stream = self.stream if self.stream is not None else _stdout()
        try:
            stream.flush()
        except (OSError, ValueError) as exc:
            _internal.report("logging.flush", exc)

    def write(self, line: bytes) -> None:
        """Write one whole line: the write and its flush happen under :attr:`lock`.

        Without the lock, threads writing long lines to a pipe interleaved: a text stream and
        its buffer split a 20 KB line into several writes, and another thread's line landed
        between them (32 threads, 4-20 KB lines: 334-1,148 of 6,400 lines corrupted).
        """
        line += b"\n"
        if self.taps:
            for tap in self.taps:
                tap(line)
            if self.mute:
                return
        with self.lock:
            stream = self.stream
            if stream is None:
                out = _stdout()
                if out is None:
                    return
                out.write(line.decode("utf-8", "replace"))
                out.flush()
            elif self.binary:
                _write_all(stream, line)
                stream.flush()
            else:
                stream.write(line.decode("utf-8", "replace"))
                stream.flush()

    # fork(): the lock is held across the fork, so no otelfin line is half-written in the
    # child's copy of the stream (a thread writing at that moment does not exist in the child,
    # and the lock it held would stay held forever: 60 of 60 children hung on their first log
    # write). The wait is bounded: a writer stuck on a full pipe must not stop fork().
    _FORK_WAIT = 0.5

    def before_fork(self) -> None:
        self.held_for_fork = self.lock.acquire(timeout=self._FORK_WAIT)

    def after_fork_in_parent(self) -> None:
        if self.held_for_fork:
            self.held_for_fork = False
            self.lock.release()

    def after_fork_in_child(self) -> None:
        held, self.held_for_fork = self.held_for_fork, False
        self.lock = threading.Lock()
        if not held and self.owned and self.path is not None:
            # A writer may have been mid-line: write to a new descriptor, leave the old one
            # alone (closing it could flush the parent's half line a second time).
            _inherited.append(self.stream)
            try:
                self.stream = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open
            except OSError as exc:
                self.stream, self.owned, self.path = None, False, None
                _internal.report("logging.reopen_after_fork", exc)


#: Streams a forked child inherited mid-write; kept referenced so they are never flushed.
_inherited: list[Any] = []


def _stdout() -> Any:
    """The stream otelfin's default sink writes to: ``sys.stdout``, unless that was swapped for
    a proxy that turns each write into a log record.

    Celery's worker does that by default (``worker_redirect_stdouts``: ``sys.stdout`` becomes a
    ``LoggingProxy``): an otelfin line written there came back through the stdlib bridge while
    the sink's lock was held, and the worker hung before taking a task. Such a proxy is no
    file (no ``io.IOBase``) and carries the ``logger`` it writes to; the line then goes to the
    process's real stdout, where it would have gone without the proxy.
    """
    out = sys.stdout
    if out is not None and not isinstance(out, io.IOBase) and hasattr(out, "logger"):
        return sys.__stdout__
    return out


def _write_all(stream: IO[bytes], data: bytes) -> None:
    """Write every byte (a raw file may take less than asked in one call)."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if written is None:  # a non-blocking stream that is full: the rest is lost
            return
        view = view[written:]


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def log_service_name(name: str) -> str:
    """The ``service_name`` a log line carries for a service named ``name``.

    OpenTelemetry accepts any string as ``service.name`` (``payments_api``, ``payments.api``,
    ``Payments API``); the log schema wants lower-case words joined by hyphens, so every other
    run of characters becomes one hyphen: ``payments-api``. Never raises.
    """
    slug = _NOT_SLUG.sub("-", str(name).lower()).strip("-")
    return slug or log_service_name(_settings.DEFAULT_SERVICE_NAME)


def default_service_name() -> str:
    """The service name before ``configure()``: ``OTEL_SERVICE_NAME`` or OpenTelemetry's
    ``unknown_service`` (written ``unknown-service``)."""
    return log_service_name(
        _settings.env_value(_settings.by_name("service_name").env or "")
        or _settings.DEFAULT_SERVICE_NAME
    )


class _State:
    __slots__ = ("chain", "check", "min_level", "service_name", "sink")

    def __init__(self) -> None:
        self.service_name = default_service_name()
        self.min_level = LEVELS["info"]
        self.sink = _Sink()
        self.check = CatalogueCheck()
        self.chain: list[Callable[..., Any]] = []


_state = _State()
_state.chain[:] = processors()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _state.sink.before_fork(),
        after_in_parent=lambda: _state.sink.after_fork_in_parent(),
        after_in_child=lambda: _state.sink.after_fork_in_child(),
    )


def emit(method_name: str, event_dict: dict[str, Any], logger: Any = None) -> None:
    """Run ``event_dict`` through the live chain and write it. Never raises, except the
    catalogue's ``raise`` policy (:class:`UnregisteredErrorCodeError`)."""
    try:
        for proc in _state.chain:
            event_dict = proc(logger, method_name, event_dict)
        _state.sink.write(event_dict)  # type: ignore[arg-type]
    except DropEvent:
        return
    except UnregisteredErrorCodeError:
        raise
    except Exception as exc:
        _internal.report("logging.emit", exc)


def _interpolate(event: Any, args: tuple[Any, ...]) -> Any:
    if not args:
        return event
    # Scrubbed first: a dict argument's secret-named entries would otherwise be formatted
    # into the message text, where keys can no longer be told apart.
    args = scrub_value(args)
    try:
        return event % args
    except Exception:
        return f"{event} {args!r}"


class OtelfinLogger(BoundLoggerBase):
    """A structlog bound logger writing through otelfin's live chain.

    Methods: ``debug``, ``info``, ``warning`` (``warn``), ``error``, ``exception``, ``critical``
    (``fatal``), ``log(level, ...)``, plus structlog's ``bind``, ``unbind``, ``new``. Calls below
    the configured level return at once.
    """

    def _emit(self, method: str, event: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        event_dict = self._context.copy()
        if kw:
            event_dict.update(kw)
        event_dict["event"] = _interpolate(event, args)
        emit(method, event_dict, self)

    def debug(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at debug level."""
        if _state.min_level <= 10:
            self._emit("debug", event, args, kw)

    def info(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at info level."""
        if _state.min_level <= 20:
            self._emit("info", event, args, kw)

    def warning(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at warning level."""
        if _state.min_level <= 30:
            self._emit("warning", event, args, kw)

    warn = warning

    def error(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at error level (``error_code`` required by the catalogue)."""
        if _state.min_level <= 40:
            self._emit("error", event, args, kw)

    def exception(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at error level with the exception being handled."""
        if _state.min_level <= 40:
            kw.setdefault("exc_info", True)
            self._emit("error", event, args, kw)

    def critical(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at critical level (``error_code`` required by the catalogue)."""
        if _state.min_level <= 50:
            self._emit("critical", event, args, kw)

    fatal = critical

    def log(self, level: int | str, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at a level given as a stdlib number or a name."""
        name = _level_name(level)
        if _state.min_level <= LEVELS[name]:
            self._emit(name, event, args, kw)

    def msg(self, event: Any = None, *args: Any, **kw: Any) -> None:
        """Log at info level (structlog's generic method)."""
        self.info(event, *args, **kw)


def _level_name(level: int | str) -> str:
    if isinstance(level, str):
        name = _METHOD_LEVEL.get(level.lower())
        if name is None:
            raise ValueError(f"unknown log level {level!r}")
        return name
    for name, number in reversed(LEVELS.items()):
        if level >= number:
            return name
    return "debug"


def get_logger(**bound: Any) -> OtelfinLogger:
    """A logger writing JSON lines through otelfin's chain, with ``bound`` fields on every line.

    Works before ``otelfin.configure()`` (stdout, info level, service name from
    ``OTEL_SERVICE_NAME``) and follows every later ``configure()``.
    """
    return OtelfinLogger(_state.sink, _state.chain, bound)
