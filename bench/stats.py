"""Latency statistics, throughput and side-by-side ratios: pure functions over plain numbers.

Percentile method: linear interpolation between the closest ranks (Hyndman & Fan type 7, the default
of NumPy and of spreadsheets' PERCENTILE.INC). For n sorted values x[0..n-1] and a quantile q in
[0, 100], h = (n - 1) * q / 100 and the result is x[floor(h)] + (h - floor(h)) * (x[floor(h)+1] -
x[floor(h)]). So p50 of 1..100 is 50.5, p99 is 99.01, and every result lies between min and max.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values (method in the module docstring)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    h = (len(sorted_values) - 1) * q / 100
    lo = math.floor(h)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


@dataclass(frozen=True)
class LatencyStats:
    """Latency figures in milliseconds; every figure is None when there were no samples."""

    count: int
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    min_ms: float | None
    max_ms: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def latency_stats(latencies_s: Sequence[float]) -> LatencyStats:
    """Statistics of latencies given in seconds, reported in milliseconds."""
    if not latencies_s:
        return LatencyStats(0, None, None, None, None, None, None)
    ms = sorted(v * 1000.0 for v in latencies_s)
    return LatencyStats(
        count=len(ms),
        mean_ms=math.fsum(ms) / len(ms),
        p50_ms=percentile(ms, 50),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        min_ms=ms[0],
        max_ms=ms[-1],
    )


def throughput(count: int, seconds: float) -> float:
    """Operations per second; 0 for an empty window."""
    if seconds <= 0:
        return 0.0
    return count / seconds


def per_op(total: float | None, ops: int) -> float | None:
    """A total (e.g. CPU seconds) divided by the number of operations; None when undefined."""
    if total is None or ops <= 0:
        return None
    return total / ops


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Figures:
    """The comparable figures of one mode."""

    throughput_ops_s: float
    latency: LatencyStats
    cpu_s_per_op: float | None = None


def compare(a: Figures, b: Figures) -> dict[str, float | None]:
    """Ratios a / b: latency (mean, p50, p95, p99), throughput and CPU per operation.

    For latency and CPU a ratio above 1 means `a` is slower / costlier; for throughput below 1."""
    return {
        "latency_mean": ratio(a.latency.mean_ms, b.latency.mean_ms),
        "latency_p50": ratio(a.latency.p50_ms, b.latency.p50_ms),
        "latency_p95": ratio(a.latency.p95_ms, b.latency.p95_ms),
        "latency_p99": ratio(a.latency.p99_ms, b.latency.p99_ms),
        "throughput": ratio(a.throughput_ops_s, b.throughput_ops_s),
        "cpu_per_op": ratio(a.cpu_s_per_op, b.cpu_s_per_op),
    }
