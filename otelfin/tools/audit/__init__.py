"""Audit files after the fact: ``otelfin audit verify`` and the audit-record schema check.

See :mod:`otelfin.audit` for what the runtime writes. :func:`verify_path` walks a file's hash
chain; :func:`record_problems` checks one record against ``audit.schema.json`` (``otelfin logs
validate`` uses it for audit files).
"""

from __future__ import annotations

from otelfin.tools.audit._verify import (
    AuditKeyNeeded,
    VerifyResult,
    audit_line_checker,
    audit_schema,
    is_audit_line,
    record_problems,
    verify_lines,
    verify_path,
)

__all__ = [
    "AuditKeyNeeded",
    "VerifyResult",
    "audit_line_checker",
    "audit_schema",
    "is_audit_line",
    "record_problems",
    "verify_lines",
    "verify_path",
]
