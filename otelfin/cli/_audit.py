"""``otelfin audit verify``: check an audit file's hash chain."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from otelfin.cli._common import command
from otelfin.cli._env import setting_argument, setting_value
from otelfin.cli._output import json_text

__all__ = ["register"]


def register(sub: Any) -> None:
    _, audit_sub = command(
        sub, "audit", help="check audit trails written by otelfin.audit.record", required=True
    )
    verify = audit_sub.add_parser(
        "verify",
        help="verify an audit file's hash chain",
        description=(
            "Walk the hash chain of an audit file (- for stdin). Exit 0 when every record is "
            "intact and in order; 1 naming the line of the first record that breaks the chain "
            "(edited, deleted, inserted, reordered, forged without the key; with "
            "--require-closed also a file whose last record is not the stop record: truncated "
            "or still open); 2 for unreadable input or a keyed chain without its key. The key "
            "comes from --key-file or $OTELFIN_AUDIT_KEY."
        ),
    )
    setting_argument(
        verify,
        "file",
        setting="audit_file",
        help="the audit file, - for stdin",
        nargs="?",
        metavar="FILE",
        parse_flag=False,
    )
    verify.add_argument(
        "--require-closed",
        action="store_true",
        help="the last record must be the stop record (a cleanly closed trail)",
    )
    verify.add_argument(
        "--key-file",
        metavar="PATH",
        help="file whose first line is the audit key (HMAC chains); never pass a key inline",
    )
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(func=_verify)


def _key(args: argparse.Namespace) -> bytes | None:
    if args.key_file:
        with open(args.key_file, "rb") as handle:
            key = handle.readline().strip()
        if not key:
            raise ValueError(f"--key-file {args.key_file}: no key on its first line")
        return key
    value = setting_value("audit_key")
    return value.encode("utf-8") if isinstance(value, str) else None


def _verify(args: argparse.Namespace) -> int:
    from otelfin.tools.audit import AuditKeyNeeded, verify_path

    if not args.file:
        print("otelfin audit verify: give FILE or set OTELFIN_AUDIT_FILE", file=sys.stderr)
        return 2
    try:
        key = _key(args)
        result = verify_path(args.file, key=key, require_closed=args.require_closed)
    except AuditKeyNeeded as exc:
        print(f"otelfin audit verify: {args.file}: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        detail = getattr(exc, "strerror", None) or exc
        print(f"otelfin audit verify: cannot read: {detail}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json_text({"file": args.file, **result.as_dict()}))
    elif result.ok:
        state = "closed" if result.closed else "open (no stop record yet)"
        print(f"{args.file}: intact, {result.records} records, chain {result.chain}, {state}")
    else:
        print(f"{args.file}:{result.line}: {result.reason}")
    return 0 if result.ok else 1
