"""Benchmark results: the JSON document, a latency plot (PNG) and a compact text table.

JSON schema (``"schema": "sagashop-bench/1"``)::

    {
      "schema", "run_id", "started_at", "command",
      "machine": {"cpus_logical", "cpus_physical", "python", "platform", "temporalio",
                  "git_commit", "git_dirty", "load_average_at_start"},
      "load": {"concurrency", "duration_s" | "count", "warmup_s", "op_timeout_s"},
      "modes": {
        "<mode>": {
          "operations", "window_s", "throughput_ops_s",
          "latency_ms": {"count", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "min_ms", "max_ms"},
          "errors": {"total", "by_type", "samples": [{"error", "count"}], "samples_dropped"},
          "unmeasured": {"operations", "errors": {...same shape...}, "abandoned"},
          "cpu": {"wall_s", "cpu_s", "cores_busy", "by_process", "processes", "machine_cores",
                  "others_cores_busy", "per_op_s"} | null,
          "schedule_to_start": {"workflows_sampled", "histories_unreadable", "workflow_task": {latency},
                                "activity_task": {latency}, "workflow_task_processing": {latency},
                                "activity_processing": {latency}, "workflow_task_failures": {...}} | null,
          "config": {...}
        }
      },
      "ratios": {"saga/direct": {...}, "saga/engine-floor": {...}}   # present when both modes ran
    }

Ratios are bench.stats.compare(saga, other): latency_mean/p50/p95/p99, throughput, cpu_per_op.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import LoadResult
from bench.stats import Figures, LatencyStats, compare, latency_stats, per_op, throughput

SCHEMA = "sagashop-bench/1"
RATIO_PAIRS = (("saga", "direct"), ("saga", "engine-floor"))


def machine_info(repo: Path | None = None) -> dict[str, Any]:
    import psutil

    try:
        import temporalio

        temporal_version: str | None = temporalio.__version__
    except Exception:  # pragma: no cover - temporalio is a dependency
        temporal_version = None
    commit, dirty = _git(repo or Path(__file__).resolve().parent.parent)
    return {
        "cpus_logical": os.cpu_count(),
        "cpus_physical": psutil.cpu_count(logical=False),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "temporalio": temporal_version,
        "git_commit": commit,
        "git_dirty": dirty,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _git(repo: Path) -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(status.strip())


def mode_summary(
    result: LoadResult,
    *,
    schedule_to_start: dict[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON section of one mode."""
    stats = latency_stats(result.latencies_s)
    cpu: dict[str, Any] | None = None
    if result.cpu is not None:
        cpu = {**result.cpu.to_dict(), "per_op_s": per_op(result.cpu.total_s, result.completed)}
    return {
        "operations": result.completed,
        "window_s": result.window_s,
        "throughput_ops_s": throughput(result.completed, result.window_s),
        "latency_ms": stats.to_dict(),
        "errors": result.errors.to_dict(),
        "unmeasured": {
            "operations": result.unmeasured_ops,
            "errors": result.unmeasured_errors.to_dict(),
            "abandoned": result.abandoned,
        },
        "cpu": cpu,
        "schedule_to_start": schedule_to_start,
        "config": dict(config or {}),
    }


def _figures(section: Mapping[str, Any]) -> Figures:
    cpu = section.get("cpu") or {}
    return Figures(
        throughput_ops_s=section["throughput_ops_s"],
        latency=LatencyStats(**section["latency_ms"]),
        cpu_s_per_op=cpu.get("per_op_s"),
    )


def build_report(
    modes: Mapping[str, Mapping[str, Any]],
    *,
    machine: Mapping[str, Any],
    load: Mapping[str, Any],
    run_id: str,
    command: str,
    started_at: datetime | None = None,
) -> dict[str, Any]:
    """The whole document; ratios saga/direct and saga/engine-floor when both sides ran."""
    ratios = {
        f"{a}/{b}": compare(_figures(modes[a]), _figures(modes[b]))
        for a, b in RATIO_PAIRS
        if a in modes and b in modes
    }
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "started_at": (started_at or datetime.now(UTC)).isoformat(),
        "command": command,
        "machine": dict(machine),
        "load": dict(load),
        "modes": {name: dict(section) for name, section in modes.items()},
        "ratios": ratios,
    }


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return path


def plot_latency(results: Mapping[str, LoadResult], path: Path) -> Path:
    """Two panels: latency over the measured window per mode (points and a rolling median), and the
    latency CDF per mode (log x axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (over_time, cdf) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    for name, result in results.items():
        if not result.timeline:
            continue
        xs = [t for t, _ in result.timeline]
        ys = [lat * 1000 for _, lat in result.timeline]
        points = over_time.scatter(xs, ys, s=3, alpha=0.25, label=None)
        colour = points.get_facecolor()[0]
        mx, my = _rolling_median(xs, ys, window=max(5, min(201, len(ys) // 50)))
        over_time.plot(mx, my, color=colour, lw=1.5, label=name)
        ordered = sorted(ys)
        n = len(ordered)
        cdf.step(ordered, [(i + 1) / n for i in range(n)], where="post", color=colour, label=name)
    over_time.set(title="latency over time (rolling median)", xlabel="s since warm-up end", ylabel="ms")
    over_time.set_ylim(bottom=0)
    cdf.set(title="latency CDF", xlabel="ms (log)", ylabel="fraction of operations")
    cdf.set_xscale("log")
    for quantile in (0.5, 0.95, 0.99):
        cdf.axhline(quantile, color="grey", lw=0.5, ls=":")
    for ax in (over_time, cdf):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rolling_median(
    xs: list[float], ys: list[float], *, window: int, points: int = 500
) -> tuple[list[float], list[float]]:
    """A centred rolling median of ys, evaluated at no more than ``points`` positions."""
    import statistics

    half = window // 2
    stride = max(1, len(ys) // points)
    at = range(0, len(ys), stride)
    return [xs[i] for i in at], [statistics.median(ys[max(0, i - half) : i + half + 1]) for i in at]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(report: Mapping[str, Any]) -> str:
    """A compact fixed-width summary: one line per mode, then the ratios."""
    head = (
        f"{'mode':<14}{'ops':>7}{'ops/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'err':>5}"
        f"{'cpu ms/op':>10}{'wft s2s p50/p99':>17}{'act s2s p50/p99':>17}"
    )
    lines = [head, "-" * len(head)]
    for name, m in report["modes"].items():
        lat = m["latency_ms"]
        cpu = (m.get("cpu") or {}).get("per_op_s")
        s2s = m.get("schedule_to_start") or {}
        wft, act = s2s.get("workflow_task") or {}, s2s.get("activity_task") or {}
        lines.append(
            f"{name:<14}{m['operations']:>7}{m['throughput_ops_s']:>8.1f}{_fmt(lat['p50_ms']):>9}"
            f"{_fmt(lat['p95_ms']):>9}{_fmt(lat['p99_ms']):>9}{m['errors']['total']:>5}"
            f"{_fmt(cpu * 1000 if cpu is not None else None):>10}"
            f"{_fmt(wft.get('p50_ms')) + '/' + _fmt(wft.get('p99_ms')):>17}"
            f"{_fmt(act.get('p50_ms')) + '/' + _fmt(act.get('p99_ms')):>17}"
        )
    noise = [
        f"{name} {cpu['others_cores_busy']:.1f}"
        for name, m in report["modes"].items()
        if (cpu := m.get("cpu")) and cpu.get("others_cores_busy") is not None
    ]
    if noise:
        lines.append("cores busy with other processes meanwhile (noise): " + ", ".join(noise))
    for pair, r in report.get("ratios", {}).items():
        lines.append(
            f"{pair}: p50 x{_fmt(r['latency_p50'], 2)}  p99 x{_fmt(r['latency_p99'], 2)}  "
            f"throughput x{_fmt(r['throughput'], 2)}  cpu/op x{_fmt(r['cpu_per_op'], 2)}"
        )
    return "\n".join(lines)
