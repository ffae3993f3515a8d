"""Instructions per request for ``e2e_overhead.py``'s app, driven in-process: a figure noise does
not move.

On a shared 2-core VM the wall-clock study (``e2e_overhead.py``) spreads by 15-40% from one
repetition to the next. This script counts what each variant costs instead of timing it: the
same FastAPI app (``e2e_overhead.build_app``: the same spans, metrics, log lines and OTLP
exporter sending to the same decoding sink) is called as an ASGI app from an asyncio loop, with
no sockets on the server side (16 requests in flight, a new ``traceparent`` each, 30 ms pauses
between groups of 50 so the export thread keeps up and nothing is dropped). Each variant runs
twice under ``valgrind --tool=callgrind`` (instruction counts, all threads), with ``--small``
and ``--large`` measured requests after the same warm-up; instructions per request are
``(total(large) - total(small)) / (large - small)``, so start-up and warm-up cancel. Printed:
per variant, instructions per request and the added instructions over ``none``, and the ratio of
otelfin's added instructions to OpenTelemetry by hand's (span-matched).

The cyclic garbage collector is part of what instrumentation costs (every variant's spans and
in-flight requests survive into the old generation and bring its full collections nearer), and
it is the one part that comes in lumps: in this app a full collection, a walk over the whole
heap (~70,000 objects, ~35M instructions), happens about once in 500 requests. Each measured
window therefore starts from a collected heap (``gc.collect()`` after the warm-up), and the
default window is 1,000 requests (``--large 1020``): with the earlier 200, one full collection
more or less in a window moved a variant by ~0.17M instructions a request, about as much as
the whole difference being measured. ``--no-gc`` runs every variant with the collector off as
well and prints both, so the instrumentation's own instructions (deterministic) and its
collector share are shown apart.

Instructions are not time (cache misses, syscalls and the GIL hand-overs are not weighed), so
this complements the wall-clock study, it does not replace it. Without valgrind (or with
``--quick``, as ``make bench-quick`` runs it) it reports process CPU time per request instead,
one run per variant, and says so.

``--components`` prices the parts of the request path apart, for OpenTelemetry by hand and
otelfin, with the collector off (the instrumentation's own instructions, all threads): each
variant also runs without its two function spans, without its two log lines, and without both
(``E2E_WITHOUT`` in ``e2e_overhead.py``); ``none`` runs without its log lines. The parts: the
request's own path (server span, propagation, request metrics: the variant without spans and
logs over ``none`` without logs), the two function spans, the two log lines, and what is left.

Run: ``python benchmarks/e2e_instructions.py [--variants none,otel,otelfin] [--no-gc] [--quick]
[--components]``
(valgrind: ``apt-get install valgrind``; a run of three variants takes ~25 minutes, twice that
with ``--no-gc``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def drive(variant: str, requests: int, warmup: int, sink: str, collector: bool = True) -> None:
    """Build the app for ``variant`` and serve ``warmup`` then ``requests`` requests in-process;
    print the CPU seconds the measured part took (all threads, export drained). ``collector``
    False runs it all with the cyclic garbage collector off."""
    if not collector:
        gc.disable()
    os.environ.update(E2E_VARIANT=variant, E2E_NAME=variant, E2E_SINK=sink)
    os.environ.setdefault("OTEL_SERVICE_NAME", "payment-api")
    sys.path.insert(0, HERE)
    import e2e_overhead

    app = e2e_overhead.build_app()
    body = e2e_overhead.BODY

    async def one(i: int) -> None:
        parent = f"00-{random.getrandbits(128) or 1:032x}-{random.getrandbits(64) or 1:016x}-01"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/pay",
            "raw_path": b"/pay",
            "root_path": "",
            "query_string": b"",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 40000 + i % 1000),
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"traceparent", parent.encode()),
            ],
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        statuses: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [200]:
            raise SystemExit(f"{variant}: request {i} answered {statuses}")

    async def batch(count: int) -> None:
        gate = asyncio.Semaphore(16)

        async def run(i: int) -> None:
            async with gate:
                await one(i)

        for start in range(0, count, 50):
            await asyncio.gather(*(run(i) for i in range(start, min(count, start + 50))))
            await asyncio.sleep(0.03)  # the export thread keeps up: no queue overflow

    async def main() -> None:
        await batch(warmup)
        await asyncio.sleep(6)  # the first export (and the exporter's build) happens here
        gc.collect()  # every window starts from a collected heap (see the module docstring)
        cpu = time.process_time()
        await batch(requests)
        await asyncio.sleep(6.5)  # past the batch processor's 5 s schedule: all exported
        print(json.dumps({"cpu_s": time.process_time() - cpu}), file=sys.stderr)

    asyncio.run(main())


def _run(
    variant: str,
    requests: int,
    warmup: int,
    sink: str,
    valgrind: str | None,
    collector: bool = True,
) -> float:
    """Instructions (under valgrind) or CPU seconds of one driven run."""
    app, _, without = variant.partition("-without-")
    command = [sys.executable, os.path.abspath(__file__), "--drive", app, str(requests)]
    if without:
        command += ["--without", without.replace("+", ",")]
    command += ["--warmup", str(warmup), "--sink", sink]
    if not collector:
        command.append("--no-gc")
    with tempfile.TemporaryDirectory() as tmp:
        if valgrind:
            out = os.path.join(tmp, "callgrind.out")
            command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", *command]
        done = subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=3600
        )
    if done.returncode != 0:
        raise SystemExit(f"{variant}: the driven run failed:\n{done.stderr[-2000:]}")
    if valgrind:
        found = re.search(r"Collected : (\d+)", done.stderr)
        if not found:
            raise SystemExit(f"{variant}: no instruction count in valgrind's output")
        return float(found.group(1))
    lines = [x for x in done.stderr.splitlines() if x.startswith('{"cpu_s"')]
    if not lines:
        raise SystemExit(f"{variant}: the driven run printed no CPU figure")
    return float(json.loads(lines[-1])["cpu_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="none,otel,otelfin")
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--large", type=int, default=1020)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="CPU time, one short run each")
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="also measure every variant with the cyclic garbage collector off",
    )
    parser.add_argument(
        "--components",
        action="store_true",
        help="price the request path, the function spans and the log lines apart (collector off)",
    )
    parser.add_argument("--drive", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--without", default="", help=argparse.SUPPRESS)
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        if args.without:
            os.environ["E2E_WITHOUT"] = args.without
        drive(args.drive[0], int(args.drive[1]), args.warmup, args.sink, not args.no_gc)
        return

    sys.path.insert(0, HERE)
    import e2e_overhead

    variants = [v for v in args.variants.split(",") if v]
    valgrind = None if args.quick else shutil.which("valgrind")
    sink_process, sink, _ = e2e_overhead.start_sink()
    modes = [True, False] if args.no_gc and valgrind else [True]
    if args.components:
        try:
            _components(args, sink, valgrind)
        finally:
            sink_process.terminate()
            sink_process.wait(timeout=10)
        return
    try:
        for collector in modes:
            label = "" if collector else " (cyclic collector off)"
            if valgrind:
                unit = "instructions"
                per_request: dict[str, float] = {}
                for variant in variants:
                    small = _run(variant, args.small, args.warmup, sink, valgrind, collector)
                    large = _run(variant, args.large, args.warmup, sink, valgrind, collector)
                    per_request[variant] = (large - small) / (args.large - args.small)
                    print(f"{variant:10s} {per_request[variant] / 1e3:9,.0f}k instructions "
                          f"a request{label}")  # fmt: skip
            else:
                unit = "CPU us (valgrind not used: one timed run each, noisy)"
                count = 200 if args.quick else 2000
                warmup = 50 if args.quick else args.warmup
                per_request = {}
                for variant in variants:
                    cpu = _run(variant, count, warmup, sink, None)
                    per_request[variant] = cpu / count * 1e6
                    print(f"{variant:10s} {per_request[variant]:9,.0f} CPU us a request")
            _report(per_request, unit, label, scale=1e3 if valgrind else 1.0)
    finally:
        sink_process.terminate()
        sink_process.wait(timeout=10)


def _components(args: argparse.Namespace, sink: str, valgrind: str | None) -> None:
    """Each part of the request path apart, for OpenTelemetry by hand and otelfin."""
    count = 200 if args.quick else 2000
    runs = ["none", "none-without-logs"]
    for variant in ("otel", "otelfin"):
        runs += [variant, f"{variant}-without-spans", f"{variant}-without-logs"]
        runs.append(f"{variant}-without-spans+logs")
    cost: dict[str, float] = {}
    for run in runs:
        if valgrind:
            small = _run(run, args.small, args.warmup, sink, valgrind, collector=False)
            large = _run(run, args.large, args.warmup, sink, valgrind, collector=False)
            cost[run] = (large - small) / (args.large - args.small) / 1e3
        else:
            warmup = 50 if args.quick else args.warmup
            cost[run] = _run(run, count, warmup, sink, None, collector=False) / count * 1e6
        print(f"{run:28s} {cost[run]:9,.0f}", flush=True)
    unit = "k instructions" if valgrind else "CPU us (one timed run each, noisy)"
    print(f"\nparts of the request path, {unit} a request, collector off\n")
    print("| part | OpenTelemetry by hand | otelfin | otelfin / by hand |")
    print("|---|---|---|---|")
    parts: dict[str, dict[str, float]] = {}
    plain_logs = cost["none"] - cost["none-without-logs"]  # none's two structlog lines
    for variant in ("otel", "otelfin"):
        full = cost[variant]
        added = full - cost["none"]
        spans = full - cost[f"{variant}-without-spans"]
        logs = full - cost[f"{variant}-without-logs"] - plain_logs
        path = cost[f"{variant}-without-spans+logs"] - cost["none-without-logs"]
        parts[variant] = {
            "request path (server span, propagation, request metrics)": path,
            "two function spans (and their metrics)": spans,
            "two log lines, over none's plain structlog lines": logs,
            "the rest (interactions)": added - path - spans - logs,
            "added over none": added,
        }
    for part in parts["otel"]:
        by_hand, ours = parts["otel"][part], parts["otelfin"][part]
        share = f"{ours / by_hand:.2f}" if by_hand > 0 else "-"
        print(f"| {part} | {by_hand:,.0f} | {ours:,.0f} | {share} |")


def _report(per_request: dict[str, float], unit: str, label: str, scale: float) -> None:
    """Added cost over ``none`` per variant, and otelfin's ratio to OpenTelemetry by hand's."""
    base = per_request.get("none")
    if base is None:
        return
    added = {v: x - base for v, x in per_request.items() if v != "none"}
    suffix = "k" if scale != 1.0 else ""
    for variant, value in added.items():
        print(f"added over none, {variant}: {value / scale:,.0f}{suffix} ({unit}){label}")
    if "otel" in added and "otelfin" in added and added["otel"] > 0:
        print(f"otelfin added / OpenTelemetry by hand (span-matched){label}: "
              f"{added['otelfin'] / added['otel']:.2f}  [target <= 0.70]")  # fmt: skip


if __name__ == "__main__":
    main()
