"""``otelfin buckets suggest --file/--prometheus``: one bucket design per operation."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from otelfin.cli import main
from otelfin.metrics import names
from otelfin.tools.metrics import (
    ReportError,
    samples_from_buckets,
    series_from_prometheus,
    slo_hint,
)

#: A fine geometric layout (0.5 ms .. ~5 s, ratio 1.2) so both operations are resolved.
_FINE = tuple(round(0.0005 * 1.2**i, 7) for i in range(52))


def _exposition(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    """An exposition from a real registry: risk.score ~5 ms, gateway ~200 ms; exact P99s."""
    registry = CollectorRegistry()
    hist = Histogram(
        names.DURATION.removesuffix("_seconds"),
        "latency",
        ["operation"],
        unit="seconds",
        buckets=_FINE,
        registry=registry,
    )
    rng = random.Random(3)
    p99: dict[str, float] = {}
    for op, median in (("risk.score", 0.005), ("gateway", 0.2)):
        values = sorted(rng.lognormvariate(math.log(median), 0.3) for _ in range(6000))
        for v in values:
            hist.labels(operation=op).observe(v)
        p99[op] = values[int(0.99 * len(values)) - 1]
    path = tmp_path / "metrics.txt"
    path.write_bytes(generate_latest(registry))
    return path, p99


def test_two_operations_get_their_own_dense_bounds(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A 5 ms and a 200 ms operation get different designs, each dense around its own P99."""
    path, p99 = _exposition(tmp_path)
    assert main(["buckets", "suggest", "--file", str(path), "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    doc = json.loads(out)
    designs = {op["value"]: op for op in doc["operations"]}
    assert set(designs) == {"risk.score", "gateway"}
    for op, truth in p99.items():
        design = designs[op]["design"]
        near = [b for b in design["buckets"] if truth / 1.3 <= b <= truth * 1.3]
        assert len(near) >= 4, (op, truth, design["buckets"])
        assert design["p99_seconds"] == pytest.approx(truth, rel=0.1)
        assert designs[op]["slo_hint"] >= design["p99_seconds"]
    assert designs["risk.score"]["design"]["buckets"] != designs["gateway"]["design"]["buckets"]
    assert doc["setting"].startswith('OTELFIN_METRICS_OPERATION_SLOS="')
    value = doc["setting"].split("=", 1)[1].strip('"')
    hints = {op: float(x) for op, x in (pair.rsplit("=", 1) for pair in value.split(","))}
    for op, truth in p99.items():
        assert truth <= hints[op] <= truth * 1.3, (op, truth, hints[op])


def test_text_output_names_operations_and_setting(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """Text output has a section per operation and the line to paste last."""
    path, _ = _exposition(tmp_path)
    assert main(["buckets", "suggest", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "operation='risk.score'" in out and "operation='gateway'" in out
    assert out.strip().splitlines()[-1].startswith("OTELFIN_METRICS_OPERATION_SLOS=")


@pytest.mark.parametrize(
    "content, message",
    [
        ("not an exposition {{{\n", "cannot parse"),
        ("", "no histogram named"),
        (
            "# HELP otelfin_request_duration_seconds x\n"
            "# TYPE otelfin_request_duration_seconds histogram\n",
            "no observations",
        ),
        (b"\xff\xfe\x00binary", "not UTF-8"),
    ],
)
def test_bad_or_empty_exposition_exits_2(tmp_path, capsys, content, message) -> None:  # type: ignore[no-untyped-def]
    """A malformed, binary or empty exposition is exit 2 with a message, no traceback."""
    path = tmp_path / "bad.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content.replace("otelfin_request_duration_seconds", names.DURATION))
    assert main(["buckets", "suggest", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_file_and_non_http_url_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    """A missing file and a file:// Prometheus URL are exit 2 with a clear message."""
    assert main(["buckets", "suggest", "--file", "/nonexistent/m.txt"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["buckets", "suggest", "--prometheus", "file:///etc/passwd"]) == 2
    assert "http(s) URL" in capsys.readouterr().err
    with pytest.raises(ReportError, match="http"):
        series_from_prometheus("ftp://x", names.DURATION, "operation")


def test_samples_spread_inside_buckets_and_inf_at_factor() -> None:
    """Counts become uniform samples inside each bucket; +Inf ones sit at 1.5x the top bound."""
    samples = samples_from_buckets([0.1, 0.2], [2, 4, 5])
    assert samples == pytest.approx([0.025, 0.075, 0.125, 0.175, 0.3])
    assert slo_hint(0.0071) == 0.008
    assert slo_hint(0.19) == 0.2
    assert slo_hint(0.25) == 0.25
