"""``otelfin buckets suggest``, ``otelfin p99 report``, ``otelfin rules build``,
``otelfin dashboards build``."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from otelfin.cli._common import command, usage_error
from otelfin.cli._env import setting_argument, setting_value
from otelfin.cli._output import json_text
from otelfin.metrics import names
from otelfin.scrub import scrub_text

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the metrics commands to the ``otelfin`` parser."""
    _, bsub = command(subparsers, "buckets", help="histogram bucket design")
    suggest = bsub.add_parser(
        "suggest",
        help="design 8-12 latency buckets from observed latencies",
        description="Design histogram buckets from latencies (seconds, one per line) and report "
        "the expected histogram_quantile error against prometheus_client's default buckets.",
    )
    src = suggest.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", help="file of latencies in seconds, or -")
    src.add_argument(
        "--file", metavar="EXPOSITION", help="design per --by value from an exposition"
    )
    src.add_argument("--prometheus", metavar="URL", help="design per --by value from Prometheus")
    suggest.add_argument(
        "--metric", default=names.DURATION, help="histogram, with --file/--prometheus"
    )
    suggest.add_argument("--by", default="operation", help="label to design per (operation)")
    suggest.add_argument("--window", default="1h", help="PromQL range with --prometheus (1h)")
    suggest.add_argument("--timeout", type=_seconds, default=10.0, help="seconds per HTTP request")
    suggest.add_argument("--count", type=int, default=12, help="number of buckets, 8-12")
    setting_argument(
        suggest,
        "--slo",
        setting="metrics_slo",
        help="latency SLO in seconds, with --samples: a bound lands on it",
        fallback=None,
    )
    suggest.add_argument("--quantile", type=float, default=0.99)
    suggest.add_argument("--format", choices=("text", "json"), default="text")
    suggest.set_defaults(func=_buckets_suggest)

    _, psub = command(subparsers, "p99", help="P99 attribution")
    report = psub.add_parser(
        "report",
        help="rank label values by their share of the slow tail",
        description="Estimate the quantile from a histogram, take the bucket bound at or above "
        "it as the slow threshold, and rank each value of each --by label by its share of the "
        "slow requests against its share of traffic.",
    )
    source = report.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", metavar="URL", help="Prometheus base URL")
    source.add_argument("--scrape", metavar="URL", help="a /metrics URL")
    source.add_argument("--file", metavar="EXPOSITION", help="an exposition file, or -")
    report.add_argument(
        "--metric",
        default=names.DURATION,
        help=f"histogram to read (default {names.DURATION}: requests, each once; "
        f'{names.FUNCTION_DURATION}: internal @traced calls); NAME{{operation="X"}} '
        "is the same as --operation X",
    )
    report.add_argument(
        "--operation",
        action="append",
        default=[],
        metavar="NAME",
        help="scope the report to this operation (repeatable), e.g. 'POST /v1/payments'",
    )
    setting_argument(
        report,
        "--by",
        setting="metrics_labels",
        help="comma-separated labels, e.g. operation,channel; from the variable: operation "
        "and the extra RED labels it names",
        parse_flag=False,
        from_setting=lambda labels: ",".join(dict.fromkeys(("operation", *labels))),
        fallback_text="operation,channel",
    )
    report.add_argument("--window", default="5m", help="PromQL range with --prometheus (5m)")
    report.add_argument("--quantile", type=float, default=0.99)
    report.add_argument(
        "--timeout", type=_seconds, default=10.0, help="seconds per HTTP request (10)"
    )
    report.add_argument("--format", choices=("text", "json"), default="text")
    report.set_defaults(func=_p99_report)

    _, rsub = command(subparsers, "rules", help="Prometheus rules")
    build = rsub.add_parser(
        "build",
        help="write recording and alerting rules",
        description="Write Prometheus recording rules (P99 per operation, rates, slow ratios) "
        "and alerts (SLO burn, unregistered error codes, metric overflow, internal errors).",
    )
    setting_argument(build, "--slo", setting="metrics_slo", help="latency SLO, a bucket bound")
    build.add_argument("--objective", type=float, default=0.99, help="share faster than the SLO")
    build.add_argument("--quantile", type=float, default=0.99)
    build.add_argument("--metric", default=names.DURATION)
    build.add_argument("--by", default="service,operation", help="aggregation labels")
    _buckets_argument(build)
    build.add_argument("--output", "-o", default="-", help="file to write (default stdout)")
    build.set_defaults(func=_rules_build)

    _, dsub = command(subparsers, "dashboards", help="Grafana dashboards")
    dbuild = dsub.add_parser(
        "build",
        help="write the Grafana dashboards (service overview, P99 attribution, pipeline health)",
        description="Write the three Grafana 10+ dashboards, built with grafana-foundation-sdk, "
        "as JSON files to import. Datasource, service and SLO are dashboard variables; --slo "
        "sets the SLO variable's default.",
    )
    dbuild.add_argument("--output-dir", default="dashboards")
    setting_argument(dbuild, "--slo", setting="metrics_slo", help="default SLO, a bucket bound")
    _buckets_argument(dbuild)
    dbuild.add_argument("--objective", type=float, default=0.99, help="share faster than the SLO")
    dbuild.add_argument("--metric", default=names.DURATION)
    dbuild.set_defaults(func=_dashboards_build)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _buckets_argument(parser: argparse.ArgumentParser) -> None:
    setting_argument(
        parser,
        "--buckets",
        setting="metrics_buckets",
        help="comma-separated bucket bounds of the service, to check the SLO",
        fallback_text="the default layout for $OTELFIN_METRICS_SLO and $OTELFIN_METRICS_TIMEOUTS",
    )


class _Unreadable(Exception):
    """An input that cannot be read: its message is the usage error to print (exit 2)."""


def _read(path: str) -> str:
    """The text of ``path`` (``-``: stdin); unreadable or binary input is :class:`_Unreadable`."""
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _Unreadable(f"cannot read {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise _Unreadable(f"cannot read {path}: {exc.strerror or exc}") from None


def _buckets_suggest(args: argparse.Namespace) -> int:
    from otelfin.metrics import suggest_buckets

    if args.samples is None:
        return _buckets_suggest_by(args)
    try:
        text = _read(args.samples)
    except _Unreadable as exc:
        return usage_error(str(exc))
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            samples.append(float(line))
        except ValueError:
            shown = scrub_text(line)[:40]  # mask, then cut
            return usage_error(f"{args.samples}:{number}: {shown!r} is not a number of seconds")
    try:
        design = suggest_buckets(samples, args.count, slo=args.slo, quantile=args.quantile)
    except ValueError as exc:
        return usage_error(f"{args.samples}: {exc}")
    if args.format == "json":
        print(json_text(design.as_dict(), indent=2))
        return 0
    acc = design.window_accuracy
    print("buckets = [" + ", ".join(f"{b:g}" for b in design.buckets) + "]")
    print(
        f"P{design.quantile * 100:g} of {design.samples} samples: {design.p99_seconds:.6g}s; "
        f"histogram_quantile estimates {design.estimated_p99_seconds:.6g}s"
    )
    print(f"expected error on held-out data: {design.held_out_error:.2%}")
    print(
        f"{acc.window}-sample windows: error p95 {acc.error_p95:.2%} vs the window's own "
        f"sampling noise {acc.noise_p95:.2%} ({acc.ratio:.2f}x)"
    )
    print(
        f"prometheus_client default buckets: error {design.default_error:.2%}, window p95 "
        f"{design.default_window_accuracy.error_p95:.2%}"
    )
    for warning in design.warnings:
        print(f"warning: {warning}")
    return 0


def _buckets_suggest_by(args: argparse.Namespace) -> int:
    """``buckets suggest --file/--prometheus``: one design per value of ``--by``."""
    from otelfin.tools import metrics as offline

    if args.slo is not None and "slo" not in args.from_environment:
        return usage_error(
            "--slo goes with --samples; per operation the output suggests an SLO each"
        )
    try:
        if args.prometheus:
            series = offline.series_from_prometheus(
                args.prometheus, args.metric, args.by, window=args.window, timeout=args.timeout
            )
        else:
            try:
                text = _read(args.file)
            except _Unreadable as exc:
                return usage_error(str(exc))
            series = offline.series_from_text(text, args.metric)
        designs = offline.suggest_by_label(
            series, args.by, count=args.count, quantile=args.quantile
        )
    except (offline.ReportError, ValueError) as exc:
        return usage_error(scrub_text(f"{args.prometheus or args.file}: {exc}"))
    setting, left_out = offline.slos_setting(designs)
    if args.format == "json":
        doc = {
            "metric": args.metric,
            "by": args.by,
            "inf_factor": offline.INF_FACTOR,
            "operations": [d.as_dict() for d in designs],
            "setting": setting,
            "left_out_of_setting": list(left_out),
        }
        print(json_text(doc, indent=2))
        return 0
    print(
        f"{args.metric} by {args.by}: designed from bucket counts (each bucket's requests "
        "spread uniformly inside it), so no finer than the source buckets"
    )
    for d in designs:
        print()
        if d.design is None:
            print(f"{args.by}={d.value!r}: skipped: {d.skipped}")
            continue
        print(f"{args.by}={d.value!r} ({d.requests:,.0f} requests)")
        print("  buckets = [" + ", ".join(f"{b:g}" for b in d.design.buckets) + "]")
        print(
            f"  P{d.design.quantile * 100:g} ~ {d.design.p99_seconds:.4g}s; "
            f"SLO hint {d.slo_hint:g}s"
        )
        if d.inf_placed_at is not None:
            print(
                f"  limit: +Inf requests were placed at {d.inf_placed_at:g}s "
                f"({offline.INF_FACTOR:g}x the top bound); the real ones may be slower"
            )
    print()
    for value in left_out:
        print(f"note: {args.by}={value!r} cannot be written in the setting; set it in code")
    print(setting)
    return 0


_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def _metric_and_operations(metric: str, operations: list[str]) -> tuple[str, list[str]]:
    """``--metric NAME{operation="X"}`` as ``NAME`` and ``--operation X`` (ValueError else)."""
    found = _SELECTOR.fullmatch(metric.strip())
    if found is None:
        if "{" in metric:
            raise ValueError(f'--metric {metric!r}: expected NAME or NAME{{operation="..."}}')
        return metric, operations
    name, body = found.groups()
    extra = []
    pos = 0
    while pos < len(body):
        matched = _MATCHER.match(body, pos)
        if matched is None or matched.end() == pos:
            raise ValueError(f"--metric {metric!r}: cannot read the matchers {body[pos:]!r}")
        label, value = matched.groups()
        if label != "operation":
            raise ValueError(
                f'--metric {metric!r}: only operation="..." can scope the report '
                f"(not {label}); use --by to break it down by {label}"
            )
        extra.append(json.loads(f'"{value}"'))
        pos = matched.end()
    return name, [*operations, *extra]


def _p99_report(args: argparse.Namespace) -> int:
    from otelfin.tools import metrics as offline

    by = [label.strip() for label in args.by.split(",") if label.strip()]
    try:
        args.metric, operations = _metric_and_operations(args.metric, list(args.operation))
    except ValueError as exc:
        return usage_error(str(exc))
    if any(not op.strip() for op in operations):
        return usage_error("--operation needs a name, e.g. --operation 'POST /v1/payments'")
    try:
        if args.prometheus:
            report = offline.from_prometheus(
                args.prometheus,
                args.metric,
                by,
                quantile=args.quantile,
                window=args.window,
                timeout=args.timeout,
                operations=operations,
            )
        else:
            if args.scrape:
                series = offline.scrape(args.scrape, args.metric, timeout=args.timeout)
                source = args.scrape
            else:
                try:
                    text = _read(args.file)
                except _Unreadable as exc:
                    return usage_error(str(exc))
                series = offline.series_from_text(text, args.metric)
                source = args.file
            report = offline.attribute(
                series,
                by,
                metric=args.metric,
                quantile=args.quantile,
                window=args.window,
                source=source,
                operations=operations,
            )
    except offline.ReportError as exc:
        return usage_error(str(exc))
    if args.format == "json":
        print(json_text(report.as_dict(), indent=2))
    else:
        print(offline.format_text(report))
    return 0


def _service_bounds(args: argparse.Namespace) -> tuple[list[float], str]:
    """The bucket bounds the service's histograms have, and how they were found.

    ``--buckets`` (or ``OTELFIN_METRICS_BUCKETS``) when given, else the default layout
    ``configure()`` builds from the same settings it reads: ``OTELFIN_METRICS_SLO``,
    ``OTELFIN_METRICS_OPERATION_SLOS``, ``OTELFIN_METRICS_P99`` and ``OTELFIN_METRICS_TIMEOUTS``
    (their defaults when unset),
    not from ``--slo``, which is what is being checked.
    """
    from otelfin.metrics import default_buckets

    if args.buckets:
        return [float(b) for b in args.buckets], "--buckets"

    slo = setting_value("metrics_slo")
    bounds = default_buckets(
        slo,
        setting_value("metrics_operation_slos"),
        p99=setting_value("metrics_p99"),
        timeouts=setting_value("metrics_timeouts"),
    )
    return list(bounds), f"the default layout for metrics_slo={slo:g}"


def _rules_build(args: argparse.Namespace) -> int:
    from otelfin.tools.metrics import build_rules, rules_yaml

    try:
        buckets, where = _service_bounds(args)
        rules = build_rules(
            slo=args.slo,
            objective=args.objective,
            quantile=args.quantile,
            metric=args.metric,
            by=[b.strip() for b in args.by.split(",") if b.strip()],
            buckets=buckets,
            bounds_from=where,
        )
    except ValueError as exc:
        return usage_error(str(exc))
    text = rules_yaml(rules)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            return usage_error(f"cannot write {args.output}: {exc.strerror or exc}")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _dashboards_build(args: argparse.Namespace) -> int:
    from otelfin.tools.metrics import write_dashboards

    try:
        buckets, where = _service_bounds(args)
        written = write_dashboards(
            Path(args.output_dir),
            slo=args.slo,
            metric=args.metric,
            objective=args.objective,
            buckets=buckets,
            bounds_from=where,
        )
    except (OSError, ValueError, ImportError) as exc:
        return usage_error(str(exc))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
