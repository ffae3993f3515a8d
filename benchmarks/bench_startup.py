"""Start-up cost of otelfin: ``import otelfin`` and ``configure()``, in fresh interpreters.

Each measurement is a fresh interpreter timing, with ``time.perf_counter``:

* ``import otelfin`` in a bare interpreter (nothing imported before it)   (target <= 50 ms)
* ``otelfin.configure(service_name=...)`` in a FastAPI service: FastAPI is imported first (the
  service's own start-up, not counted), then otelfin with the defaults such a service gets (OTLP
  over HTTP to a local endpoint, logging, metrics, transports)            (target <= 100 ms)
* the same ``configure()`` with ``OTEL_TRACES_EXPORTER=none``, and in a bare interpreter;
* ``configure()`` together with the 150,000 objects the service allocates next: garbage
  collection that ``configure()`` only postponed would land there, so this row keeps a
  start-up figure honest about the collector (see ``otelfin._burst``);
* what ``configure()`` leaves to the first export: building the OTLP exporter (protobuf, the
  OTLP encoder, ``requests``), which the batch processor's thread pays once, off start-up.

Bytecode caches are written by a first, discarded run (a deployed service has them; without
them every otelfin module is compiled from source). Runs are interleaved; medians with
[min-max] and the modules each step adds. ``--baseline DIR`` runs every measurement also
against another checkout (``git worktree add DIR <commit>``; put first on ``PYTHONPATH``),
interleaved in the same run, for before/after figures. One more run under
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
import tempfile

CHILD = r"""
import json, sys, time
if sys.argv[1] == "fastapi":
    import fastapi  # the service's own imports come first
n0 = len(sys.modules)
c0, t0 = time.process_time(), time.perf_counter()
import otelfin
c1, t1 = time.process_time(), time.perf_counter()
n1 = len(sys.modules)
print("--otelfin-import-done--", file=sys.stderr, flush=True)
otelfin.configure(service_name="payment-api")
c2, t2 = time.process_time(), time.perf_counter()
n2 = len(sys.modules)
print("--otelfin-configure-done--", file=sys.stderr, flush=True)
# The service goes on allocating: a collection configure() deferred (or made cheaper) shows
# here, so a figure bought by moving garbage collection out of configure() cannot hide.
kept = [{"i": [i]} for i in range(150_000)]
c5, t5 = time.process_time(), time.perf_counter()
# What the first export does before sending: build the OTLP exporter (a checkout that builds
# it in configure() has no build step: 0).
from otelfin import _config
processor = _config._state.processor
exporter = getattr(getattr(processor, "delegate", None), "exporter", None)
build = getattr(exporter, "build", None)
c3, t3 = time.process_time(), time.perf_counter()
if build is not None:
    build()
c4, t4 = time.process_time(), time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "configure_ms": (t2 - t1) * 1e3,
                  "next_ms": (t5 - t1) * 1e3, "next_cpu": (c5 - c1) * 1e3, "next_modules": 0,
                  "build_ms": (t4 - t3) * 1e3, "import_cpu": (c1 - c0) * 1e3,
                  "configure_cpu": (c2 - c1) * 1e3, "build_cpu": (c4 - c3) * 1e3,
                  "import_modules": n1 - n0,
                  "configure_modules": n2 - n1, "build_modules": len(sys.modules) - n2}))
"""

MARKS = ("--otelfin-import-done--", "--otelfin-configure-done--")

#: (name, what the service imported first, OTEL_TRACES_EXPORTER)
VARIANTS = (
    ("fastapi-otlp", "fastapi", "otlp"),
    ("fastapi-none", "fastapi", "none"),
    ("bare-otlp", "bare", "otlp"),
)


def _env(exporter: str, tree: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "OTELFIN_")) and k not in ("PYTHONDONTWRITEBYTECODE",)
    }
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:4318"  # nothing is sent at start-up
    if exporter != "otlp":
        env["OTEL_TRACES_EXPORTER"] = exporter
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
    return env


def _run(
    first: str, exporter: str, tree: str | None, *flags: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", CHILD, first],
        env=_env(exporter, tree),
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),  # not the checkout: ``-c`` puts the working directory first
    )


def _measure(first: str, exporter: str, tree: str | None) -> dict[str, float]:
    out = _run(first, exporter, tree).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _importtime(tree: str | None) -> tuple[list[tuple[int, str]], ...]:
    """(self us, module) of the modules ``import otelfin``, ``configure()`` and the exporter
    build load, in a FastAPI service with OTLP."""
    lines = _run("fastapi", "otlp", tree, "-X", "importtime").stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("| fastapi"))
    marks = [lines.index(mark) for mark in MARKS]
    phases: tuple[list[tuple[int, str]], ...] = ([], [], [])
    for i, line in enumerate(lines[start + 1 :], start + 1):
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:") :].split("|", 2)
        phases[sum(i > m for m in marks)].append((int(self_us), name.strip()))
    return phases


def show(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} [{min(values):.0f}-{max(values):.0f}]"


#: (step, variant, measure, target) for the table.
STEPS = (
    ("import otelfin, bare interpreter", ("bare-otlp",), "import", "<= 50 ms"),
    ("import otelfin, after FastAPI", ("fastapi-otlp", "fastapi-none"), "import", "-"),
    ("configure(), FastAPI service, OTLP/HTTP", ("fastapi-otlp",), "configure", "<= 100 ms"),
    ("configure(), FastAPI service, traces exporter none", ("fastapi-none",), "configure", "-"),
    ("configure(), bare interpreter, OTLP/HTTP", ("bare-otlp",), "configure", "-"),
    (
        "configure() + the service's next 150,000 objects (FastAPI, OTLP/HTTP)",
        ("fastapi-otlp",),
        "next",
        "-",
    ),
    ("first export: build the OTLP exporter (export thread)", ("fastapi-otlp",), "build", "-"),
)


def _rows(
    results: dict[str, list[dict[str, float]]],
) -> list[tuple[list[float], list[float], float]]:
    """(wall ms, CPU ms, modules added) of each of :data:`STEPS`."""
    rows = []
    for _, variants, measure, _ in STEPS:
        runs = [r for variant in variants for r in results[variant]]
        rows.append(
            (
                [r[f"{measure}_ms"] for r in runs],
                [r[f"{measure}_cpu"] for r in runs],
                runs[0][f"{measure}_modules"],
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument(
        "--quick", action="store_true", help="a few short rounds: checks the script runs (CI)"
    )
    parser.add_argument(
        "--baseline", metavar="DIR", help="also measure this checkout, interleaved (before/after)"
    )
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs
    trees: dict[str, str | None] = {"this checkout": None}
    if args.baseline:
        trees["baseline " + args.baseline] = os.path.abspath(args.baseline)
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        label: {name: [] for name, _, _ in VARIANTS} for label in trees
    }
    for tree in trees.values():  # warm-up: writes the bytecode caches a deployed service has
        for _, first, exporter in VARIANTS:
            _measure(first, exporter, tree)
    for _ in range(runs):
        for label, tree in trees.items():
            for name, first, exporter in VARIANTS:
                results[label][name].append(_measure(first, exporter, tree))
    print(f"python {sys.version.split()[0]}, {runs} fresh interpreters each, interleaved")
    print(
        "ms, median [min-max]: wall clock (perf_counter), then CPU of the process (process_time:"
        " what the step costs, robust to a busy machine); modules added by the step\n"
    )
    header = " | ".join(f"{label}, wall | {label}, CPU" for label in trees)
    print(f"| step | {header} | modules | target |")
    print(f"|---|{'---|---|' * len(trees)}---|---|")
    tables = {label: _rows(results[label]) for label in trees}
    first_label = next(iter(trees))
    for i, (step, _, _, target) in enumerate(STEPS):
        cells = " | ".join(
            f"{show(tables[label][i][0])} | {show(tables[label][i][1])}" for label in trees
        )
        modules = " / ".join(f"{tables[label][i][2]:.0f}" for label in trees)
        print(f"| {step} | {cells} | {modules} | {target} |")
    rows = tables[first_label]
    imp_ok = statistics.median(rows[0][0]) <= 50
    conf_ok = statistics.median(rows[2][0]) <= 100
    print(
        f"\nimport otelfin: {'met' if imp_ok else 'MISSED'}; "
        f"configure(): {'met' if conf_ok else 'MISSED'} (this checkout, wall-clock medians)"
    )
    phases = _importtime(None)
    titles = ("import otelfin", "configure(), OTLP", "first export: exporter build")
    for title, phase in zip(titles, phases, strict=True):
        total = sum(us for us, _ in phase) / 1000
        top = sorted(phase, reverse=True)[:8]
        print(f"\n-X importtime, {title}: {len(phase)} modules, {total:.0f} ms self time; top:")
        for us, name in top:
            print(f"  {us / 1000:6.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
