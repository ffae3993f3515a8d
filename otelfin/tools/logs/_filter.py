"""The core of ``otelfin logs filter``: "discard and alert" as a pipeline stage.

Valid JSON log lines pass to the output unchanged; bad ones (invalid JSON, schema violation,
unregistered error code, unmasked card number) go to a dead-letter stream as JSON lines
carrying the original line, card numbers masked, and the reasons. Each line is checked by the
validator's own checker (:func:`otelfin.tools.logs._validate.make_line_checker`), so ``filter``
and ``validate`` never disagree about a line. Every line read is either passed or
dead-lettered: the two counts always add up to the lines read.

Input is read as it arrives (``read1``: a pipe's lines are passed on without waiting for a full
block) in bounded blocks, so memory stays flat however long the stream runs.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from otelfin.scrub import scrub_text
from otelfin.tools.logs._validate import (
    DEFAULT_MAX_LINE_BYTES,
    TOO_LONG,
    iter_batches,
    make_line_checker,
    open_input,
    suspect_marks,
)

__all__ = ["FilterReport", "filter_lines", "metrics_text", "write_metrics_file"]

#: Kinds of reason counted in ``otelfin_logs_filter_dead_lettered_total{reason}``.
REASON_KINDS = ("invalid_json", "schema", "error_code", "card_number", "too_long")
#: No card-number hints for a block that is not plain ASCII: each line is asked on its own.
_UNKNOWN = itertools.repeat(None)


@dataclass
class FilterReport:
    """What one run of :func:`filter_lines` did (``lines == passed + dead_lettered``)."""

    lines: int = 0
    passed: int = 0
    dead_lettered: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASON_KINDS, 0))
    #: An input that could not be read (``path: reason``); the run stops at it.
    error: str | None = None
    started: float = field(default_factory=time.time)


def _kind(reason: str) -> str:
    if reason.startswith(("invalid JSON", "not a JSON object", "empty line")):
        return "invalid_json"
    if reason.startswith("unmasked card number"):
        return "card_number"
    if "error_code" in reason:
        return "error_code"
    if reason.startswith("line longer than"):
        return "too_long"
    return "schema"


class _Eager:
    """Hands ``iter_batches`` what has arrived (``read1``) instead of waiting for a full block."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._read = getattr(stream, "read1", stream.read)

    def read(self, size: int = -1) -> bytes:
        return bytes(self._read(size))


def filter_lines(
    paths: Sequence[str],
    out: IO[bytes],
    dead_letter: IO[bytes],
    *,
    codes: Collection[str] | None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    on_progress: Callable[[FilterReport], None] | None = None,
    stdin: IO[bytes] | None = None,
) -> FilterReport:
    """Pass the good lines of ``paths`` (``-`` is stdin; gzip detected) to ``out``; send bad
    ones to ``dead_letter`` as JSON lines ``{"source", "line_number", "reasons", "line"}``.

    ``codes``: the registered error codes (None skips that check). ``line`` is the original
    line (UTF-8, undecodable bytes as ``\\xNN``) with card numbers masked; a line over
    ``max_line_bytes`` is never held in memory, so its record has ``"line": null``.
    ``on_progress`` is called after each block (for a metrics file). Both outputs are flushed
    after each block, so a pipeline sees lines as they are filtered.
    """
    check = make_line_checker(frozenset(codes) if codes is not None else None)
    report = FilterReport()
    too_long = [f"line longer than {max_line_bytes} bytes (not checked further)"]
    reasons = report.reasons
    for path in paths:
        try:
            stream = open_input(path, stdin)
        except OSError as exc:
            report.error = f"{path}: cannot open: {exc.strerror or exc}"
            break
        number = 0
        try:
            with stream:
                for batch in iter_batches(_Eager(stream), max_line_bytes):  # type: ignore[arg-type]
                    passed: list[bytes] = []
                    dead: list[bytes] = []
                    marks = suspect_marks(batch)
                    hints = marks if marks is not None else _UNKNOWN
                    for line, mark in zip(batch, hints, strict=False):
                        number += 1
                        found = too_long if line is TOO_LONG else check(line, mark)
                        if found is None:
                            passed.append(line)
                            continue
                        for kind in {_kind(reason) for reason in found}:
                            reasons[kind] += 1
                        dead.append(_dead_record(path, number, line, found))
                    if passed:
                        passed.append(b"")
                        out.write(b"\n".join(passed))
                        out.flush()
                        report.passed += len(passed) - 1
                    if dead:
                        dead_letter.write(b"".join(dead))
                        dead_letter.flush()
                        report.dead_lettered += len(dead)
                    report.lines += len(batch)
                    if on_progress is not None:
                        on_progress(report)
        except BrokenPipeError:
            raise  # the reader of ``out`` went away: the caller's business
        except (OSError, EOFError, ValueError) as exc:
            report.error = f"{path}: cannot read after line {number}: {exc}"
            break
    return report


def _dead_record(path: str, number: int, line: bytes, reasons: list[str]) -> bytes:
    text = None if line is TOO_LONG else scrub_text(line.decode("utf-8", "backslashreplace"))
    record: dict[str, Any] = {
        "source": path,
        "line_number": number,
        "reasons": reasons,
        "line": text,
    }
    return orjson.dumps(record) + b"\n"


def metrics_text(report: FilterReport) -> str:
    """The counts in Prometheus text format (node_exporter textfile collector)."""
    rows = [
        "# HELP otelfin_logs_filter_lines_total Lines read by otelfin logs filter, by result.",
        "# TYPE otelfin_logs_filter_lines_total counter",
        f'otelfin_logs_filter_lines_total{{result="passed"}} {report.passed}',
        f'otelfin_logs_filter_lines_total{{result="dead_lettered"}} {report.dead_lettered}',
        "# HELP otelfin_logs_filter_dead_lettered_total Dead-lettered lines by kind of reason "
        "(a line with several kinds counts under each).",
        "# TYPE otelfin_logs_filter_dead_lettered_total counter",
    ]
    rows += [
        f'otelfin_logs_filter_dead_lettered_total{{reason="{kind}"}} {count}'
        for kind, count in report.reasons.items()
    ]
    rows += [
        "# HELP otelfin_logs_filter_input_errors_total Inputs otelfin logs filter could not read.",
        "# TYPE otelfin_logs_filter_input_errors_total counter",
        f"otelfin_logs_filter_input_errors_total {1 if report.error else 0}",
        "# HELP otelfin_logs_filter_start_time_seconds When this run of otelfin logs filter "
        "started (counters restart from 0 with each run).",
        "# TYPE otelfin_logs_filter_start_time_seconds gauge",
        f"otelfin_logs_filter_start_time_seconds {report.started:.3f}",
        "# HELP otelfin_logs_filter_last_update_time_seconds When the counts were written.",
        "# TYPE otelfin_logs_filter_last_update_time_seconds gauge",
        f"otelfin_logs_filter_last_update_time_seconds {time.time():.3f}",
    ]
    return "\n".join(rows) + "\n"


def write_metrics_file(path: str, report: FilterReport) -> None:
    """Write :func:`metrics_text` to ``path`` atomically (a temporary file, then rename), so the
    textfile collector never reads half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".otelfin-filter-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(metrics_text(report))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
