"""Hostile input to `otelfin buckets suggest`: float extremes, NaN/inf, empty and garbage
files give a clear error (exit 2) or a sensible design, never a traceback."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otelfin.cli import main
from otelfin.metrics import latency_buckets, suggest_buckets


def _normal() -> list[float]:
    rng = random.Random(3)
    return [rng.lognormvariate(-3, 0.6) for _ in range(600)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["1.7e308"] * 5, "latency sample 1.7e+308 is outside"),
        (["5e-324"] * 5, "is outside 1e-09..1e+06 seconds"),
        (["nan"], "must be finite seconds >= 0"),
        (["inf"], "must be finite seconds >= 0"),
        (["-0.5"], "must be finite seconds >= 0"),
        (["0x10"], "is not a number of seconds"),
        (["1,5"], "is not a number of seconds"),
    ],
)
def test_extreme_samples_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    """Samples at the float limits or not numbers: exit 2 with the reason, no traceback."""
    path = tmp_path / "lat.txt"
    path.write_text("\n".join([*map(repr, _normal()), *extra]) + "\n")
    assert main(["buckets", "suggest", "--samples", str(path), "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


@pytest.mark.parametrize("samples", [["1.7e308"] * 300, ["5e-324"] * 300])
def test_all_extreme_samples_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], samples: list[str]
) -> None:
    """A file of only 1.7e308 (overflowed) or 5e-324 (divided by zero) is exit 2 now."""
    path = tmp_path / "lat.txt"
    path.write_text("\n".join(samples) + "\n")
    assert main(["buckets", "suggest", "--samples", str(path)]) == 2
    assert "is outside 1e-09..1e+06 seconds" in capsys.readouterr().err


@pytest.mark.parametrize("slo", ["1e-320", "1e308", "5e-324", "1.7e308", "nan", "inf", "-1", "0"])
def test_extreme_slo_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], slo: str) -> None:
    """--slo outside 1 ns..1e6 s (or not a positive number) is exit 2, no traceback."""
    path = tmp_path / "lat.txt"
    path.write_text("\n".join(map(repr, _normal())) + "\n")
    assert main(["buckets", "suggest", "--samples", str(path), "--slo", slo]) == 2
    err = capsys.readouterr().err
    if slo in ("nan", "inf", "-1", "0"):
        # The settings row's parser (the same as OTELFIN_METRICS_SLO's) refuses it first.
        assert f"--slo={slo!r} must be a positive finite number" in err
    else:
        assert "slo must be a positive number of seconds between 1e-09 and 1e+06" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "need at least 200 latency samples"),
        (b"\n\n# only comments\n", "need at least 200 latency samples"),
        (bytes(range(256)) * 8, "not UTF-8 text"),
        (b"\x00" * 500, "is not a number of seconds"),
        (b"0\n" * 300, "P99 of the samples is 0 s"),
    ],
)
def test_empty_and_garbage_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    """Empty, comment-only, binary, NUL and all-zero files: exit 2 with the reason."""
    path = tmp_path / "lat.txt"
    path.write_bytes(content)
    assert main(["buckets", "suggest", "--samples", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_latency_buckets_refuses_extreme_slo() -> None:
    """latency_buckets() refuses SLOs at the float limits with ValueError, not OverflowError."""
    for slo in (1e-320, 1e308):
        with pytest.raises(ValueError, match="between 1e-09 and 1e"):
            latency_buckets(slo=slo)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.floats(min_value=1e-9, max_value=1e6, allow_nan=False) | st.just(0.0),
        min_size=200,
        max_size=400,
    ),
    st.none() | st.floats(min_value=1e-9, max_value=1e6),
)
def test_any_in_range_samples_design_or_value_error(
    samples: list[float], slo: float | None
) -> None:
    """Any in-range samples and SLO: a design (8-12 increasing finite bounds) or ValueError."""
    try:
        design = suggest_buckets(samples, slo=slo)
    except ValueError:
        return
    assert 8 <= len(design.buckets) <= 12
    assert all(math.isfinite(b) and b > 0 for b in design.buckets)
    assert list(design.buckets) == sorted(set(design.buckets))
    if slo is not None:
        assert slo in design.buckets


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.binary(max_size=300)
    | st.lists(
        st.sampled_from(
            ["1e308", "5e-324", "nan", "-0", "0.1", "1_0", "\u0661", "\x00", "# c", " "]
        ),
        max_size=40,
    ).map(lambda parts: "\n".join(parts).encode())
)
def test_any_bytes_exit_0_or_2_without_traceback(tmp_path: Path, data: bytes) -> None:
    """Any bytes as --samples: exit 0 or 2 (the command has no findings), never an exception."""
    path = tmp_path / "fuzz.txt"
    path.write_bytes(data)
    assert main(["buckets", "suggest", "--samples", str(path), "--format", "json"]) in (0, 2)
