"""The validator core behind ``otelfin logs validate``.

Each line must be a JSON object matching ``schema.json`` (required fields and their formats),
carry a registered ``error_code`` (required on error/critical lines), and hold no unmasked card
number anywhere (keys, values, numbers), found with :func:`otelfin.scrub.find_pans`, the
scrubber's own scanner, so the validator never flags what the scrubber keeps.

Why hand-written checks instead of a JSON Schema library: ``jsonschema`` manages ~20k lines/s
and a compiled ``fastjsonschema`` validator with orjson ~180k lines/s on this machine; the
validator must beat the latter by half while also checking the catalogue and card numbers. The
checks below are exactly the schema's (a test runs both on the same lines).

Input is read in blocks and split by the validator itself: memory stays flat whatever the
file size, and a line longer than ``max_line_bytes`` is reported and skipped, not buffered.
"""

from __future__ import annotations

import gc
import gzip
import io
import itertools
import os
import re
import unicodedata
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast

import orjson

from otelfin.catalogue import CODE_PATTERN, LEVEL_NAMES
from otelfin.scrub import (
    current_options,
    find_pans,
    may_hold_pan,
    pan_suspect_lines,
    scrub_text,
    scrub_value,
)

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "FileReport",
    "LineChecker",
    "Violation",
    "make_line_checker",
    "validate_path",
    "validate_stream",
]

DEFAULT_MAX_LINE_BYTES = 1 << 20
_BLOCK = 1 << 20
_MAX_CHUNK = 32 << 20
#: Stands for a line over the size limit in a batch (compared by identity).
TOO_LONG = b"<line too long>"  # 15 bytes: never a cached singleton
_LEVELS = frozenset(LEVEL_NAMES)
_NEEDS_CODE = frozenset({"error", "critical"})
_REQUIRED = ("timestamp", "level", "service_name", "event")
# The same patterns as schema.json.
# The date part only admits real calendar days: 30-day months, February 28 and, in leap years
# (divisible by 4, centuries only by 400), February 29.
_TIMESTAMP = re.compile(
    r"(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)"
    r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:"
    r"(?:[0-5][0-9]|60)(?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])"
).fullmatch
_SERVICE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*").fullmatch
_HEX32 = re.compile(r"[0-9a-f]{32}").fullmatch
_HEX16 = re.compile(r"[0-9a-f]{16}").fullmatch
_CODE = CODE_PATTERN.fullmatch
_ZERO32 = "0" * 32
_ZERO16 = "0" * 16


@dataclass(frozen=True, slots=True)
class Violation:
    """One bad line: ``path:line: reason``."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class FileReport:
    """What validating one input found (``violations`` lists the kept findings)."""

    path: str
    lines: int = 0
    bad_lines: int = 0
    violations: list[Violation] = field(default_factory=list)
    error: str | None = None
    stopped: bool = False


def _show(value: Any) -> str:
    """A value quoted for a reason: scrubbed, then truncated (reports must not leak either).

    Masking comes first, on the value itself: a cut could leave a card number's first 13-15
    digits (the Luhn check recovers the rest), and ``repr`` would turn a no-break space or a
    full-width digit into an escape the scanner no longer reads as part of a number.
    """
    text = repr(scrub_text(value) if isinstance(value, str) else scrub_value(value))
    text = scrub_text(text)
    if len(text) > 40:
        text = text[:37] + "..."
    return text


def _walk_texts(value: Any) -> Iterator[str]:
    """Every string (keys included) and integer, as text, in a parsed JSON value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield key
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            yield str(item)


def _last4(text: str) -> str:
    """``1111`` (the last four digits), followed by the card's fingerprint token when a
    fingerprint key is configured (``1111 fp_...``): the same token as in the service's
    telemetry, so a leak can be traced to the card without printing it."""
    digits = "".join(str(unicodedata.decimal(ch)) for ch in text if ch.isdecimal())
    maker = current_options().fingerprinter
    if maker is not None:
        return f"{digits[-4:]} {maker(digits)}"
    return digits[-4:]


def _pan_reasons(raw: bytes, obj: Any) -> list[str]:
    if b"\\" in raw:
        # Escapes (\u0034, \t, \u00a0, ...) can hide digits or separators: judge the
        # decoded values, which is what the scrubber saw.
        found: list[str] = []
        span_id = obj.get("span_id") if isinstance(obj, dict) else None
        for text in _walk_texts(obj):
            if text is span_id and _SPAN_ID.fullmatch(text):
                continue  # the line's own span id (see _raw_pans)
            for a, b in find_pans(text):
                reason = f"unmasked card number (ending {_last4(text[a:b])})"
                if reason not in found:
                    found.append(reason)
        return found
    return _raw_pans(raw)


_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_SPAN_ID_KEY = b'"span_id":"'


def _raw_pans(raw: bytes) -> list[str]:
    out = []
    for a, b in find_pans(raw):
        if b - a == 16 and raw[b : b + 1] == b'"' and raw.endswith(_SPAN_ID_KEY, 0, a):
            # The line's span id, 16 hex digits that happen to be all decimal and card-shaped
            # (about one span id in 60,000): an id, not a card number.
            continue
        digits = _last4(raw[a:b].decode("utf-8", "replace"))
        out.append(f"unmasked card number (ending {digits}) at byte {a + 1}")
    return out


class LineChecker(Protocol):
    """Checks one line (bytes, no newline): the reasons it is bad, or None.

    ``suspect``: whether the line may hold a card number, when the caller already knows (see
    :func:`otelfin.scrub.pan_suspect_lines`); None asks :func:`otelfin.scrub.may_hold_pan`.
    """

    def __call__(self, raw: bytes, suspect: int | None = None, /) -> list[str] | None: ...


def make_line_checker(codes: Collection[str] | None) -> LineChecker:
    """A function checking one line (bytes, no newline); it returns the reasons, or None.

    ``codes``: the registered error codes; None skips the catalogue check. Never raises.
    """
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    levels = _LEVELS
    timestamp_ok = _TIMESTAMP
    service_ok = _SERVICE
    code_ok = _CODE
    hexdigits = "0123456789abcdef"
    zero32 = _ZERO32
    zero16 = _ZERO16
    registered = frozenset(codes) if codes is not None else None
    may_hold = may_hold_pan
    # Service names repeat on every line: remember the valid ones (a bounded set).
    good_services: set[str] = set()

    # Written for speed (this runs once per line, ~2 us): locals, one pass, the slow
    # explanations only for lines that fail.
    def check(raw: bytes, suspect: int | None = None, /) -> list[str] | None:
        try:
            obj = loads(raw)
        except decode_error as exc:
            if not raw.strip():
                return ["empty line"]
            # Not JSON, but it may still carry a card number: scan the raw text too.
            pans = _raw_pans(raw) if may_hold_pan(raw) else []
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:  # orjson words this as a str surrogate error
                return [f"invalid JSON: not UTF-8 text (byte {bad.start} of the line)", *pans]
            return [f"invalid JSON: {exc}", *pans]
        except Exception as exc:  # orjson's own limits: the line is still bad
            return [f"invalid JSON: {type(exc).__name__}"]
        if type(obj) is not dict:
            return [f"not a JSON object (a JSON {type(obj).__name__})"]
        reasons: list[str] | None = None
        try:
            get = obj.get
            ts = get("timestamp")
            level = get("level")
            service = get("service_name")
            if (
                type(ts) is not str
                or not timestamp_ok(ts)
                or type(level) is not str
                or level not in levels
                or type(service) is not str
                or type(get("event")) is not str
            ):
                reasons = _field_reasons(obj)
            elif service not in good_services:
                if service_ok(service):
                    if len(good_services) < 256:
                        good_services.add(service)
                else:
                    reasons = _field_reasons(obj)
            trace_id = get("trace_id")
            span_id = get("span_id")
            if (trace_id is not None or span_id is not None) and (
                type(trace_id) is not str
                or len(trace_id) != 32
                or trace_id.strip(hexdigits)
                or trace_id == zero32
                or type(span_id) is not str
                or len(span_id) != 16
                or span_id.strip(hexdigits)
                or span_id == zero16
            ):
                reasons = (reasons or []) + _id_reasons(trace_id, span_id)
            code = get("error_code")
            if code is None:
                if level == "error" or level == "critical":
                    reasons = (reasons or []) + [f"{level} line without error_code"]
            elif type(code) is not str or not (
                code in registered if registered is not None else code_ok(code)
            ):
                reasons = (reasons or []) + [_code_reason(code, registered)]
            if suspect is None:
                suspect = may_hold(raw)
            # A backslash is found by memchr; a two-byte needle costs a byte-by-byte scan.
            if suspect or (b"\\" in raw and b"\\u" in raw):
                pans = _pan_reasons(raw, obj)
                if pans:
                    reasons = (reasons or []) + pans
        except RecursionError:
            reasons = (reasons or []) + ["nesting too deep to inspect"]
        except Exception as exc:  # a validator bug must not stop the run
            reasons = (reasons or []) + [f"could not be checked ({type(exc).__name__})"]
        return reasons

    return check


def _field_reasons(obj: dict[str, Any]) -> list[str]:
    out = []
    missing = [name for name in _REQUIRED if name not in obj]
    if missing:
        out.append("missing " + ", ".join(missing))
    ts = obj.get("timestamp")
    if "timestamp" in obj and (type(ts) is not str or not _TIMESTAMP(ts)):
        out.append(f"timestamp {_show(ts)} is not ISO 8601 with an offset on a real date")
    level = obj.get("level")
    if "level" in obj and (type(level) is not str or level not in _LEVELS):
        out.append(f"level {_show(level)} is not one of debug, info, warning, error, critical")
    service = obj.get("service_name")
    if "service_name" in obj and (type(service) is not str or not _SERVICE(service)):
        out.append(f"service_name {_show(service)} is not lower-case words joined by hyphens")
    if "event" in obj and type(obj["event"]) is not str:
        out.append("event is not a string")
    return out


def _code_reason(code: Any, registered: frozenset[str] | None) -> str:
    if type(code) is not str or not _CODE(code):
        return f"error_code {_show(code)} is not of the form DOMAIN-NNN"
    return f"error_code {code} is not in the catalogue"


def _id_reasons(trace_id: Any, span_id: Any) -> list[str]:
    hex32 = _HEX32
    hex16 = _HEX16
    out = []
    if trace_id is None:
        out.append("span_id without trace_id")
    elif type(trace_id) is not str or not hex32(trace_id) or trace_id == _ZERO32:
        out.append(f"trace_id {_show(trace_id)} is not 32 lower-case hex digits (not all zero)")
    if span_id is None:
        out.append("trace_id without span_id")
    elif type(span_id) is not str or not hex16(span_id) or span_id == _ZERO16:
        out.append(f"span_id {_show(span_id)} is not 16 lower-case hex digits (not all zero)")
    return out


def iter_batches(
    stream: IO[bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, limit: int | None = None
) -> Iterator[list[bytes]]:
    """The lines of ``stream`` without their newline, a block's worth at a time.

    A line longer than ``max_line_bytes`` comes as the :data:`TOO_LONG` object and is never
    held in memory whole. ``limit``: read at most this many bytes (a chunk that starts and ends
    at line starts).
    """
    pending = b""
    skipping = False
    remaining = limit
    while True:
        size = _BLOCK if remaining is None else min(_BLOCK, remaining)
        block = stream.read(size) if size > 0 else b""
        if not block:
            if skipping:
                yield [TOO_LONG]
            elif pending:
                yield [_strip_cr(pending)]
            return
        if remaining is not None:
            remaining -= len(block)
        batch: list[bytes] = []
        if skipping:
            nl = block.find(b"\n")
            if nl < 0:
                continue
            batch.append(TOO_LONG)
            skipping = False
            block = block[nl + 1 :]
        data = pending + block if pending else block
        parts = data.split(b"\n")
        pending = parts.pop()
        if b"\r" in data:
            parts = [_strip_cr(p) for p in parts]
        if parts and max(map(len, parts)) > max_line_bytes:
            parts = [TOO_LONG if len(p) > max_line_bytes else p for p in parts]
        if batch:
            batch.extend(parts)
        else:
            batch = parts
        if len(pending) > max_line_bytes:
            pending = b""
            skipping = True
        if batch:
            yield batch


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def validate_stream(
    stream: IO[bytes],
    path: str,
    check: Callable[[bytes], list[str] | None],
    *,
    max_errors: int | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    first_line: int = 1,
    limit: int | None = None,
    keep: int | None = None,
    on_violation: Callable[[Violation], None] | None = None,
    hinted: bool = False,
) -> FileReport:
    """Check every line of ``stream``; the report names ``path`` and line numbers.

    Each bad line goes to ``on_violation`` as it is found; the report lists the first ``keep``
    (None: all), so memory stays flat however many lines are bad. ``hinted``: ``check`` is a
    :class:`LineChecker`, told which lines of each block may hold a card number (one scan of
    the block instead of one per line).
    """
    report = FileReport(path)
    number = first_line - 1
    violations = report.violations
    too_long = [f"line longer than {max_line_bytes} bytes (not checked further)"]
    hinted_check = cast("LineChecker", check) if hinted else None
    try:
        for batch in iter_batches(stream, max_line_bytes, limit):
            # The hot loop: one comprehension per block keeps only the bad lines.
            marks = suspect_marks(batch) if hinted_check is not None else None
            if hinted_check is not None and marks is not None:
                bad = [
                    (i, found)
                    for i, line, mark in zip(itertools.count(number + 1), batch, marks)
                    if (found := (too_long if line is TOO_LONG else hinted_check(line, mark)))
                    is not None
                ]
            else:
                bad = [
                    (i, found)
                    for i, line in enumerate(batch, number + 1)
                    if (found := (too_long if line is TOO_LONG else check(line))) is not None
                ]
            number += len(batch)
            for line_number, reasons in bad:
                report.bad_lines += 1
                violation = Violation(path, line_number, "; ".join(reasons))
                if on_violation is not None:
                    on_violation(violation)
                if keep is None or len(violations) < keep:
                    violations.append(violation)
                if max_errors is not None and report.bad_lines >= max_errors:
                    report.stopped = True
                    number = line_number
                    break
            if report.stopped:
                break
    except BrokenPipeError:
        # Raised by on_violation writing to a closed pipe (reads never raise it): the reader
        # went away, which is the caller's business, not a fault in the input.
        raise
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        report.error = f"{path}: cannot read after line {number}: {exc}"
    report.lines = number - first_line + 1
    return report


def suspect_marks(batch: list[bytes]) -> bytearray | None:
    """1 for each line of ``batch`` that may hold a card number, 0 for the others; None when
    the block is not plain ASCII (each line is then asked on its own)."""
    found = pan_suspect_lines(b"\n".join(batch))
    if found is None:
        return None
    marks = bytearray(len(batch))
    for i in found:
        marks[i] = 1
    return marks


def open_input(path: str, stdin: IO[bytes] | None = None) -> IO[bytes]:
    """A binary stream for ``path`` (``-`` is stdin); gzip detected by its magic bytes."""
    if path == "-":
        raw: IO[bytes] = stdin if stdin is not None else _stdin()
        buffered: Any = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            return cast("IO[bytes]", gzip.GzipFile(fileobj=buffered))
        return cast("IO[bytes]", buffered)
    handle = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if handle.peek(2)[:2] == b"\x1f\x8b":
        handle.close()
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return handle


def _stdin() -> IO[bytes]:
    import sys

    return sys.stdin.buffer


def is_plain_file(path: str) -> bool:
    """True for a regular, uncompressed file (one that can be split into chunks)."""
    if path == "-" or not os.path.isfile(path):
        return False
    with open(path, "rb") as handle:
        return handle.read(2) != b"\x1f\x8b"


def chunk_bounds(path: str, parts: int) -> list[tuple[int, int]]:
    """Byte ranges splitting ``path`` at line starts into about ``parts`` equal pieces."""
    size = os.path.getsize(path)
    bounds = [0]
    with open(path, "rb") as handle:
        for i in range(1, parts):
            target = size * i // parts
            if target <= bounds[-1]:
                continue
            handle.seek(target - 1)
            # Move to the start of the next line (a boundary right after a newline stays).
            handle.readline()
            position = handle.tell()
            if position >= size:
                break
            if position > bounds[-1]:
                bounds.append(position)
    bounds.append(size)
    return list(itertools.pairwise(bounds))


@dataclass(frozen=True)
class ChunkJob:
    """One piece of a file for a worker process (picklable)."""

    path: str
    start: int
    end: int
    codes: frozenset[str] | None
    max_errors: int | None
    max_line_bytes: int


def run_chunk(job: ChunkJob) -> FileReport:
    """Validate ``job``'s byte range; line numbers start at 1 (the parent shifts them)."""
    from otelfin.tools._scrub import use_environment_scrub_options

    use_environment_scrub_options()  # a spawned worker: the parent's fingerprint key too
    collecting = gc.isenabled()
    gc.disable()  # no reference cycles are made here: see otelfin.cli._logs
    check = make_line_checker(job.codes)
    try:
        with open(job.path, "rb") as handle:
            handle.seek(job.start)
            return validate_stream(
                handle,
                job.path,
                check,
                max_errors=job.max_errors,
                max_line_bytes=job.max_line_bytes,
                limit=job.end - job.start,
                hinted=True,
            )
    except OSError as exc:
        report = FileReport(job.path)
        report.error = f"{job.path}: cannot read: {exc}"
        return report
    finally:
        if collecting:
            gc.enable()


def merge_chunks(
    path: str,
    reports: Iterable[FileReport],
    max_errors: int | None,
    keep: int | None = None,
    on_violation: Callable[[Violation], None] | None = None,
) -> FileReport:
    """One report from consecutive chunk reports, line numbers shifted into place."""
    merged = FileReport(path)
    offset = 0
    for part in reports:
        for violation in part.violations:
            if max_errors is not None and merged.bad_lines >= max_errors:
                merged.stopped = True
                break
            shifted = Violation(path, violation.line + offset, violation.reason)
            merged.bad_lines += 1
            if on_violation is not None:
                on_violation(shifted)
            if keep is None or len(merged.violations) < keep:
                merged.violations.append(shifted)
        merged.lines += part.lines
        offset += part.lines
        if part.error and merged.error is None:
            merged.error = part.error
        if part.stopped:
            merged.stopped = True
        if merged.stopped or merged.error:
            break
    return merged


def validate_path(
    path: str,
    codes: Collection[str] | None,
    *,
    max_errors: int | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    jobs: int = 1,
    pool: Any = None,
    min_chunk_bytes: int = 8 << 20,
    keep: int | None = None,
    on_violation: Callable[[Violation], None] | None = None,
    check: Callable[[bytes], list[str] | None] | None = None,
) -> FileReport:
    """Validate one file (``-`` for stdin; gzip handled), optionally split across ``pool``.

    A plain file of at least two ``min_chunk_bytes`` is cut at line starts into chunks of at
    most 32 MiB (at least four per job) that ``pool`` checks in parallel; their findings are
    merged back in order with the line numbers of the whole file. ``check`` replaces the log
    line checker (audit files: ``otelfin.tools.audit``); such files are read by one process.
    """
    frozen = frozenset(codes) if codes is not None else None
    if check is None and jobs > 1 and pool is not None and is_plain_file(path):
        size = os.path.getsize(path)
        parts = max(1, min(size // min_chunk_bytes, max(jobs * 4, size // _MAX_CHUNK)))
        if parts > 1:
            bounds = chunk_bounds(path, parts)
            chunk_jobs = [
                ChunkJob(path, a, b, frozen, max_errors, max_line_bytes) for a, b in bounds
            ]
            return merge_chunks(
                path, pool.imap(run_chunk, chunk_jobs), max_errors, keep, on_violation
            )
    hinted = check is None
    if check is None:
        check = make_line_checker(frozen)
    try:
        stream = open_input(path)
    except OSError as exc:
        report = FileReport(path)
        report.error = f"{path}: cannot open: {exc.strerror or exc}"
        return report
    with stream:
        return validate_stream(
            stream,
            path,
            check,
            max_errors=max_errors,
            max_line_bytes=max_line_bytes,
            keep=keep,
            on_violation=on_violation,
            hinted=hinted,
        )
