"""``otelfin audit verify``: walk an audit file's hash chain; check records against the schema.

What breaks a chain, and the line named (the first record that does not fit):

* an edited record: its ``hash`` no longer matches its content (or the line is not byte for
  byte what otelfin writes: keys reordered, duplicated or re-spaced);
* a deleted record: the next record's ``seq`` skips one and its ``prev`` names a hash no
  record before it has;
* an inserted or reordered record: ``seq`` out of order, ``prev`` not the previous hash;
* a removed beginning: the first record is not ``seq`` 0 with the genesis ``prev``;
* a forged chain: with the key, a record whose HMAC does not verify, or a plain SHA-256 chain
  (anyone can recompute those) where a keyed one was expected;
* with ``require_closed``: a last record that is not the stop record (the file was truncated
  at a record boundary, or the trail is still open) - the line after the last is named.

A keyed chain cannot be checked without its key (:class:`AuditKeyNeeded`, exit 2).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from otelfin.audit import FIELDS, GENESIS, OUTCOMES, START, STOP, chain_hash, key_id, serialise
from otelfin.scrub import find_pans

__all__ = [
    "AuditKeyNeeded",
    "audit_line_checker",
    "VerifyResult",
    "audit_schema",
    "is_audit_line",
    "record_problems",
    "verify_lines",
    "verify_path",
]

_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TRACE = re.compile(r"[0-9a-f]{32}")
_SPAN = re.compile(r"[0-9a-f]{16}")
_KEY_ID = re.compile(r"k[0-9a-f]{8}")
_CHAINS = ("sha256", "hmac-sha256")
#: Every written field but the optional ones (ids only under a span, key id only when keyed).
_REQUIRED = tuple(f for f in FIELDS if f not in ("trace_id", "span_id", "key_id"))


class AuditKeyNeeded(ValueError):
    """The chain is keyed (HMAC) and no key was given: it cannot be checked."""


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify_lines` found."""

    ok: bool
    #: Records read that fit the chain (all of them when ``ok``).
    records: int
    #: The 1-based line of the first record that breaks the chain (None when ``ok``).
    line: int | None = None
    reason: str = ""
    #: The last record read is the stop record.
    closed: bool = False
    chain: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--format json``)."""
        return asdict(self)


def audit_schema() -> dict[str, Any]:
    """The JSON Schema of one audit record (shipped beside the log schema)."""
    text = resources.files("otelfin.logging").joinpath("audit.schema.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def record_problems(record: Any) -> list[str]:
    """Why ``record`` (a parsed line) is not an audit record per the schema; empty when it is.

    The same checks as ``audit.schema.json`` (a test runs both on the same records).
    """
    if not isinstance(record, dict):
        return ["not a JSON object"]
    problems = [f"missing {name}" for name in _REQUIRED if name not in record]
    extra = sorted(set(record) - set(FIELDS))
    if extra:
        problems.append(f"unknown field {extra[0]}")
    seq = record.get("seq")
    if "seq" in record and (type(seq) is not int or seq < 0):
        problems.append("seq must be an integer >= 0")
    ts = record.get("timestamp")
    if "timestamp" in record and not (isinstance(ts, str) and _TIMESTAMP.fullmatch(ts)):
        problems.append("timestamp must be ISO 8601 with an offset")
    for name in ("service", "event", "actor"):
        if name in record and not _text(record[name]):
            problems.append(f"{name} must be a non-empty string")
    if "outcome" in record and record["outcome"] not in OUTCOMES:
        problems.append(f"outcome must be one of {', '.join(OUTCOMES)}")
    for name in ("resource", "origin"):
        if name in record and record[name] is not None and not _text(record[name]):
            problems.append(f"{name} must be a non-empty string or null")
    if "details" in record and not isinstance(record["details"], dict):
        problems.append("details must be an object")
    if "chain" in record and record["chain"] not in _CHAINS:
        problems.append(f"chain must be one of {', '.join(_CHAINS)}")
    for name, pattern in (("prev", _HEX64), ("hash", _HEX64)):
        value = record.get(name)
        if name in record and not (isinstance(value, str) and pattern.fullmatch(value)):
            problems.append(f"{name} must be 64 lowercase hex digits")
    for name, pattern in (("trace_id", _TRACE), ("span_id", _SPAN), ("key_id", _KEY_ID)):
        value = record.get(name)
        if name in record and not (isinstance(value, str) and pattern.fullmatch(value)):
            problems.append(f"{name} has the wrong format")
    if record.get("chain") == "hmac-sha256" and "key_id" not in record:
        problems.append("missing key_id (a keyed chain names its key)")
    return problems


def is_audit_line(line: bytes) -> bool:
    """The line looks like an otelfin audit record (for ``logs validate``'s auto-detection)."""
    try:
        parsed = json.loads(line)
    except ValueError:
        return False
    return isinstance(parsed, dict) and {"seq", "prev", "hash", "chain"} <= set(parsed)


def verify_lines(
    lines: Iterable[bytes], *, key: bytes | None = None, require_closed: bool = False
) -> VerifyResult:
    """Walk the chain of an audit file given as its lines (each with its ``\\n``).

    Raises :class:`AuditKeyNeeded` for a keyed chain without ``key``.
    """
    prev = GENESIS
    count = 0
    last_event: str | None = None
    chain: str | None = None
    wanted_key_id = key_id(key) if key is not None else None
    number = 0

    def broken(reason: str) -> VerifyResult:
        return VerifyResult(False, count, number, reason, last_event == STOP, chain)

    for number, raw in enumerate(lines, 1):  # noqa: B007 - broken() reads number
        if not raw.endswith(b"\n"):
            return broken("incomplete last line (the file was cut in the middle of a record)")
        body = raw[:-1]
        try:
            record = json.loads(body)
        except ValueError:
            return broken("not JSON (edited or corrupted)")
        problems = record_problems(record)
        if problems:
            return broken(f"not an audit record: {'; '.join(problems)}")
        try:
            form = serialise({k: record[k] for k in FIELDS if k in record})
        except ValueError:
            return broken("not as otelfin writes it (edited)")
        if form != body:
            return broken(
                "not byte for byte as otelfin wrote it (keys reordered, duplicated "
                "or re-spaced: edited)"
            )
        chain = record["chain"]
        if key is None and chain == "hmac-sha256":
            raise AuditKeyNeeded(
                "the chain is keyed (HMAC-SHA256): give the key (--key-file or "
                "OTELFIN_AUDIT_KEY) to verify it"
            )
        if key is not None and chain != "hmac-sha256":
            return broken(
                "not keyed (plain SHA-256) though a key was given: a chain anyone "
                "can recompute, forged or written without the key"
            )
        if key is not None and record["key_id"] != wanted_key_id:
            return broken(f"made with another key ({record['key_id']}, not {wanted_key_id})")
        seq = record["seq"]
        if seq != count:
            if count == 0:
                return broken(f"the first record has seq {seq}, not 0 (the beginning was removed)")
            how = "a record before it was deleted" if seq > count else "inserted or reordered"
            return broken(f"seq {seq} where {count} was expected ({how})")
        if record["prev"] != prev:
            return broken(
                "prev is not the hash of the record before it (deleted, inserted or reordered)"
            )
        if count == 0 and record["event"] != START:
            return broken(f"the first record is {record['event']!r}, not the start record")
        if not hmac.compare_digest(chain_hash(record, key), record["hash"]):
            return broken("hash does not match the record (edited, or forged without the key)")
        count += 1
        prev = record["hash"]
        last_event = record["event"]
    if count == 0:
        number = 1
        return broken("no records (the start record is missing)")
    if require_closed and last_event != STOP:
        number += 1
        return broken(
            f"the last record (line {number - 1}) is not the stop record: the file was "
            "truncated or the trail is still open"
        )
    return VerifyResult(True, count, None, "", last_event == STOP, chain)


def verify_path(
    path: str, *, key: bytes | None = None, require_closed: bool = False
) -> VerifyResult:
    """:func:`verify_lines` over a file (``-``: stdin). Raises OSError when it cannot be
    read and :class:`AuditKeyNeeded` for a keyed chain without ``key``."""
    import sys

    if path == "-":
        return verify_lines(sys.stdin.buffer, key=key, require_closed=require_closed)
    with open(path, "rb") as handle:
        return verify_lines(handle, key=key, require_closed=require_closed)


def audit_line_checker() -> Callable[[bytes], list[str] | None]:
    """A ``logs validate`` line checker for audit files: schema and unmasked card numbers."""

    def check(line: bytes) -> list[str] | None:
        try:
            record = json.loads(line)
        except ValueError as exc:
            return [f"invalid JSON: {exc}"]
        reasons = [f"audit schema: {p}" for p in record_problems(record)]
        for a, _ in find_pans(line):
            reasons.append(f"unmasked card number at byte {a + 1}")
        return reasons or None

    return check
