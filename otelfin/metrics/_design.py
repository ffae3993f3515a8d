"""Bucket design from observed latencies: :func:`suggest_buckets`, :func:`evaluate_buckets`.

Split from :mod:`otelfin.metrics._buckets` (which keeps the layouts ``configure()`` builds and
PromQL's ``histogram_quantile``): the design and its report are for ``otelfin buckets
suggest`` and the benchmarks, and their dataclasses cost ``configure()`` about 1 ms to define
in every service that never designs buckets. ``otelfin.metrics`` still exports these
names, loaded on first use.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from otelfin.metrics._buckets import (
    _MAX_BUCKETS,
    _MIN_BUCKETS,
    _MIN_SAMPLES,
    DEFAULT_PROMETHEUS_BUCKETS,
    MAX_SECONDS,
    MIN_SECONDS,
    REFERENCE_WINDOW,
    _check_bounds,
    _check_seconds,
    _cumulative,
    _round_sig,
    exact_quantile,
    histogram_quantile,
)

__all__ = ["BucketDesign", "WindowAccuracy", "evaluate_buckets", "suggest_buckets"]


@dataclass(frozen=True)
class WindowAccuracy:
    """How a bucket layout behaves on short windows of traffic (bootstrap)."""

    window: int
    #: 95th percentile of |histogram_quantile(window) - P99| / P99 over the windows.
    error_p95: float
    #: 95th percentile of |exact P99 of the window - P99| / P99: the window's own noise.
    noise_p95: float

    @property
    def ratio(self) -> float:
        """``error_p95 / noise_p95``; about 1 means the buckets add almost nothing."""
        return self.error_p95 / self.noise_p95 if self.noise_p95 > 0 else math.inf


@dataclass(frozen=True)
class BucketDesign:
    """The result of :func:`suggest_buckets`."""

    buckets: tuple[float, ...]
    quantile: float
    samples: int
    #: The exact quantile of the samples.
    p99_seconds: float
    #: histogram_quantile of the samples with these buckets.
    estimated_p99_seconds: float
    #: Relative error on data the design did not see (designed on one half, tested on the other).
    held_out_error: float
    window_accuracy: WindowAccuracy
    #: The same figures for prometheus_client's default buckets.
    default_error: float
    default_window_accuracy: WindowAccuracy
    slo: float | None = None
    warnings: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the ``buckets suggest --format json`` output).

        JSON has no Infinity or NaN: an error relative to a P99 of 0 (a half of the samples
        that is mostly zeros) or a ratio to no sampling noise is ``null``.
        """
        data: dict[str, object] = {
            "buckets": list(self.buckets),
            "quantile": self.quantile,
            "samples": self.samples,
            "slo": self.slo,
            "p99_seconds": self.p99_seconds,
            "estimated_p99_seconds": self.estimated_p99_seconds,
            "expected_error": self.held_out_error,
            "window": {
                "size": self.window_accuracy.window,
                "error_p95": self.window_accuracy.error_p95,
                "noise_p95": self.window_accuracy.noise_p95,
                "ratio": self.window_accuracy.ratio,
            },
            "default_buckets": {
                "buckets": list(DEFAULT_PROMETHEUS_BUCKETS),
                "expected_error": self.default_error,
                "window_error_p95": self.default_window_accuracy.error_p95,
            },
            "warnings": list(self.warnings),
        }
        return _finite_or_null(data)  # type: ignore[no-any-return]


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(item) for item in value]
    return value


def _clean_samples(samples: Iterable[float]) -> list[float]:
    values: list[float] = []
    for raw in samples:
        value = float(raw)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"latency samples must be finite seconds >= 0, got {raw!r}")
        if value != 0 and not MIN_SECONDS <= value <= MAX_SECONDS:
            raise ValueError(
                f"latency sample {value:g} is outside {MIN_SECONDS:g}..{MAX_SECONDS:g} seconds "
                "(are the values in seconds?)"
            )
        values.append(value)
    values.sort()
    return values


def _design(xs: Sequence[float], count: int, slo: float | None, q: float) -> tuple[float, ...]:
    n = len(xs)
    # Where a window's P99 can land: the quantile +- 3 standard errors of its estimate from a
    # reference window, plus the uncertainty of the training sample itself (held-out data).
    se = math.sqrt(q * (1 - q) * (1 / REFERENCE_WINDOW + 1 / n))
    p_lo = max(0.5, q - 3 * se)
    p_hi = min(1 - 0.5 / n, q + 3 * se)
    reserved = 4 if slo is None else 5  # body, low margin, high margin, top (+ SLO)
    dense = max(3, count - reserved)
    knots = [exact_quantile(xs, p_lo + (p_hi - p_lo) * i / (dense - 1)) for i in range(dense)]
    lo, hi = knots[0], knots[-1]
    # Atoms (a timeout, a retry delay) make equal quantile knots: put a bound just below the
    # atom so the bucket holding it is narrow, and one at its top.
    bounds = {k for k in knots if k > 0}
    if len(bounds) < len(knots):
        for atom in {k for k in knots if knots.count(k) > 1 and k > 0}:
            below = xs[max(0, bisect_left(xs, atom) - 1)]
            bounds.add(max(below, atom * 0.999) if below < atom else atom * 0.999)
    top = xs[-1]
    bounds.add(lo / 1.15)  # margin for drift below the band
    bounds.add(hi * 1.15)  # and above it
    median = exact_quantile(xs, 0.5)
    if median < lo / 1.15:
        bounds.add(median)
    if top > hi * 1.15:
        bounds.add(top * 1.05)  # keep every observed latency below a finite bound
    rounded = sorted({_round_sig(b, 4) for b in bounds if b > 0})
    if slo is not None:
        near = min(rounded, key=lambda b: abs(math.log(b / slo)))
        if abs(math.log(near / slo)) < 0.01:
            rounded.remove(near)
        rounded = sorted({*rounded, float(slo)})
    # Too many: drop the bounds farthest from the band first (never the SLO or dense knots).
    keep = {float(slo)} if slo is not None else set()
    while len(rounded) > count:
        centre = math.sqrt(lo * hi) if lo > 0 else hi
        candidates = [b for b in rounded if b not in keep] or rounded
        rounded.remove(max(candidates, key=lambda b: abs(math.log(b / centre)) if b > 0 else 0))
    # Too few (a narrow band): fill the widest gaps geometrically.
    while len(rounded) < _MIN_BUCKETS:
        gaps = [(rounded[i + 1] / rounded[i], i) for i in range(len(rounded) - 1)]
        if gaps:
            ratio, i = max(gaps)
            if ratio > 1.02:
                rounded.insert(i + 1, _round_sig(math.sqrt(rounded[i] * rounded[i + 1]), 4))
                continue
        rounded.append(_round_sig(rounded[-1] * 1.5, 4))
    return tuple(rounded)


def _relative_error(estimate: float, truth: float) -> float:
    if truth == 0:
        return 0.0 if estimate == 0 else math.inf
    return abs(estimate - truth) / truth


def evaluate_buckets(
    buckets: Sequence[float],
    samples: Sequence[float],
    *,
    quantile: float = 0.99,
    window: int = REFERENCE_WINDOW,
    windows: int = 200,
    truth: float | None = None,
    seed: int = 0,
) -> tuple[float, WindowAccuracy]:
    """The relative P99 error of ``buckets`` on ``samples`` and on bootstrap windows of them.

    Returns ``(error, window_accuracy)``: ``error`` compares histogram_quantile of all samples
    with their exact quantile; the windows compare each window's histogram_quantile and exact
    quantile with ``truth`` (default: the samples' exact quantile).
    """
    bounds = _check_bounds(buckets)
    xs = sorted(samples)
    exact = exact_quantile(xs, quantile)
    target = exact if truth is None else truth
    error = _relative_error(histogram_quantile(quantile, bounds, _cumulative(xs, bounds)), exact)
    rng = random.Random(seed)
    errors: list[float] = []
    noises: list[float] = []
    size = min(window, len(xs))
    for _ in range(windows):
        sample = sorted(rng.choices(xs, k=size))
        estimate = histogram_quantile(quantile, bounds, _cumulative(sample, bounds))
        errors.append(_relative_error(estimate, target))
        noises.append(_relative_error(exact_quantile(sample, quantile), target))
    errors.sort()
    noises.sort()
    return error, WindowAccuracy(
        window=size,
        error_p95=exact_quantile(errors, 0.95),
        noise_p95=exact_quantile(noises, 0.95),
    )


def suggest_buckets(
    samples: Iterable[float],
    count: int = 12,
    *,
    slo: float | None = None,
    quantile: float = 0.99,
) -> BucketDesign:
    """Design ``count`` (8-12) histogram buckets from observed latencies in seconds.

    The report states the expected ``histogram_quantile`` error three ways: on held-out data
    (the design is redone on one half of the samples and tested on the other), on bootstrap
    windows of :data:`REFERENCE_WINDOW` samples against the window's own sampling noise, and
    the same figures for prometheus_client's default buckets.

    Raises ``ValueError`` for fewer than 200 samples, negative or non-finite values, a P99 of 0,
    or a ``count`` outside 8-12.
    """
    if not _MIN_BUCKETS <= count <= _MAX_BUCKETS:
        raise ValueError(f"count must be between {_MIN_BUCKETS} and {_MAX_BUCKETS}, not {count}")
    if not 0.5 <= quantile < 1:
        raise ValueError(f"quantile must be in [0.5, 1), not {quantile}")
    _check_seconds("slo", slo)
    xs = _clean_samples(samples)
    if len(xs) < _MIN_SAMPLES:
        raise ValueError(
            f"need at least {_MIN_SAMPLES} latency samples to design buckets, got {len(xs)}"
        )
    if exact_quantile(xs, quantile) <= 0:
        raise ValueError(
            f"the P{quantile * 100:g} of the samples is 0 s: there is no latency to design "
            "buckets around (are the values in seconds?)"
        )
    warnings: list[str] = []
    if len(xs) < 3 * REFERENCE_WINDOW:
        warnings.append(
            f"only {len(xs)} samples: the P99 band is estimated loosely; "
            f"{3 * REFERENCE_WINDOW}+ samples give a steadier design"
        )
    try:
        return _suggest(xs, count, slo, quantile, warnings)
    except (OverflowError, ZeroDivisionError) as exc:  # pragma: no cover - the range check
        raise ValueError(f"cannot design buckets for these samples ({exc})") from None


def _suggest(
    xs: list[float], count: int, slo: float | None, quantile: float, warnings: list[str]
) -> BucketDesign:
    buckets = _design(xs, count, slo, quantile)
    # Held-out error: design on the even-indexed half of a shuffle, test on the odd half.
    rng = random.Random(1)
    shuffled = list(xs)
    rng.shuffle(shuffled)
    train = sorted(shuffled[0::2])
    test = sorted(shuffled[1::2])
    held_bounds = _design(train, count, slo, quantile)
    held_error, _ = evaluate_buckets(held_bounds, test, quantile=quantile, windows=0)
    _, window_acc = evaluate_buckets(buckets, xs, quantile=quantile)
    default_error, default_window = evaluate_buckets(
        DEFAULT_PROMETHEUS_BUCKETS, xs, quantile=quantile
    )
    p99 = exact_quantile(xs, quantile)
    estimate = histogram_quantile(quantile, buckets, _cumulative(xs, buckets))
    if xs[-1] > buckets[-1]:
        warnings.append(
            f"the slowest sample ({xs[-1]:.6g}s) is above the top bound; it lands in +Inf"
        )
    return BucketDesign(
        buckets=buckets,
        quantile=quantile,
        samples=len(xs),
        p99_seconds=p99,
        estimated_p99_seconds=estimate,
        held_out_error=held_error,
        window_accuracy=window_acc,
        default_error=default_error,
        default_window_accuracy=default_window,
        slo=slo,
        warnings=tuple(warnings),
    )
