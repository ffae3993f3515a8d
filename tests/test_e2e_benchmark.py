"""CI smoke for benchmarks/e2e_overhead.py: it runs end to end and prints its tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "e2e_overhead.py"


def test_e2e_benchmark_quick_prints_the_table() -> None:
    """--quick with tiny phases serves the variants, measures and prints the tables and ratios
    (two variants and one scaling pair only, to keep the shared CI machine's load small)."""
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--variants",
            "none,otelfin",
            "--closed-seconds",
            "1",
            "--open-seconds",
            "0.5",
            "--warmup-seconds",
            "0.2",
            "--rate",
            "50",
            "--extra",
            "1",
            "--slow-ms",
            "0",
            "--drain-seconds",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for row in ("no instrumentation", "otelfin configure() defaults"):
        assert f"| {row} |" in text, text
    assert "| variant | CPU/request us |" in text and "one more span us" in text
    assert text.index("ratios") > text.index("| variant | CPU/request us |")
    assert "otelfin p50 / none p50" in text
