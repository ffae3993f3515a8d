"""Histogram bucket design for trustworthy ``histogram_quantile(0.99, ...)``.

PromQL estimates a quantile by finding the bucket holding the target rank and interpolating
linearly inside it. The error therefore depends on how wide the bucket holding the P99 is and
how far the latency distribution inside it is from uniform. prometheus_client's default
buckets are 2-2.5x apart exactly where payment SLOs sit (100/250/500 ms), so the reported P99
can be tens of percent off.

Two designs live here:

* :func:`latency_buckets` needs no data: a boundary exactly on the SLO and a geometric band with
  ratio about 1.1-1.25 around the expected P99.
* :func:`suggest_buckets` (in ``_design``, loaded on first use) designs from observed
  latencies. Dense boundaries are placed at *quantile* positions spanning the range where a
  short window's P99 can land (the training P99 plus or minus three standard errors of a P99
  estimated from a window), so each dense bucket holds an equal slice of probability and
  linear interpolation inside it follows the real distribution, atoms (timeouts, retries)
  included. A geometric margin either side keeps held-out data that drifted a little inside
  the dense band.

Written here rather than taken from a library: no maintained Python package designs
Prometheus buckets for quantile accuracy, and the evaluation must mirror PromQL's own
``histogram_quantile`` exactly, which :func:`histogram_quantile` does (Prometheus 2.x).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

from otelfin import _settings

__all__ = [
    "DEFAULT_PROMETHEUS_BUCKETS",
    "ROUND_TIMEOUTS",
    "histogram_quantile",
    "check_slo_bound",
    "default_buckets",
    "latency_buckets",
    "nearest_bounds",
    "exact_quantile",
]


#: prometheus_client's default histogram buckets (without +Inf), for comparison.
DEFAULT_PROMETHEUS_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

_MIN_BUCKETS = 8
_MAX_BUCKETS = 12
_MIN_SAMPLES = 200
#: The window size whose sampling noise the design has to absorb (a few minutes of traffic).
REFERENCE_WINDOW = 3000


def le_text(bound: float) -> str:
    """A bucket bound as prometheus_client writes it in the ``le`` label (``0.25``, ``1.0``)."""
    from prometheus_client.utils import floatToGoString

    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def _round_sig(value: float, digits: int = 3) -> float:
    if value <= 0:
        return value
    exponent = math.floor(math.log10(value))
    return round(value, digits - 1 - exponent)


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float:
    """PromQL's ``histogram_quantile`` on one histogram (Prometheus 2.x bucketQuantile).

    ``bounds`` are the finite upper bounds in increasing order; ``cumulative`` the cumulative
    counts for each of them followed by the ``+Inf`` count (so one longer than ``bounds``).
    Returns NaN for an empty histogram, like PromQL.
    """
    if len(cumulative) != len(bounds) + 1:
        raise ValueError("cumulative needs one count per bound plus the +Inf count")
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    uppers = [*bounds, math.inf]
    counts = list(cumulative)
    for i in range(1, len(counts)):  # ensureMonotonic
        if counts[i] < counts[i - 1]:
            counts[i] = counts[i - 1]
    total = counts[-1]
    if len(uppers) < 2 or total == 0:
        return math.nan
    rank = q * total
    b = bisect_left(counts, rank)
    if b == len(uppers) - 1:
        return uppers[-2]
    if b == 0 and uppers[0] <= 0:
        return uppers[0]
    start = 0.0
    end = uppers[b]
    count = counts[b]
    if b > 0:
        start = uppers[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * (rank / count)


def exact_quantile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile of already sorted values."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    index = min(n - 1, max(0, math.ceil(q * n) - 1))
    return sorted_values[index]


def _cumulative(sorted_values: Sequence[float], bounds: Sequence[float]) -> list[float]:
    # Prometheus buckets are "less than or equal": count values <= bound.
    from bisect import bisect_right

    return [float(bisect_right(sorted_values, b)) for b in bounds] + [float(len(sorted_values))]


def _check_bounds(buckets: Iterable[float]) -> tuple[float, ...]:
    values = sorted({float(b) for b in buckets if not math.isinf(float(b))})
    if not values:
        raise ValueError("buckets need at least one finite upper bound")
    if any(math.isnan(b) for b in values):
        raise ValueError("bucket bounds must be numbers, not NaN")
    return tuple(values)


def latency_buckets(
    slo: float | None = None, p99: float | None = None, count: int = 10
) -> tuple[float, ...]:
    """Buckets for a latency histogram from an SLO and/or an expected P99, in seconds.

    The result has ``count`` (8-12) finite bounds: one exactly on ``slo`` (so "slower than the
    SLO" per series is the exact ``count - bucket{le=slo}``), a geometric band with ratio 1.15
    around the expected P99 (``p99``, or the SLO when only that is given), and coarse bounds
    below (the body of the distribution) and above (up to 4x the band, for timeouts).
    """
    if not _MIN_BUCKETS <= count <= _MAX_BUCKETS:
        raise ValueError(f"count must be between {_MIN_BUCKETS} and {_MAX_BUCKETS}, not {count}")
    for name, value in (("slo", slo), ("p99", p99)):
        _check_seconds(name, value)
    centre = p99 if p99 is not None else slo
    if centre is None:
        raise ValueError("latency_buckets() needs slo= and/or p99=")
    ratio = 1.15
    dense = count - 4  # two coarse bounds below, two above
    if slo is not None and p99 is not None and abs(math.log(slo / p99)) > math.log(ratio) * dense:
        dense -= 1  # the SLO sits outside the band: it needs a bound of its own
    first = centre / ratio ** ((dense - 1) // 2)  # the centre is a band bound
    band = [first * ratio**i for i in range(dense)]
    bounds = {_round_sig(b) for b in band}
    bounds |= {_round_sig(band[0] / 4), _round_sig(band[0] / 2)}
    bounds |= {_round_sig(band[-1] * 2), _round_sig(band[-1] * 4)}
    if slo is not None:
        # Snap the nearest band bound onto the SLO instead of crowding a second one next to it.
        near = min(bounds, key=lambda b: abs(math.log(b / slo)))
        if abs(math.log(near / slo)) < math.log(ratio) / 2:
            bounds.discard(near)
        bounds.add(float(slo))
    result = sorted(bounds)
    while len(result) > count:  # rounding or the SLO made one too many: drop the lowest coarse
        result.pop(0)
    return tuple(result)


#: Latencies (and SLOs) outside [1 ns, ~11.6 days] are refused: they are not latencies in
#: seconds, and values near the float limits (1.7e308, 5e-324) overflow the design's arithmetic.
MIN_SECONDS = 1e-9
MAX_SECONDS = 1e6


def _check_seconds(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and MIN_SECONDS <= value <= MAX_SECONDS):
        raise ValueError(
            f"{name} must be a positive number of seconds between {MIN_SECONDS:g} and "
            f"{MAX_SECONDS:g}, "
            f"not {value!r}"
        )


#: The default layout: bounds about 20% apart from 1 ms to 30 s, a dense band (4% apart) within
#: 30% either side of each declared SLO, every SLO exactly a bound, and narrow buckets at each
#: client timeout. See :func:`default_buckets`.
DEFAULT_LOW = 0.001
DEFAULT_HIGH = 30.0
DEFAULT_RATIO = 1.2
SLO_BAND = 1.3
SLO_BAND_RATIO = 1.04
#: Client timeouts people set by hand, in seconds: the default layout resolves a pile of
#: requests cut off at any of them (see :func:`default_buckets`, ``timeouts=``).
ROUND_TIMEOUTS: tuple[float, ...] = _settings.ROUND_TIMEOUTS
#: Around a timeout T the bounds are T / 1.02, T, T * 1.02 and T * 1.05.
TIMEOUT_BELOW = 1.02
TIMEOUT_ABOVE = (1.02, 1.05)
#: Two bounds closer than this ratio are one bound (the more meaningful one stays).
_MERGE = 1.01
#: More bounds than this in one histogram is a configuration mistake (each series stores all).
MAX_OPERATION_BOUNDS = 200


def _timeout_bounds(timeout: float) -> set[float]:
    """The timeout itself, one bound just below it and two just above it.

    Requests cut off by a timeout pile up at (or, measured from slightly earlier, just under)
    the timeout, or a little above it (the time to notice and unwind). PromQL interpolates
    linearly inside the bucket holding the P99, so a pile in a 20%-wide bucket reads up to
    ~20% off; in a 2%-wide one, at most 2%. The 5% bound keeps a pile spread over a few
    tens of milliseconds of scheduling delay (at a 0.5 s timeout, 4%) as narrow.
    """
    below = _round_sig(timeout / TIMEOUT_BELOW, 4)
    return {below, float(timeout), *(_round_sig(timeout * r, 4) for r in TIMEOUT_ABOVE)}


def _fill(anchors: Iterable[float], ratio: float) -> set[float]:
    """``anchors`` plus geometric bounds so consecutive ones are at most ``ratio`` apart."""
    points = sorted(set(anchors))
    filled = set(points)
    for low, high in pairwise(points):
        steps = math.ceil(math.log(high / low) / math.log(ratio) - 1e-9)
        filled |= {_round_sig(low * (high / low) ** (i / steps), 3) for i in range(1, steps)}
    return filled


def _merge(ranked: Mapping[float, int]) -> list[float]:
    """Bounds sorted, dropping the lower-ranked of any two closer than :data:`_MERGE`."""
    top = max(ranked.values(), default=0)  # SLOs and timeouts themselves: never dropped
    kept: list[float] = []
    for bound in sorted(ranked):
        rank = ranked[bound]
        if kept and bound / kept[-1] < _MERGE and rank < top and rank <= ranked[kept[-1]]:
            continue
        while kept and bound / kept[-1] < _MERGE and ranked[kept[-1]] < rank:
            kept.pop()
        kept.append(bound)
    return kept


def default_buckets(
    slo: float | None = 0.25,
    operation_slos: Sequence[tuple[str, float]] | Mapping[str, float] = (),
    *,
    p99: float | None = None,
    timeouts: Iterable[float] | None = None,
) -> tuple[float, ...]:
    """The default bounds of otelfin's latency histograms, in seconds.

    PromQL's ``histogram_quantile`` interpolates linearly inside the bucket holding the P99,
    so its error is set by how wide that bucket is. The layout has bounds at most 20% apart
    (three significant digits) from 1 ms to 30 s, so the P99 of a smooth latency distribution
    (lognormal, bimodal, heavy-tailed) anywhere between 2 ms and 20 s comes out within 4%;
    around each SLO (``slo`` and every operation's, and the expected ``p99`` if given) the
    bounds are 4% apart within 30% either side, which keeps a P99 near the SLO within 2%; and
    each SLO is exactly a bound, so "slower than the SLO" per series is the exact
    ``count - bucket{le=SLO}``.

    A pile of requests cut off by a client timeout is no smooth distribution: inside a 20%
    bucket its P99 reads up to ~12% off. So each timeout T gets bounds at T / 1.02, T,
    T * 1.02 and T * 1.05, which keep such a pile's P99 within about 2% whether it sits at
    T, just under it or up to a few tens of milliseconds over it. ``timeouts`` are the
    service's own client timeouts; None (the default) means :data:`ROUND_TIMEOUTS`, the round
    values people set (100 ms ... 60 s). Declared timeouts replace those (pass
    ``(*ROUND_TIMEOUTS, 1.7)`` to keep them); ``()`` has none. Above 30 s only the timeouts
    have bounds. ``benchmarks/bench_buckets.py`` prints the accuracy table.

    The price is series: one per bound per label set (109 bounds with one SLO and the round
    timeouts, 69 with ``timeouts=()``, plus ``+Inf``, ``_sum`` and ``_count``), and
    prometheus_client's memory and scrape time grow with them.
    :func:`suggest_buckets` designs 8-12 bounds from observed latencies where that matters
    more. More than :data:`MAX_OPERATION_BOUNDS` bounds (many distinct operation SLOs or
    timeouts) is a ``ValueError``.
    """
    pairs = list(operation_slos.items()) if isinstance(operation_slos, Mapping) else operation_slos
    slos = [float(value) for value in (slo, *(value for _, value in pairs)) if value is not None]
    for value in slos:
        _check_seconds("slo", value)
    _check_seconds("p99", p99)
    cutoffs = [float(t) for t in (ROUND_TIMEOUTS if timeouts is None else timeouts)]
    for value in cutoffs:
        _check_seconds("timeout", value)
    centres = [*slos, *([float(p99)] if p99 is not None else [])]
    near_timeouts = {b for t in cutoffs for b in _timeout_bounds(t)}
    inside = {b for b in near_timeouts if DEFAULT_LOW <= b <= DEFAULT_HIGH}
    # The coarse grid runs through the timeouts' bounds, so none of its steps is wider.
    coarse = _fill({DEFAULT_LOW, DEFAULT_HIGH, *inside}, DEFAULT_RATIO) - near_timeouts
    for centre in centres:  # an SLO's band replaces the coarse bounds inside it
        low, high = centre / SLO_BAND, centre * SLO_BAND
        coarse = {b for b in coarse if not low <= b <= high}
    band: set[float] = set()
    steps = math.ceil(math.log(SLO_BAND) / math.log(SLO_BAND_RATIO))
    for centre in centres:
        band |= {_round_sig(centre * SLO_BAND_RATIO**i, 4) for i in range(-steps, steps + 1)}
    # Where two bounds fall within 1%, keep the SLO or timeout itself over its neighbours,
    # and those over the coarse grid.
    ranked = dict.fromkeys(coarse, 0)
    ranked.update(dict.fromkeys(band | near_timeouts, 1))
    ranked.update(dict.fromkeys([*cutoffs, *slos], 2))
    result = tuple(_merge(ranked))
    if len(result) > MAX_OPERATION_BOUNDS:
        raise ValueError(
            f"operation SLOs and timeouts make {len(result)} histogram bounds (at most "
            f"{MAX_OPERATION_BOUNDS}); group operations under fewer distinct SLOs, or declare "
            "only the timeouts the service uses (metrics_timeouts)"
        )
    return result


def operation_buckets(
    slo: float,
    operation_slos: Sequence[tuple[str, float]] | Mapping[str, float] = (),
    *,
    p99: float | None = None,
    timeouts: Iterable[float] | None = None,
) -> tuple[float, ...]:
    """One histogram's bounds when operations have SLOs of their own: :func:`default_buckets`.

    Prometheus series of one histogram share their ``le`` bounds, so every operation's SLO is
    a bound (with its dense band) in the one layout, as is every timeout.
    """
    return default_buckets(slo, operation_slos, p99=p99, timeouts=timeouts)


def nearest_bounds(value: float, bounds: Sequence[float]) -> tuple[float | None, float | None]:
    """The bounds just below and just above ``value`` (None past either end)."""
    ordered = sorted(bounds)
    i = bisect_left(ordered, value)
    below = ordered[i - 1] if i > 0 else None
    above = ordered[i] if i < len(ordered) else None
    if above is not None and above == value:
        above = ordered[i + 1] if i + 1 < len(ordered) else None
    return below, above


def check_slo_bound(slo: float, bounds: Sequence[float], where: str = "the histogram") -> str:
    """``le`` text of ``slo`` when it is exactly one of ``bounds``; else ``ValueError``.

    The message names the nearest bounds: a ``le`` that is no bound matches no series, so a
    slow ratio or burn-rate alert built on it would silently never fire.
    """
    if not (isinstance(slo, (int, float)) and 0 < slo < math.inf):
        raise ValueError(f"slo must be a positive number of seconds, not {slo}")
    if float(slo) in {float(b) for b in bounds}:
        return le_text(float(slo))
    below, above = nearest_bounds(float(slo), bounds)
    near = " and ".join(f"{b:g}" for b in (below, above) if b is not None)
    raise ValueError(
        f'slo {slo:g} is not a bucket bound of {where} (nearest: {near}): an le="{slo:g}" '
        "selector matches no series, so SLO rules and panels on it would never fire. Use one "
        "of those, or give the service that SLO (OTELFIN_METRICS_SLO / metrics_slo, or "
        "metrics_operation_slos) so its histograms get that bound"
    )
