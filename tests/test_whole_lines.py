"""Whole lines: concurrent long log lines never interleave, on a stdout pipe or in a file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_APP = """
import random, sys, threading
import otelfin

threads, per = int(sys.argv[1]), int(sys.argv[2])
otelfin.configure("payment-gateway", log_file=sys.argv[3] if len(sys.argv) > 3 else None)
log = otelfin.get_logger()
start = threading.Barrier(threads)

def work(t):
    rnd = random.Random(t)
    start.wait()
    for i in range(per):
        log.info("bulk", thread=t, n=i, payload="ab" * (rnd.randint(4096, 20480) // 2))

workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
otelfin.shutdown()
"""


def _check(data: bytes, expected: int) -> None:
    bad, seen = 0, set()
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if record.get("event") == "bulk":
            seen.add((record["thread"], record["n"]))
    assert bad == 0, f"{bad} corrupted fragments"
    assert len(seen) == expected


def test_long_lines_from_32_threads_stay_whole_on_a_pipe(tmp_path: Path) -> None:
    """32 threads writing 4-20 KB lines to a stdout pipe: every line arrives whole, once."""
    app = tmp_path / "app.py"
    app.write_text(_APP)
    out = subprocess.run(
        [sys.executable, str(app), "32", "40"], stdout=subprocess.PIPE, check=True, timeout=120
    ).stdout
    _check(out, 32 * 40)


def test_long_lines_from_16_threads_stay_whole_in_a_file(tmp_path: Path) -> None:
    """16 threads writing 4-20 KB lines to log_file: every line is whole, once."""
    app = tmp_path / "app.py"
    app.write_text(_APP)
    path = tmp_path / "logs.jsonl"
    subprocess.run([sys.executable, str(app), "16", "40", str(path)], check=True, timeout=120)
    _check(path.read_bytes(), 16 * 40)
