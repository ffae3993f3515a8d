"""The audit trail (PCI DSS 10.2, 10.3): hash-chained JSON lines in a file of their own.

::

    otelfin.configure("payment-gateway", audit_file="/var/log/payments/audit-{pid}.jsonl",
                      audit_key=os.environ["AUDIT_KEY"])
    otelfin.audit.record("card_data.read", actor="alice@ops", outcome="success",
                         resource="payment:pay-123", origin="10.0.0.7", card="4111 1111 1111 1111")

Each call appends one JSON object to ``audit_file`` / ``OTELFIN_AUDIT_FILE`` and returns it.
A record is never sampled, filtered or rotated with the logs, and never silently dropped: if it
cannot be written (no audit file configured, disk full, file removed from under it) the call
raises :class:`AuditError` to the caller, which decides whether the audited action may go on.

What a record holds (PCI DSS 10.2.2): ``actor`` (user identification), ``event`` (type of
event), ``timestamp`` (UTC, ISO 8601), ``outcome`` (``success`` | ``failure``), ``origin``
(where the event came from; the host name when not given) and ``resource`` (the data, system
component or resource affected), plus ``service``, the current span's ``trace_id`` /
``span_id`` when there is one, and ``details`` (the keyword arguments), masked exactly like log
lines: card numbers masked (and fingerprinted when a fingerprint key is set), secret-named
fields redacted.

The chain (PCI DSS 10.3.4, change detection): every record carries ``seq`` (0, 1, 2, ...),
``prev`` (the previous record's ``hash``; 64 zeros for the first) and ``hash``: HMAC-SHA256
with ``audit_key`` / ``OTELFIN_AUDIT_KEY`` over the record's canonical JSON (sorted keys, no
blanks, ``hash`` left out), or plain SHA-256 without a key (``chain`` says which). otelfin
writes an ``audit.start`` record when the trail opens (``configure()``) and an ``audit.stop``
record when it closes (``shutdown()`` or the interpreter's exit): PCI DSS 10.2.1.6. A trail
reopened on an existing file continues its chain. ``otelfin audit verify FILE`` checks it.

One writer per file: processes appending to one file would interleave two chains. Put
``{pid}`` in the file name for forked workers (a forked child then opens its own file on its
first record); without it a child's record raises :class:`AuditError`.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import math
import os
import socket
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from otelfin import _internal
from otelfin.scrub import fingerprint_key_id, scrub_text, scrub_value

if TYPE_CHECKING:
    from otelfin.pillar import Config, Tracing
    from otelfin.scrub import ScrubOptions

__all__ = [
    "GENESIS",
    "OUTCOMES",
    "START",
    "STOP",
    "AuditError",
    "AuditTrail",
    "canonical",
    "chain_hash",
    "close",
    "key_id",
    "open_trail",
    "record",
    "serialise",
]

#: ``prev`` of the first record of a file.
GENESIS = "0" * 64
#: The events otelfin itself writes when the trail opens and closes.
START, STOP = "audit.start", "audit.stop"
#: The allowed outcomes (PCI DSS 10.2.2: success and failure indication).
OUTCOMES = ("success", "failure")
#: Field order of a written line (the verifier insists on it: a reordered or duplicated key is
#: an edit).
FIELDS = (
    "seq",
    "timestamp",
    "service",
    "event",
    "actor",
    "outcome",
    "resource",
    "origin",
    "trace_id",
    "span_id",
    "details",
    "chain",
    "key_id",
    "prev",
    "hash",
)
_KEY_ID_LABEL = b"otelfin audit key id v1"


class AuditError(RuntimeError):
    """An audit record could not be written (the caller decides what that means)."""


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash covers: sorted keys, no blanks, UTF-8, ``hash`` left out."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def chain_hash(record: Mapping[str, Any], key: bytes | None) -> str:
    """The record's ``hash``: HMAC-SHA256 under ``key``, or SHA-256 without one (hex)."""
    data = canonical(record)
    if key is not None:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def serialise(record: Mapping[str, Any]) -> bytes:
    """One written line (no newline): the record's fields in :data:`FIELDS` order."""
    return json.dumps(
        dict(record), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def key_id(key: bytes) -> str:
    """A name for an audit key that reveals nothing about it: ``k`` + 8 hex."""
    return "k" + hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:8]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _text(value: Any, name: str, required: bool, options: ScrubOptions | None) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"audit {name} must be a non-empty string, not {value!r}")
    return scrub_text(value, options=options)


def _last_record(path: str) -> dict[str, Any] | None:
    """The last record of an existing trail file (None: empty or missing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size == 0:
                return None
            chunk = min(size, 1 << 20)
            handle.seek(size - chunk)
            tail = handle.read(chunk)
    except FileNotFoundError:
        return None
    if not tail.endswith(b"\n"):
        raise ValueError(
            f"audit_file {path!r} ends in an incomplete line (a write was cut short); "
            "check it with `otelfin audit verify` and start a new file"
        )
    last = tail.rstrip(b"\n").rpartition(b"\n")[2]
    try:
        found = json.loads(last)
        int(found["seq"])
        str(found["hash"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"audit_file {path!r} does not end in an audit record; "
            "check it with `otelfin audit verify` and start a new file"
        ) from None
    return found  # type: ignore[no-any-return]


class AuditTrail:
    """One open audit file and its chain (thread-safe). Made by :func:`open_trail`.

    Records are masked with ``scrub_options`` (None: the process default, masking on).
    """

    def __init__(
        self,
        path: str,
        service: str,
        key: bytes | None,
        scrub_options: ScrubOptions | None = None,
    ) -> None:
        self.path = path
        self.service = service
        #: What records are masked with: the scrub pillar's options, handed over by
        #: ``configure()`` (replaced whole when a later configure() keeps this trail).
        self.scrub_options = scrub_options
        self._key = key
        self.chain = "hmac-sha256" if key is not None else "sha256"
        self.key_id = key_id(key) if key is not None else None
        self.pid = os.getpid()
        self._lock = threading.Lock()
        last = _last_record(path)
        if last is not None and (last.get("chain"), last.get("key_id")) != (
            self.chain,
            self.key_id,
        ):
            raise ValueError(
                f"audit_file {path!r} was written with another audit key or chain "
                f"({last.get('chain')}, key {last.get('key_id')}); a new key starts a new file"
            )
        self._seq = int(last["seq"]) + 1 if last is not None else 0
        self._prev = str(last["hash"]) if last is not None else GENESIS
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.closed = False

    def write(
        self,
        event: str,
        actor: str,
        outcome: str,
        resource: str | None,
        origin: str | None,
        details: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Append one record; return it as written. Raises AuditError when it cannot."""
        if outcome not in OUTCOMES:
            raise ValueError(f"audit outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        options = self.scrub_options
        fields = {
            "event": _text(event, "event", True, options),
            "actor": _text(actor, "actor", True, options),
            "resource": _text(resource, "resource", False, options),
            "origin": _text(origin, "origin", False, options) or socket.gethostname(),
        }
        clean = scrub_value(dict(details), options=options)
        _check_json(clean)
        ctx = trace.get_current_span().get_span_context()
        with self._lock:
            if self._fd is None:
                raise AuditError(f"the audit trail {self.path!r} is closed")
            record: dict[str, Any] = {
                "seq": self._seq,
                "timestamp": _now(),
                "service": self.service,
                "event": fields["event"],
                "actor": fields["actor"],
                "outcome": outcome,
                "resource": fields["resource"],
                "origin": fields["origin"],
            }
            if ctx.is_valid:
                record["trace_id"] = format(ctx.trace_id, "032x")
                record["span_id"] = format(ctx.span_id, "016x")
            record["details"] = clean
            record["chain"] = self.chain
            if self.key_id is not None:
                record["key_id"] = self.key_id
            record["prev"] = self._prev
            record["hash"] = chain_hash(record, self._key)
            line = serialise(record) + b"\n"
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(f"short write: {written} of {len(line)} bytes")
            except OSError as exc:
                raise AuditError(f"audit record not written to {self.path!r}: {exc}") from exc
            self._seq += 1
            self._prev = record["hash"]
            return record

    def close(self, details: Mapping[str, Any] | None = None) -> None:
        """Write the stop record and close the file (idempotent)."""
        if self.closed:
            return
        try:
            self.write(
                STOP, "otelfin", "success", self.path, None, dict(details or {"pid": os.getpid()})
            )
        finally:
            self.discard()

    def discard(self) -> None:
        """Close the file without a stop record (the start record could not be written)."""
        with self._lock:
            self.closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def forget_in_child(self) -> None:
        """After fork(): the child neither writes to nor closes the parent's chain."""
        with self._lock:
            self._fd = None  # the descriptor is the parent's; the child's copy is left alone
            self.closed = True


def _check_json(value: Any, depth: int = 0) -> None:
    """``details`` must be plain JSON (no NaN, no objects): what is written is verifiable."""
    if depth > 32:
        raise ValueError("audit details nest deeper than 32 levels")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"audit details hold a non-finite number: {value!r}")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_json(item, depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise ValueError(f"audit details keys must be strings, not {k!r}")
            _check_json(item, depth + 1)
        return
    raise ValueError(f"audit details must be JSON values, not {type(value).__name__}")


class _State:
    __slots__ = ("failure", "key", "lock", "scrub_options", "service", "template", "trail")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.trail: AuditTrail | None = None
        self.template: str | None = None
        self.service = ""
        self.key: bytes | None = None
        #: The scrubber's options the trail masks with (a child's reopened trail too).
        self.scrub_options: ScrubOptions | None = None
        #: Why the configured trail could not be opened (named by record()'s AuditError).
        self.failure: str | None = None


_state = _State()


def open_trail(
    path: str,
    service: str,
    key: str | bytes | None = None,
    *,
    scrub_options: ScrubOptions | None = None,
) -> AuditTrail:
    """Open (or continue) the trail at ``path`` and write its start record; it becomes the
    trail :func:`record` writes to. ``{pid}`` in ``path`` is replaced by the process id.
    Records are masked with ``scrub_options`` (None: the process default).

    Raises ValueError when the file cannot be opened or does not end in a complete record.
    """
    data = key.encode("utf-8") if isinstance(key, str) else key
    with _state.lock:
        close()
        _state.template, _state.failure = None, None
        try:
            trail = _open(path, service, data, scrub_options)
        except ValueError as exc:
            _state.failure = str(exc)
            raise
        _state.template, _state.service, _state.key = path, service, data
        _state.scrub_options = scrub_options
        _state.trail = trail
        return trail


def _open(
    template: str, service: str, key: bytes | None, options: ScrubOptions | None
) -> AuditTrail:
    path = template.replace("{pid}", str(os.getpid()))
    try:
        trail = AuditTrail(path, service, key, options)
    except OSError as exc:
        raise ValueError(f"audit_file {path!r} cannot be opened: {exc.strerror}") from None
    details: dict[str, Any] = {"pid": os.getpid(), "chain": trail.chain}
    fp = fingerprint_key_id(options)
    if fp is not None:
        details["fingerprint_key_id"] = fp
    try:
        trail.write(START, "otelfin", "success", path, None, details)
    except AuditError as exc:
        trail.discard()
        raise ValueError(str(exc)) from exc
    return trail


def close() -> None:
    """Write the stop record and close the current trail, if any. Never raises (a stop record
    that cannot be written is reported; verify --require-closed will show the file open)."""
    with _state.lock:
        trail, _state.trail = _state.trail, None
        if trail is None or trail.pid != os.getpid():
            return
        try:
            trail.close()
        except Exception as exc:
            _internal.report("audit.close", exc)


def record(
    event: str,
    *,
    actor: str,
    outcome: str,
    resource: str | None = None,
    origin: str | None = None,
    **details: Any,
) -> dict[str, Any]:
    """Append one audit record (see the module docstring) and return it as written.

    Args:
        event: what happened (``card_data.read``, ``login``, ``refund.approve``,
            ``credentials.change``).
        actor: who did it (a user or service identity).
        outcome: ``success`` or ``failure``.
        resource: the data, system component or resource affected.
        origin: where the event came from (client address, host); the host name when None.
        **details: more fields (JSON values), masked like log fields.

    Raises:
        AuditError: no audit file is configured, or the record could not be written.
        ValueError: a missing field or a value that is not plain JSON.
    """
    with _state.lock:
        trail = _state.trail
        if trail is None or trail.pid != os.getpid():
            trail = _reopen_in_child(trail)
    return trail.write(event, actor, outcome, resource, origin, details)


def _reopen_in_child(trail: AuditTrail | None) -> AuditTrail:
    template = _state.template
    if trail is None and template is None:
        if _state.failure is not None:
            raise AuditError(f"no audit trail: {_state.failure}")
        raise AuditError(
            "no audit trail: set audit_file (OTELFIN_AUDIT_FILE) in otelfin.configure()"
        )
    if template is None or "{pid}" not in template:
        raise AuditError(
            "this process was forked from the one that owns the audit trail; put {pid} in "
            "audit_file so each process keeps its own chain"
        )
    try:
        _state.trail = _open(template, _state.service, _state.key, _state.scrub_options)
    except ValueError as exc:
        raise AuditError(str(exc)) from exc
    return _state.trail


def _after_fork_in_child() -> None:
    _state.lock = threading.RLock()
    trail = _state.trail
    if trail is not None:
        trail.forget_in_child()
        _state.trail = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(close)


def install_pillar(config: Config, tracing: Tracing) -> None:
    """Open the trail ``audit_file`` names (or close it when unset); the same file and key
    again keeps the open trail (no new start record). Records are masked with the scrub
    pillar's options ``configure()`` handed over (``tracing.scrub_options``)."""
    options = config.options
    path = options.get("audit_file")
    raw_key = options.get("audit_key")
    key = raw_key.encode("utf-8") if isinstance(raw_key, str) else raw_key
    with _state.lock:
        if not path:
            close()
            _state.template, _state.failure = None, None
            return
        trail = _state.trail
        same = (
            trail is not None
            and _state.template == path
            and _state.key == key
            and _state.service == config.service_name
            and trail.pid == os.getpid()
        )
        if not same:
            open_trail(path, config.service_name, key, scrub_options=tracing.scrub_options)
        elif trail is not None:
            trail.scrub_options = _state.scrub_options = tracing.scrub_options


def uninstall_pillar() -> None:
    """Write the stop record and close the trail (``otelfin.shutdown()``)."""
    with _state.lock:
        close()
        _state.template, _state.failure = None, None
