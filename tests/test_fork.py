"""Fork safety: children forked while threads log and export spans keep working (real forks).

Each case runs in a fresh interpreter under a timeout, so a child that hangs fails the test
instead of blocking the suite; the parent kills a child that has not exited after 10 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

_FORK_APP = r'''
"""Fork children while 4 threads log to log_file and write spans to spans_file."""
import json, os, sys, threading, time
import otelfin
from opentelemetry import trace
out, forks = sys.argv[1], int(sys.argv[2])
otelfin.configure("payment-gateway", log_file=f"{out}/logs.jsonl", spans_file=f"{out}/spans.jsonl")
log = otelfin.get_logger()
tracer = trace.get_tracer("app")
stop = threading.Event()
def busy(n):
    i = 0
    while not stop.is_set():
        with tracer.start_as_current_span("parent-work"):
            log.info("parent_line", thread=n, i=i, payload="x" * 3000)
        i += 1
threads = [threading.Thread(target=busy, args=(n,), daemon=True) for n in range(4)]
for t in threads: t.start()
time.sleep(0.3)
results = {"ok": 0, "hung": 0, "failed": 0}
for k in range(forks):
    pid = os.fork()
    if pid == 0:
        try:
            otelfin.get_logger().info("child_line", child=k)
            with tracer.start_as_current_span("child-span", attributes={"child": k}):
                pass
            otelfin.shutdown(timeout_millis=3000)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            results["ok" if os.waitstatus_to_exitcode(status) == 0 else "failed"] += 1
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9); os.waitpid(pid, 0); results["hung"] += 1
            break
        time.sleep(0.01)
stop.set()
for t in threads: t.join(5)
otelfin.shutdown()
lines = open(f"{out}/logs.jsonl", "rb").read().splitlines()
bad = 0; child_lines = set()
for l in lines:
    try:
        r = json.loads(l)
    except ValueError:
        bad += 1; continue
    if r.get("event") == "child_line": child_lines.add(r["child"])
child_spans = set(); bad_spans = 0
for l in open(f"{out}/spans.jsonl", "rb").read().splitlines():
    try:
        d = json.loads(l)
    except ValueError:
        bad_spans += 1; continue
    for rs in d["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                if s["name"] == "child-span":
                    attrs = {a["key"]: a["value"] for a in s["attributes"]}
                    child_spans.add(int(attrs["child"]["intValue"]))
results.update(child_log_lines=len(child_lines), child_spans=len(child_spans))
results.update(bad_log_lines=bad, bad_span_lines=bad_spans)
print(json.dumps(results))
'''

_POOL_APP = r"""
import json, os, sys
out, mode = sys.argv[1], sys.argv[2]
if mode != "imported-after":
    import multiprocessing
import otelfin
from opentelemetry import trace
otelfin.configure("payment-gateway", spans_file=f"{out}/spans.jsonl", log_file=f"{out}/logs.jsonl")
if mode == "imported-after":  # the application imports multiprocessing after configure()
    assert "multiprocessing.util" not in sys.modules, "configure() imported multiprocessing"
    import multiprocessing

@otelfin.traced(name="pool-task")
def task(n):
    trace.get_current_span().set_attribute("n", n)
    return n * 2

if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    if mode == "with":
        with ctx.Pool(2) as pool:
            assert pool.map(task, range(20)) == [n * 2 for n in range(20)]
    else:
        pool = ctx.Pool(2)
        assert pool.map(task, range(20)) == [n * 2 for n in range(20)]
        pool.close()
        pool.join()
    otelfin.shutdown()
    seen = set()
    for line in open(f"{out}/spans.jsonl"):
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    if s["name"] == "pool-task":
                        attrs = {a["key"]: a["value"] for a in s["attributes"]}
                        seen.add(int(attrs["n"]["intValue"]))
    print(json.dumps({"mode": mode, "pool_spans_exported": len(seen), "of": 20}))
"""


def _run(tmp_path: Path, source: str, *args: str) -> dict[str, int]:
    app = tmp_path / "app.py"
    app.write_text(source)
    done = subprocess.run(
        [sys.executable, str(app), str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_children_forked_while_threads_log_and_export_work(tmp_path: Path) -> None:
    """30 forks amid 4 busy threads: every child logs, exports its span and shuts down."""
    result = _run(tmp_path, _FORK_APP, "30")
    assert result["hung"] == 0 and result["failed"] == 0, result
    assert result["ok"] == 30
    assert result["child_log_lines"] == 30 and result["child_spans"] == 30
    assert result["bad_log_lines"] == 0 and result["bad_span_lines"] == 0


@pytest.mark.parametrize("mode", ["with", "close", "imported-after"])
def test_multiprocessing_pool_workers_spans_are_exported(tmp_path: Path, mode: str) -> None:
    """A fork-started Pool's task spans reach spans_file (with-block terminate, close/join),
    also when the application imports multiprocessing only after configure() (which leaves
    that import to it)."""
    result = _run(tmp_path, _POOL_APP, mode)
    assert result["pool_spans_exported"] == 20, result


_LATE_IMPORT_APP = r"""
import os, sys, threading, time
from otelfin._exporters._fork import late_import
out = sys.argv[1]
sys.path.insert(0, out)
with open(f"{out}/slow_encoder.py", "w") as f:
    f.write("import time\ntime.sleep(0.8)\nREADY = True\n")
started = threading.Event()

def export_thread():
    with late_import():  # what the first export does on otelfin's thread
        started.set()
        import slow_encoder  # noqa: F401

threading.Thread(target=export_thread, daemon=True).start()
started.wait()
time.sleep(0.1)  # the import is under way: its module lock is held
pid = os.fork()
if pid == 0:
    import slow_encoder  # a child's own first use of the module
    os._exit(0 if slow_encoder.READY else 1)
deadline = time.monotonic() + 10
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("ok" if os.waitstatus_to_exitcode(status) == 0 else "failed")
        break
    if time.monotonic() > deadline:
        os.kill(pid, 9); os.waitpid(pid, 0); print("hung")
        break
    time.sleep(0.01)
"""


def test_fork_waits_for_an_import_on_otelfins_thread(tmp_path: Path) -> None:
    """A fork while otelfin's export thread imports (the deferred exporter, the OTLP/JSON
    encoder) waits for the import: the child can import the module instead of hanging on the
    module lock a thread it lacks still holds (a child lost its spans this way)."""
    app = tmp_path / "app.py"
    app.write_text(_LATE_IMPORT_APP)
    done = subprocess.run(
        [sys.executable, str(app), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok", done.stdout
