"""``otelfin logs validate`` throughput against orjson + a compiled fastjsonschema check.

Generates a JSONL file of realistic otelfin log lines (info lines inside spans, error lines
with registered codes, masked card numbers, nested fields, a stack trace now and then), then
measures, in one run:

* baseline: ``orjson.loads`` + ``fastjsonschema.compile(schema.json)`` per line, reading the
  file line by line, no catalogue and no card-number check;
* otelfin, one core: the validator core (``validate_path``, everything checked);
* ``otelfin logs validate --jobs 1`` and ``--jobs 2`` as subprocesses (start-up included), with
  their peak resident memory;
* ``otelfin logs filter``: its core (``filter_lines``, output to /dev/null) and the command
  (stdout to /dev/null), which check every line the same way and also write it out.

Targets (issue 5): one core >= 1.5x the baseline's lines/s; --jobs 2 >= 1.7x --jobs 1.
Run: python benchmarks/bench_validate.py [--mb 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fastjsonschema
import orjson

from otelfin.catalogue import default_catalogue
from otelfin.logging import filter_lines, schema
from otelfin.tools.logs._validate import validate_path

_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
_SPAN = "00f067aa0ba902b7"


def _lines() -> list[bytes]:
    base = {
        "timestamp": "2026-11-25T07:30:41.123456+00:00",
        "level": "info",
        "service_name": "payment-gateway",
        "event": "payment_authorised",
        "trace_id": _TRACE,
        "span_id": _SPAN,
        "amount": "99.99",
        "currency": "EUR",
        "merchant_id": "m-1234",
        "order_id": "ord-7f3a9c",
    }
    error = dict(base, level="error", event="payment_declined", error_code="PAY-012")
    card = dict(base, event="card_tokenised", card="XXXXXXXXXXXX1111", bin="411111")
    nested = dict(base, event="risk_scored", risk={"score": 0.12, "rules": ["velocity", "geo"]})
    plain = {k: v for k, v in base.items() if k not in ("trace_id", "span_id")}
    # A digit-dense reference: PAN-shaped (14 digits with a dash) but Luhn-invalid, so the
    # card-number check has to run Luhn on it. A quarter of the lines carry one.
    ref = dict(base, order_id="ord-20261125-000042")
    trace = dict(
        error,
        error_code="DB-002",
        exception='Traceback (most recent call last):\n  File "app.py", line 12, in pay\n'
        "TimeoutError: query timed out after 2.0s",
    )
    shapes = [base, ref, base, base, error, card, ref, nested] + [plain, base, ref, base] * 1
    shapes += [base, base, ref, trace]
    return [orjson.dumps(s) + b"\n" for s in shapes]


def _write(path: Path, megabytes: int) -> int:
    block = b"".join(_lines()) * 256
    count_per_block = len(_lines()) * 256
    target = megabytes << 20
    written = lines = 0
    with path.open("wb") as out:
        while written < target:
            out.write(block)
            written += len(block)
            lines += count_per_block
        out.flush()
        # Written pages still being flushed to disk would steal CPU and I/O from the timed
        # runs: sync them, then read the file once so every run starts from the page cache.
        os.fsync(out.fileno())
    with path.open("rb") as handle:
        while handle.read(1 << 24):
            pass
    return lines


def _baseline(path: Path) -> float:
    validator = fastjsonschema.compile(schema())
    loads = orjson.loads
    bad = 0
    start = time.perf_counter()
    with path.open("rb") as handle:
        for line in handle:
            try:
                validator(loads(line))
            except (fastjsonschema.JsonSchemaException, orjson.JSONDecodeError):
                bad += 1
    return time.perf_counter() - start


def _core(path: Path) -> tuple[float, int]:
    codes = frozenset(default_catalogue())
    start = time.perf_counter()
    report = validate_path(str(path), codes)
    return time.perf_counter() - start, report.bad_lines


def _filter_core(path: Path) -> float:
    """``filter_lines`` (the core of ``otelfin logs filter``) writing the lines to /dev/null."""
    codes = frozenset(default_catalogue())
    with open(os.devnull, "wb") as out, open(os.devnull, "wb") as dead:
        start = time.perf_counter()
        report = filter_lines([str(path)], out, dead, codes=codes)
        elapsed = time.perf_counter() - start
    if report.dead_lettered or report.passed != report.lines:
        raise SystemExit(f"filter dead-lettered {report.dead_lettered} lines")
    return elapsed


def _filter_cli(path: Path) -> float:
    start = time.perf_counter()
    with open(os.devnull, "wb") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "otelfin.cli", "logs", "filter", str(path)],
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"logs filter exited {proc.returncode}: {proc.stderr[-500:]!r}")
    return time.perf_counter() - start


def _cli(path: Path, jobs: int) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "otelfin.cli", "logs", "validate", "--jobs", str(jobs), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"validate --jobs {jobs} exited {proc.returncode}: {proc.stderr[-500:]}")
    return elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="size of the generated file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="a few short rounds: checks the script runs (CI)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.mb = 1, 4

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "logs.jsonl"
        lines = _write(path, args.mb)
        size_mb = path.stat().st_size / (1 << 20)
        base, core, cli1, cli2, fcore, fcli = [], [], [], [], [], []
        rss2 = 0
        for _ in range(args.rounds):
            base.append(_baseline(path))
            elapsed, bad = _core(path)
            if bad:
                raise SystemExit(f"the generated file has {bad} bad lines")
            core.append(elapsed)
            elapsed, _ = _cli(path, 1)
            cli1.append(elapsed)
            elapsed, rss2 = _cli(path, 2)
            cli2.append(elapsed)
            fcore.append(_filter_core(path))
            fcli.append(_filter_cli(path))

    def rate(times: list[float]) -> float:
        return lines / statistics.median(times)

    runs = {
        "orjson + fastjsonschema (baseline)": base,
        "otelfin validator core, 1 core": core,
        "otelfin logs validate --jobs 1": cli1,
        "otelfin logs validate --jobs 2": cli2,
        "otelfin logs filter core (to /dev/null)": fcore,
        "otelfin logs filter (CLI, stdout)": fcli,
    }
    figures = {name: rate(times) for name, times in runs.items()}
    print(f"{lines} lines, {size_mb:.0f} MiB, median of {args.rounds} rounds (lines/s; range)")
    for name, value in figures.items():
        times = runs[name]
        spread = f"{lines / max(times):,.0f}..{lines / min(times):,.0f}"
        print(f"  {name:<36} {value:>12,.0f}   ({spread})")
    one = figures["otelfin validator core, 1 core"] / figures["orjson + fastjsonschema (baseline)"]
    scale = figures["otelfin logs validate --jobs 2"] / figures["otelfin logs validate --jobs 1"]
    ratio = (
        figures["otelfin logs filter core (to /dev/null)"]
        / figures["otelfin validator core, 1 core"]
    )
    print(f"filter core / validator core: {ratio:.2f} (target: the same class, >= 0.70)")
    print(f"one core / baseline: {one:.2f} (target >= 1.50) {'MET' if one >= 1.5 else 'MISSED'}")
    print(
        f"--jobs 2 / --jobs 1: {scale:.2f} (target >= 1.70) {'MET' if scale >= 1.7 else 'MISSED'}"
    )
    print(f"peak RSS of the CLI runs: {rss2 / 1024:.0f} MiB (file {size_mb:.0f} MiB)")
    print(json.dumps({"cpu_count": os.cpu_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
