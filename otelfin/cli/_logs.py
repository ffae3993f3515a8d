"""``otelfin logs validate``, ``otelfin logs filter`` and ``otelfin logs schema``."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO
from xml.etree import ElementTree

from otelfin._settings import split_list
from otelfin.catalogue import CatalogueError, load_catalogue
from otelfin.cli._common import command
from otelfin.cli._env import files_argument, setting_argument
from otelfin.cli._output import json_text
from otelfin.logging import (
    DEFAULT_MAX_LINE_BYTES,
    FileReport,
    Violation,
    validate_path,
)
from otelfin.tools._text import plural

#: Bad lines listed per file in json/junit output (all are counted).
_LISTED = 10_000


def register(sub: Any) -> None:
    _, logs_sub = command(
        sub,
        "logs",
        help="validate or filter JSON log lines; print the log-line schema",
        required=True,
    )

    validate = logs_sub.add_parser(
        "validate",
        help="check JSON log lines: schema, registered error codes, no unmasked card numbers",
        description=(
            "Check every line of each FILE (- for stdin; gzip is detected): a JSON object with "
            "the fields of otelfin's log schema, an error_code registered in the catalogue "
            "(required on error/critical lines), and no unmasked card number anywhere. "
            "Prints file:line: reason per bad line. Exit 0 clean, 1 bad lines, "
            "2 usage error or unreadable input."
        ),
    )
    files_argument(validate, "log_file", help="JSON-lines log files, - for stdin")
    catalogue_argument(validate)
    validate.add_argument(
        "--no-catalogue",
        action="store_true",
        help="skip the error-code registration check (formats are still checked)",
    )
    validate.add_argument("--format", choices=("text", "json", "github", "junit"), default="text")
    validate.add_argument(
        "--audit",
        action="store_true",
        help=(
            "check the files as audit trails (otelfin.audit) against the audit-record schema "
            "and for unmasked card numbers; without it, a file whose first line is an audit "
            "record is checked so anyway (`otelfin audit verify` checks the chain)"
        ),
    )
    validate.add_argument(
        "--allow-empty",
        action="store_true",
        help=(
            "exit 0 when the input holds no log line at all (by default an empty input is a "
            "finding, exit 1: a CI job pointed at the wrong file must not pass on nothing)"
        ),
    )
    validate.add_argument(
        "--max-errors",
        type=_positive,
        default=None,
        metavar="N",
        help="stop after N bad lines",
    )
    validate.add_argument(
        "--jobs",
        "-j",
        type=_non_negative,
        default=1,
        metavar="N",
        help=(
            "worker processes for plain files of 16 MiB and more (0 = one per CPU); "
            "gzip input and stdin are read by one process"
        ),
    )
    validate.add_argument(
        "--max-line-bytes",
        type=_positive,
        default=DEFAULT_MAX_LINE_BYTES,
        metavar="N",
        help=f"longer lines are reported, not parsed (default {DEFAULT_MAX_LINE_BYTES})",
    )
    validate.set_defaults(func=_validate)

    flt = logs_sub.add_parser(
        "filter",
        help="pipeline stage: pass valid JSON log lines to stdout, dead-letter the bad ones",
        description=(
            "Read JSON log lines from each FILE (- or none for stdin; gzip is detected) as they "
            "arrive and write every valid line to stdout unchanged. A bad line (invalid JSON, "
            "schema violation, unregistered error_code, unmasked card number: the same checks "
            "as `otelfin logs validate`) goes to the dead-letter file as one JSON object "
            '{"source", "line_number", "reasons", "line"} with card numbers masked. No line is '
            "lost: passed + dead-lettered = lines read. Exit 0 all passed, 1 some dead-lettered, "
            "2 usage error or unreadable input."
        ),
    )
    flt.add_argument("files", nargs="*", metavar="FILE", help="inputs (default: stdin)")
    flt.add_argument(
        "--dead-letter",
        metavar="PATH",
        help="append bad lines here as JSON lines (default: stderr)",
    )
    flt.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write counts in Prometheus text format for node_exporter's textfile collector "
        "(atomically, by rename; name it *.prom), every --metrics-interval and at the end",
    )
    flt.add_argument(
        "--metrics-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how often to rewrite --metrics-file while input streams (default 10)",
    )
    catalogue_argument(flt)
    flt.add_argument(
        "--no-catalogue", action="store_true", help="skip the error-code registration check"
    )
    flt.add_argument(
        "--max-line-bytes",
        type=_positive,
        default=DEFAULT_MAX_LINE_BYTES,
        metavar="N",
        help="longer lines are dead-lettered without their text "
        f"(default {DEFAULT_MAX_LINE_BYTES})",
    )
    flt.set_defaults(func=_filter)

    schema = logs_sub.add_parser("schema", help="print the JSON Schema of an otelfin log line")
    schema.set_defaults(func=_schema)


def catalogue_argument(parser: Any) -> None:
    """``--catalogue FILE`` (repeatable), defaulting from ``OTELFIN_CATALOGUE`` like
    ``configure()`` (comma or path-separator separated)."""
    setting_argument(
        parser,
        "--catalogue",
        setting="catalogue",
        help="service catalogue laid over the packaged one (repeatable)",
        action="append",
        metavar="FILE",
        parse_flag=False,
        from_setting=_catalogue_paths,
        fallback_text="the packaged catalogue alone",
    )


def _catalogue_paths(value: Any) -> list[str]:
    return list(split_list(value, "OTELFIN_CATALOGUE", extra_separators=os.pathsep))


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _schema(args: argparse.Namespace) -> int:
    from otelfin.logging import schema

    print(json.dumps(schema(), indent=2))
    return 0


def _codes(args: argparse.Namespace, command: str) -> tuple[bool, frozenset[str] | None]:
    """``(ok, codes)`` of ``--catalogue`` (codes None with ``--no-catalogue``); ok is False
    after a bad catalogue was reported (the caller exits 2)."""
    if args.no_catalogue:
        return True, None
    try:
        return True, frozenset(load_catalogue(*args.catalogue))
    except CatalogueError as exc:
        print(f"otelfin logs {command}: bad catalogue:\n{exc}", file=sys.stderr)
        return False, None


def _scrub_settings(command: str) -> bool:
    """Scrub with the service's settings (mask, fingerprint key); False after reporting a
    bad one (the caller exits 2)."""
    from otelfin.tools._scrub import use_environment_scrub_options

    try:
        use_environment_scrub_options()
    except ValueError as exc:
        print(f"otelfin logs {command}: {exc}", file=sys.stderr)
        return False
    return True


def _validate(args: argparse.Namespace) -> int:
    if not _scrub_settings("validate"):
        return 2
    if not args.files:
        print(
            "otelfin logs validate: give FILE (- for stdin) or set OTELFIN_LOG_FILE",
            file=sys.stderr,
        )
        return 2
    if args.files.count("-") > 1:
        print("otelfin logs validate: '-' (stdin) may be given once", file=sys.stderr)
        return 2
    ok, codes = _codes(args, "validate")
    if not ok:
        return 2
    jobs = args.jobs or (os.cpu_count() or 1)
    # Validating makes no reference cycles (each parsed line is freed by reference counting),
    # so the cyclic collector only costs time (~2%); it is switched back on afterwards.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _validate_all(args, codes, jobs)
    finally:
        if collecting:
            gc.enable()


def _validate_all(args: argparse.Namespace, codes: frozenset[str] | None, jobs: int) -> int:
    out = sys.stdout
    streaming = args.format in ("text", "github")

    def emit(violation: Violation) -> None:
        if args.format == "github":
            out.write(
                f"::error file={_gh_property(violation.path)},line={violation.line},"
                f"title=otelfin logs validate::{_gh_message(violation.reason)}\n"
            )
        else:
            out.write(f"{violation}\n")

    # text/github print each bad line as it is found and keep none; json/junit list the first
    # _LISTED. Either way memory stays flat, whatever the size of the input.
    reports = _run(
        args.files,
        codes,
        args.max_errors,
        args.max_line_bytes,
        jobs,
        keep=0 if streaming else _LISTED,
        on_violation=emit if streaming else None,
        audit=getattr(args, "audit", False),
    )
    _finish(reports, args.format, args.max_errors, out)
    if any(r.error for r in reports):
        return 2
    if not any(r.lines for r in reports) and not getattr(args, "allow_empty", False):
        print(
            "otelfin logs validate: no log line to check (empty input); "
            "pass --allow-empty if that is expected",
            file=sys.stderr,
        )
        return 1
    return 1 if any(r.bad_lines for r in reports) else 0


def _run(
    files: Sequence[str],
    codes: frozenset[str] | None,
    max_errors: int | None,
    max_line_bytes: int,
    jobs: int,
    keep: int | None,
    on_violation: Callable[[Violation], None] | None,
    audit: bool = False,
) -> list[FileReport]:
    pool = None
    if jobs > 1:
        import multiprocessing

        # spawn: safe whatever threads the caller runs; its start-up cost is paid only when a
        # file is big enough to be split (8 MiB a chunk).
        pool = multiprocessing.get_context("spawn").Pool(jobs)
    reports: list[FileReport] = []
    remaining = max_errors
    try:
        for path in files:
            report = validate_path(
                path,
                codes,
                max_errors=remaining,
                max_line_bytes=max_line_bytes,
                jobs=jobs,
                pool=pool,
                keep=keep,
                on_violation=on_violation,
                check=_audit_checker(path, audit),
            )
            reports.append(report)
            if remaining is not None:
                remaining -= report.bad_lines
                if remaining <= 0:
                    report.stopped = True
                    break
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return reports


def _audit_checker(path: str, forced: bool) -> Callable[[bytes], list[str] | None] | None:
    """The audit-record checker for ``path`` when ``--audit`` is given or its first line is
    an audit record (auto-detection: plain and gzip files, not stdin), else None (log lines)."""
    from otelfin.tools.audit import audit_line_checker, is_audit_line
    from otelfin.tools.logs import open_input

    if forced:
        return audit_line_checker()
    if path == "-":
        return None
    try:
        with open_input(path) as stream:
            first = stream.readline(1 << 20)
    except (OSError, EOFError, ValueError):
        return None  # validate_path reports what is wrong with the file
    return audit_line_checker() if is_audit_line(first) else None


def _finish(reports: list[FileReport], fmt: str, max_errors: int | None, out: TextIO) -> None:
    lines = sum(r.lines for r in reports)
    bad = sum(r.bad_lines for r in reports)
    stopped = any(r.stopped for r in reports)
    summary = f"checked {plural(lines, 'line')} in {plural(len(reports), 'file')}: {bad} bad"
    if stopped:
        summary += f" (stopped after --max-errors {max_errors})"
    if fmt == "json":
        listed = [
            {"path": v.path, "line": v.line, "reason": v.reason}
            for r in reports
            for v in r.violations
        ]
        payload = {
            "ok": not bad and not any(r.error for r in reports),
            "lines": lines,
            "bad_lines": bad,
            "stopped": stopped,
            "files": [
                {"path": r.path, "lines": r.lines, "bad_lines": r.bad_lines, "error": r.error}
                for r in reports
            ],
            "violations": listed,
            "violations_listed": len(listed),
        }
        out.write(json_text(payload, indent=2) + "\n")
        return
    if fmt == "junit":
        out.write(_junit(reports))
        return
    for report in reports:
        if report.error:
            if fmt == "github":
                out.write(
                    f"::error file={_gh_property(report.path)}::{_gh_message(report.error)}\n"
                )
            print(report.error, file=sys.stderr)
    print(summary, file=sys.stderr)


def _gh_message(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_message(text).replace(":", "%3A").replace(",", "%2C")


def _junit(reports: list[FileReport]) -> str:
    failures = sum(1 for r in reports if r.bad_lines)
    errors = sum(1 for r in reports if r.error)
    suites = ElementTree.Element(
        "testsuites",
        name="otelfin logs validate",
        tests=str(len(reports)),
        failures=str(failures),
        errors=str(errors),
    )
    suite = ElementTree.SubElement(
        suites,
        "testsuite",
        name="otelfin logs validate",
        tests=str(len(reports)),
        failures=str(failures),
        errors=str(errors),
    )
    for report in reports:
        case = ElementTree.SubElement(suite, "testcase", classname="otelfin.logs", name=report.path)
        if report.bad_lines:
            failure = ElementTree.SubElement(
                case,
                "failure",
                message=f"{plural(report.bad_lines, 'bad line')} of {report.lines}",
                type="LogLineViolation",
            )
            listed = "\n".join(str(v) for v in report.violations)
            if report.bad_lines > len(report.violations):
                listed += f"\n... {report.bad_lines - len(report.violations)} more not listed"
            failure.text = listed
        if report.error:
            error = ElementTree.SubElement(case, "error", message=report.error, type="InputError")
            error.text = report.error
    body = ElementTree.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _filter(args: argparse.Namespace) -> int:
    from otelfin.logging import FilterReport, filter_lines, write_metrics_file

    if not _scrub_settings("filter"):
        return 2
    files = args.files or ["-"]
    if files.count("-") > 1:
        print("otelfin logs filter: '-' (stdin) may be given once", file=sys.stderr)
        return 2
    if not args.metrics_interval > 0:
        print("otelfin logs filter: --metrics-interval must be > 0", file=sys.stderr)
        return 2
    ok, codes = _codes(args, "filter")
    if not ok:
        return 2
    try:
        dead = open(args.dead_letter, "ab") if args.dead_letter else sys.stderr.buffer  # noqa: SIM115
    except OSError as exc:
        print(
            f"otelfin logs filter: cannot open {args.dead_letter}: {exc.strerror}", file=sys.stderr
        )
        return 2
    metrics_error: list[str] = []

    def write_metrics(report: FilterReport) -> None:
        try:
            write_metrics_file(args.metrics_file, report)
        except OSError as exc:
            if not metrics_error:
                metrics_error.append(f"cannot write {args.metrics_file}: {exc.strerror or exc}")

    due = [time.monotonic() + args.metrics_interval]

    def progress(report: FilterReport) -> None:
        if args.metrics_file and time.monotonic() >= due[0]:
            due[0] = time.monotonic() + args.metrics_interval
            write_metrics(report)

    try:
        if args.metrics_file:
            write_metrics(FilterReport())  # the file exists (all zero) from the start
        report = filter_lines(
            files,
            sys.stdout.buffer,
            dead,
            codes=codes,
            max_line_bytes=args.max_line_bytes,
            on_progress=progress,
        )
    finally:
        if args.dead_letter:
            dead.close()
    if args.metrics_file:
        write_metrics(report)
    for problem in metrics_error:
        print(f"otelfin logs filter: {problem}", file=sys.stderr)
    if report.error:
        print(f"otelfin logs filter: {report.error}", file=sys.stderr)
    print(
        f"otelfin logs filter: {plural(report.lines, 'line')}: {report.passed} passed, "
        f"{report.dead_lettered} dead-lettered",
        file=sys.stderr,
    )
    if report.error or metrics_error:
        return 2
    return 1 if report.dead_lettered else 0
