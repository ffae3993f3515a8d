"""Start-up cost of otelfin in a FastAPI service: ``import otelfin`` and ``configure()``.

Each measurement is a fresh interpreter that imports FastAPI first (the service's own start-up,
not counted), then times, with ``time.perf_counter``:

* ``import otelfin``                                              (target <= 50 ms)
* ``otelfin.configure(service_name=...)`` with OTLP to a local endpoint, the defaults a FastAPI
  service gets (the HTTP exporter, logging, metrics, transports)   (target <= 100 ms)
* the same ``configure()`` with ``OTEL_TRACES_EXPORTER=none``, for reference.

Bytecode caches are written by a first, discarded run (a deployed service has them; without
them every otelfin module is compiled from source). Runs are interleaved; medians with
[min-max] and the modules each step adds. One more run under
``python -X importtime`` lists the modules that cost most in each step (self time, which is less
sensitive to a busy machine than the totals). Run: ``python benchmarks/bench_startup.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import fastapi  # the service's own imports come first
n0 = len(sys.modules)
t0 = time.perf_counter()
import otelfin
t1 = time.perf_counter()
n1 = len(sys.modules)
print("--otelfin-import-done--", file=sys.stderr, flush=True)
otelfin.configure(service_name="payment-api")
t2 = time.perf_counter()
n2 = len(sys.modules)
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "configure_ms": (t2 - t1) * 1e3,
                  "import_modules": n1 - n0, "configure_modules": n2 - n1}))
"""

MARK = "--otelfin-import-done--"


def _env(exporter: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "OTELFIN_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:4318"  # nothing is sent at start-up
    if exporter != "otlp":
        env["OTEL_TRACES_EXPORTER"] = exporter
    return env


def _run(exporter: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=_env(exporter),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _importtime(exporter: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(self us, module) for the modules ``import otelfin`` and ``configure()`` load."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CHILD],
        env=_env(exporter),
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("| fastapi"))
    mark = lines.index(MARK)
    phases: tuple[list[tuple[int, str]], list[tuple[int, str]]] = ([], [])
    for i, line in enumerate(lines[start + 1 :], start + 1):
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:") :].split("|", 2)
        phases[0 if i < mark else 1].append((int(self_us), name.strip()))
    return phases


def show(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument(
        "--quick", action="store_true", help="a few short rounds: checks the script runs (CI)"
    )
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs
    results: dict[str, list[dict[str, float]]] = {"otlp": [], "none": []}
    for exporter in results:  # warm-up: writes the bytecode caches a deployed service has
        _run(exporter)
    for _ in range(runs):
        for exporter in results:
            results[exporter].append(_run(exporter))
    otlp, none = results["otlp"], results["none"]
    print(
        f"python {sys.version.split()[0]}, {runs} fresh interpreters each, FastAPI imported first"
    )
    print("ms, median [min-max]; modules added\n")
    print("| step | ms | modules | target |")
    print("|---|---|---|---|")
    imp = [r["import_ms"] for r in otlp + none]
    conf = [r["configure_ms"] for r in otlp]
    print(f"| import otelfin | {show(imp)} | {otlp[0]['import_modules']:.0f} | <= 50 ms |")
    print(
        f"| configure(), OTLP/HTTP exporter | {show(conf)} | "
        f"{otlp[0]['configure_modules']:.0f} | <= 100 ms |"
    )
    print(
        f"| configure(), OTEL_TRACES_EXPORTER=none | "
        f"{show([r['configure_ms'] for r in none])} | {none[0]['configure_modules']:.0f} | - |"
    )
    imp_ok = statistics.median(imp) <= 50
    conf_ok = statistics.median(conf) <= 100
    print(
        f"\nimport otelfin: {'met' if imp_ok else 'MISSED'}; "
        f"configure(): {'met' if conf_ok else 'MISSED'}"
    )
    first, second = _importtime("otlp")
    for title, phase in (("import otelfin", first), ("configure(), OTLP", second)):
        total = sum(us for us, _ in phase) / 1000
        top = sorted(phase, reverse=True)[:8]
        print(f"\n-X importtime, {title}: {len(phase)} modules, {total:.0f} ms self time; top:")
        for us, name in top:
            print(f"  {us / 1000:6.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
