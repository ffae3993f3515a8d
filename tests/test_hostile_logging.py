"""Hostile values in log calls: every line is written, valid JSON, and holds no card number."""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otelfin
from otelfin import _config
from otelfin.logging import CapturedLogs, capture_logs
from otelfin.testing import configured_for_test

PAN = "4111111111111111"


@dataclasses.dataclass
class CardRecord:
    """A dataclass orjson would write field by field, bypassing any fallback."""

    number: str
    password: str


class CardEnum(enum.Enum):
    """An enum orjson would write by value."""

    TEST = PAN


class Unprintable:
    """An object whose text cannot be rendered."""

    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


def _only_line(logs: CapturedLogs) -> dict[str, Any]:
    assert len(logs.lines) == 1, logs.lines
    assert PAN.encode() not in logs.lines[0]
    line: dict[str, Any] = orjson.loads(logs.lines[0])
    return line


def test_dataclass_field_is_scrubbed(spans: InMemorySpanExporter) -> None:
    """A dataclass value has its card number masked and its secret-named field redacted."""
    with capture_logs() as logs:
        otelfin.get_logger().info("stored", card=CardRecord(PAN, "hunter2"))
    line = _only_line(logs)
    assert line["card"] == {"number": "XXXXXXXXXXXX1111", "password": "[REDACTED]"}


def test_enum_value_is_scrubbed(spans: InMemorySpanExporter) -> None:
    """An enum member whose value is a card number is written masked."""
    with capture_logs() as logs:
        otelfin.get_logger().info("stored", kind=CardEnum.TEST)
    assert _only_line(logs)["kind"] == "XXXXXXXXXXXX1111"


def test_integer_key_card_number_is_masked(spans: InMemorySpanExporter) -> None:
    """A card number as an integer dict key (rendered as text in JSON) is masked."""
    with capture_logs() as logs:
        otelfin.get_logger().info("cards", seen={int(PAN): 1})
    assert _only_line(logs)["seen"] == {"XXXXXXXXXXXX1111": 1}


@pytest.mark.parametrize(
    "key", [(PAN,), PAN.encode(), frozenset([PAN])], ids=["tuple", "bytes", "frozenset"]
)
def test_keys_json_cannot_hold_do_not_lose_the_line(spans: InMemorySpanExporter, key: Any) -> None:
    """Tuple, bytes and frozenset dict keys: the line is still written, keys masked as text."""
    with capture_logs() as logs:
        otelfin.get_logger().info("odd keys", data={key: 1})
    (written,) = _only_line(logs)["data"]
    assert "XXXXXXXXXXXX1111" in written


def test_hostile_values_still_write_valid_lines(spans: InMemorySpanExporter) -> None:
    """Cycles, deep nesting, NaN, huge ints and unprintable objects: one valid line each."""
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(5000):
        cursor["x"] = {}
        cursor = cursor["x"]
    values = [cyclic, deep, float("nan"), float("inf"), 10**100, Unprintable(), [Unprintable()]]
    with capture_logs() as logs:
        log = otelfin.get_logger()
        for value in values:
            log.info("hostile", value=value)
        log.info(Unprintable())
    assert len(logs.lines) == len(values) + 1
    for raw in logs.lines:
        orjson.loads(raw)


def test_stdlib_unprintable_message_is_written(spans: InMemorySpanExporter) -> None:
    """A stdlib record whose message cannot be turned into text is still written."""
    from otelfin.logging import _stdlib

    handler = _stdlib._state.installed
    assert handler is not None
    # Handed to otelfin's handler alone: pytest's own log capture re-raises such errors.
    record = logging.LogRecord("thirdparty", logging.WARNING, __file__, 1, Unprintable(), (), None)
    with capture_logs() as logs:
        handler.handle(record)
    assert _only_line(logs)["event"] == "<unprintable Unprintable>"


def test_stdlib_extra_dataclass_is_scrubbed(spans: InMemorySpanExporter) -> None:
    """A dataclass passed in ``extra=`` to a stdlib logger is scrubbed like any field."""
    with capture_logs() as logs:
        logging.getLogger("thirdparty").warning("x", extra={"card": CardRecord(PAN, "pw")})
    assert _only_line(logs)["card"]["password"] == "[REDACTED]"


def test_logging_from_threads_while_reconfiguring() -> None:
    """Threads logging while configure()/shutdown() alternate: no exception escapes."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        log = otelfin.get_logger()
        std = logging.getLogger("thirdparty")
        try:
            while not stop.is_set():
                log.info("tick", card=PAN)
                std.warning("tock %s", PAN)
        except BaseException as exc:  # the assertion below reports it
            errors.append(exc)

    with capture_logs() as logs:
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(10):
                with configured_for_test():
                    pass
                _config.reset()
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
    assert errors == []
    assert logs.lines
    assert not any(PAN.encode() in line for line in logs.lines)


def test_bytes_secret_key_is_redacted(spans: InMemorySpanExporter) -> None:
    """A secret-named bytes key (written as text) has its value redacted like a str key."""
    with capture_logs() as logs:
        otelfin.get_logger().info("login", form={b"password": "hunter2", b"user": "ann"})
    assert _only_line(logs)["form"] == {"password": "[REDACTED]", "user": "ann"}


def test_stdlib_dict_message_redacts_secrets(spans: InMemorySpanExporter) -> None:
    """A stdlib record whose message is a dict has secret-named entries redacted."""
    with capture_logs() as logs:
        logging.getLogger("thirdparty").warning({"password": "hunter2", "user": "ann"})
    event = _only_line(logs)["event"]
    assert "hunter2" not in event and "[REDACTED]" in event and "ann" in event


def test_set_event_is_rendered_as_text(spans: InMemorySpanExporter) -> None:
    """A set passed as the event is written as text, so the line keeps the schema."""
    with capture_logs() as logs:
        otelfin.get_logger().info({1, 2})
    assert isinstance(_only_line(logs)["event"], str)
    assert logs.problems() == []


@pytest.mark.parametrize(
    ("fmt", "args"),
    [("form %s", {"password": "hunter2"}), ("pw %(password)s", {"password": "hunter2"})],
)
def test_percent_args_secrets_are_redacted(
    spans: InMemorySpanExporter, fmt: str, args: dict[str, str]
) -> None:
    """Secret-named entries of a dict %-argument are redacted, stdlib and otelfin loggers."""
    with capture_logs() as logs:
        logging.getLogger("thirdparty").warning(fmt, args)
        otelfin.get_logger().info(fmt, args)
        otelfin.get_logger().info("bad %d " + fmt, args)  # the unformattable fallback
    assert len(logs.lines) == 3
    for raw in logs.lines:
        assert b"hunter2" not in raw and b"[REDACTED]" in raw


def test_date_uuid_enum_keys_keep_their_json_form(spans: InMemorySpanExporter) -> None:
    """Keys orjson writes itself (date, UUID, enum) keep that form; an enum card is masked."""
    import datetime
    import uuid

    class Kind(enum.Enum):
        PLAIN = "plain"
        CARD = PAN

    data = {Kind.PLAIN: 1, Kind.CARD: 2, datetime.date(2020, 1, 2): 3, uuid.UUID(int=5): 4}
    with capture_logs() as logs:
        otelfin.get_logger().info("keys", data=data)
    assert _only_line(logs)["data"] == {
        "plain": 1,
        "XXXXXXXXXXXX1111": 2,
        "2020-01-02": 3,
        "00000000-0000-0000-0000-000000000005": 4,
    }


def test_huge_int_with_nan_still_valid_json(spans: InMemorySpanExporter) -> None:
    """A >64-bit int (orjson's fallback path) next to NaN/inf still yields valid JSON."""
    with capture_logs() as logs:
        otelfin.get_logger().info("x", big=10**100, ratio=float("nan"), span=[float("-inf"), 1.5])
    line = _only_line(logs)
    assert line["ratio"] is None and line["span"] == [None, 1.5]
    assert str(10**100).encode() in logs.lines[0]  # the integer itself, digit for digit
    assert logs.problems() == []


def test_app_root_handler_keeps_its_threshold() -> None:
    """An app handler on root (WARNING) gets no library info records after configure()."""
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        with configured_for_test(log_level="info"), capture_logs() as logs:
            logging.getLogger("somelib").info("charging card %s", PAN)
            logging.getLogger("somelib").warning("retrying")
        assert len(logs.lines) == 2  # otelfin's handler sees the info record, masked
        assert PAN.encode() not in logs.lines[0]
        assert stream.getvalue() == "retrying\n"  # the app's handler: as before configure()
        assert handler.filters == []  # the guard is gone after shutdown
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
