"""Server and crash lines through the stdlib bridge: trace ids, a code, no terminal escapes."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace

import otelfin
from otelfin._errors import mark_unhandled
from otelfin.logging import capture_logs
from otelfin.testing import configured_for_test


@pytest.fixture(autouse=True)
def plain_server_loggers() -> Iterator[None]:
    """The server loggers as a fresh process has them (an in-process uvicorn run by an earlier
    test leaves levels, handlers and propagation of its own on them)."""
    saved = []
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate, logger.disabled, logger.handlers[:]))
        logger.setLevel(logging.NOTSET)
        logger.propagate, logger.disabled, logger.handlers[:] = True, False, []
    yield
    for logger, level, propagate, disabled, handlers in saved:
        logger.setLevel(level)
        logger.propagate, logger.disabled, logger.handlers[:] = propagate, disabled, handlers


def _crash() -> RuntimeError:
    """A RuntimeError that left a request's span: marked inside it, logged after it ended."""
    tracer = trace.get_tracer("test")
    exc = RuntimeError("boom")
    with tracer.start_as_current_span("GET /crash") as span:
        mark_unhandled(exc)
        ids = span.get_span_context()
    exc.ids = (format(ids.trace_id, "032x"), format(ids.span_id, "016x"))  # type: ignore[attr-defined]
    return exc


def test_crash_line_after_the_span_gets_its_ids_and_sys_001() -> None:
    """A marked exception logged with no span current: the request's ids and SYS-001."""
    with configured_for_test(), capture_logs() as logs:
        exc = _crash()
        try:
            raise exc
        except RuntimeError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    (line,) = logs
    assert (line["trace_id"], line["span_id"]) == exc.ids  # type: ignore[attr-defined]
    assert line["error_code"] == "SYS-001" and not logs.problems()


def test_own_code_and_configured_default_win_over_sys_001() -> None:
    """The exception's own code first, then stdlib_error_code, then SYS-001."""
    with configured_for_test(stdlib_error_code="GW-004"), capture_logs() as logs:
        for exc in (otelfin.OtelfinError("PAY-012", "no funds"), _crash()):
            try:
                raise exc
            except Exception:
                logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    assert [line["error_code"] for line in logs] == ["PAY-012", "GW-004"]


def test_server_error_line_without_exception_is_sys_002() -> None:
    """gunicorn's own error lines (worker timeout) carry SYS-002; app loggers are untouched."""
    with configured_for_test(), capture_logs() as logs:
        logging.getLogger("gunicorn.error").critical("WORKER TIMEOUT (pid:%s)", 42)
        logging.getLogger("payments").error("no code here")
    assert logs[0]["error_code"] == "SYS-002"
    assert "error_code" not in logs[1]  # the catalogue policy still tags an app's own lapse


def test_color_message_and_ansi_escapes_never_reach_a_line() -> None:
    """uvicorn's color_message extra is dropped; escapes in a message are stripped."""
    with configured_for_test(), capture_logs() as logs:
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on %s",
            "http://127.0.0.1:8000",
            extra={"color_message": "Uvicorn running on \x1b[1m%s\x1b[0m"},
        )
        logging.getLogger("vendor").warning("\x1b[31mred\x1b[0m alert")
    assert [line["event"] for line in logs] == [
        "Uvicorn running on http://127.0.0.1:8000",
        "red alert",
    ]
    assert not any("\x1b" in raw.decode() for raw in logs.lines)
    assert "color_message" not in logs[0]
