"""The benchmark harness: statistics, the closed-loop load generator, CPU accounting, the report,
and one short real engine-floor run against the session's Temporal dev server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from bench.__main__ import build_parser, run_benchmark
from bench.engine_floor import DEFAULT_ACTIVITIES
from bench.harness import (
    MESSAGE_LIMIT,
    CpuMeter,
    ErrorLog,
    LoadConfig,
    TemporalTarget,
    WorkflowIdLog,
    describe_exception,
    listening_source,
    own_process_source,
    require_loopback,
    run_load,
)
from bench.report import build_report, format_table, mode_summary, plot_latency, write_json
from bench.stats import Figures, LatencyStats, compare, latency_stats, per_op, percentile, ratio, throughput
from core.settings import Settings

# --------------------------------------------------------------------------------------------------
# stats


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([7.0], 99) == 7.0


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_stats_in_milliseconds() -> None:
    stats = latency_stats([0.004, 0.001, 0.003, 0.002])  # seconds, unsorted
    assert stats.count == 4
    assert stats.mean_ms == pytest.approx(2.5)
    assert stats.p50_ms == pytest.approx(2.5)
    assert stats.p99_ms == pytest.approx(3.97)
    assert (stats.min_ms, stats.max_ms) == (pytest.approx(1.0), pytest.approx(4.0))
    empty = latency_stats([])
    assert empty.count == 0 and empty.p50_ms is None and empty.mean_ms is None


def test_throughput_ratios_and_comparison() -> None:
    assert throughput(300, 30.0) == 10.0
    assert throughput(5, 0.0) == 0.0
    assert per_op(3.0, 30) == pytest.approx(0.1)
    assert per_op(3.0, 0) is None and per_op(None, 3) is None
    assert ratio(4.0, 2.0) == 2.0 and ratio(1.0, 0.0) is None and ratio(None, 1.0) is None
    saga = Figures(10.0, LatencyStats(100, 400.0, 400.0, 600.0, 800.0, 100.0, 900.0), cpu_s_per_op=0.2)
    direct = Figures(40.0, LatencyStats(100, 100.0, 100.0, 200.0, 400.0, 50.0, 500.0), cpu_s_per_op=0.05)
    ratios = compare(saga, direct)
    assert ratios == {
        "latency_mean": 4.0,
        "latency_p50": 4.0,
        "latency_p95": 3.0,
        "latency_p99": 2.0,
        "throughput": 0.25,
        "cpu_per_op": 4.0,
    }
    assert compare(saga, Figures(0.0, latency_stats([])))["latency_p50"] is None


# --------------------------------------------------------------------------------------------------
# harness


async def test_duration_mode_counts_and_respects_the_deadline() -> None:
    calls: list[int] = []

    async def op(user: int) -> None:
        calls.append(user)
        await asyncio.sleep(0.01)

    started = time.monotonic()
    result = await run_load(op, LoadConfig(concurrency=4, duration_s=0.6, warmup_s=0.2), progress=False)
    elapsed = time.monotonic() - started

    assert elapsed < 0.8 + 0.5  # warm-up + window + one short drain, with slack for a busy machine
    assert result.window_s == pytest.approx(0.6)
    assert set(calls) == {0, 1, 2, 3}
    assert 20 <= result.completed <= 0.6 * 4 / 0.01 + 4
    assert result.unmeasured_ops > 0  # the warm-up's calls
    assert result.completed + result.unmeasured_ops == len(calls)
    assert result.errors.total == 0 and result.abandoned == 0
    assert min(result.latencies_s) >= 0.01
    assert all(0 <= at <= 0.6 + 1e-6 for at, _ in result.timeline)


async def test_warm_up_is_excluded() -> None:
    t0 = time.monotonic()

    async def op(user: int) -> None:
        # slow calls only start early enough to end well inside the 0.6 s warm-up
        await asyncio.sleep(0.1 if time.monotonic() - t0 < 0.3 else 0.002)

    result = await run_load(op, LoadConfig(concurrency=3, duration_s=0.4, warmup_s=0.6), progress=False)
    assert result.unmeasured_ops >= 3
    assert result.completed > 0
    assert max(result.latencies_s) < 0.1


async def test_errors_are_recorded_and_bounded() -> None:
    counter = iter(range(10_000))

    async def op(user: int) -> None:
        n = next(counter)
        await asyncio.sleep(0.002)
        if n % 2:
            raise ValueError(f"boom {n} " + "x" * 1000)

    result = await run_load(op, LoadConfig(concurrency=2, count=40, max_error_samples=5), progress=False)
    assert result.completed + result.errors.total == 40
    assert result.errors.total >= 15
    log = result.errors.to_dict()
    assert log["by_type"] == {"ValueError": result.errors.total}
    assert len(log["samples"]) == 5 and log["samples_dropped"] == result.errors.total - 5
    assert all(s["error"].startswith("ValueError: boom") for s in log["samples"])
    assert all(len(s["error"]) <= MESSAGE_LIMIT for s in log["samples"])


async def test_count_mode_measures_exactly_count_after_warm_up() -> None:
    async def op(user: int) -> None:
        await asyncio.sleep(0.003)

    result = await run_load(op, LoadConfig(concurrency=5, count=37, warmup_s=0.1), progress=False)
    assert result.completed == 37
    assert result.unmeasured_ops > 0
    assert result.window_end >= result.window_start


async def test_slow_operations_time_out_and_the_run_still_stops() -> None:
    async def op(user: int) -> None:
        await asyncio.sleep(5)

    started = time.monotonic()
    result = await run_load(op, LoadConfig(concurrency=2, count=2, op_timeout_s=0.1), progress=False)
    assert time.monotonic() - started < 1.0
    assert result.completed == 0 and result.errors.total == 2
    assert result.errors.to_dict()["samples"][0]["error"] == "TimeoutError: operation exceeded 0.1 s"


async def test_in_flight_calls_at_the_deadline_are_drained_not_counted() -> None:
    async def op(user: int) -> None:
        await asyncio.sleep(0.25)

    result = await run_load(op, LoadConfig(concurrency=2, duration_s=0.4), progress=False)
    # each user completes one call at ~0.25 s, starts another that ends at ~0.5 s (after the deadline)
    assert result.completed == 2
    assert result.unmeasured_ops == 2
    assert result.abandoned == 0


def test_describe_exception_follows_causes() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        assert describe_exception(exc) == "RuntimeError: outer <- KeyError: 'inner'"
    log = ErrorLog(max_samples=1)
    log.record(ValueError("a"))
    log.record(ValueError("a"))
    log.record(TypeError("b"))
    assert log.to_dict() == {
        "total": 3,
        "by_type": {"ValueError": 2, "TypeError": 1},
        "samples": [{"error": "ValueError: a", "count": 2}],
        "samples_dropped": 1,
    }


async def test_cpu_meter_counts_cpu_of_the_window_only() -> None:
    def burn(seconds: float) -> None:
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    burn(0.3)  # before the window: not counted
    meter = CpuMeter([own_process_source("me")], interval_s=0.05)
    await meter.start()
    worker = threading.Thread(target=burn, args=(0.3,))
    worker.start()
    await asyncio.to_thread(worker.join)
    usage = await meter.stop()
    assert 0.25 <= usage.total_s < 0.3 + 0.25
    assert set(usage.by_label) == {"me"}
    assert usage.processes == 1


def test_only_loopback_targets() -> None:
    for ok in ("127.0.0.1:7233", "localhost:8000", "http://127.0.0.1:8000/v1/checkout", "[::1]:7233"):
        assert require_loopback(ok) == ok
    for bad in ("10.0.0.7:7233", "example.org:443", "https://example.org/v1"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
            require_loopback(bad)


def test_workflow_id_sample_is_spread_over_the_window() -> None:
    log = WorkflowIdLog([(float(i), f"wf-{i}") for i in range(100)])
    assert log.sample(10.0, 19.0, 100) == [f"wf-{i}" for i in range(10, 20)]
    assert log.sample(0.0, 99.0, 4) == ["wf-0", "wf-25", "wf-50", "wf-75"]


def test_cli_refuses_unknown_and_unavailable_modes(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["--modes", "engine-floor"]).modes == ["engine-floor"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--modes", "nope"])
    assert "unknown mode" in capsys.readouterr().err
    assert parser.parse_args(["--modes", "engine-floor,direct,saga"]).modes == [
        "engine-floor",
        "direct",
        "saga",
    ]


# --------------------------------------------------------------------------------------------------
# report


async def test_report_writes_json_with_ratios_and_a_png(tmp_path: Path) -> None:
    async def fast(user: int) -> None:
        await asyncio.sleep(0.002)

    async def slow(user: int) -> None:
        await asyncio.sleep(0.008)

    results = {}
    for name, op in (("direct", fast), ("engine-floor", fast), ("saga", slow)):
        meter = CpuMeter([own_process_source()])
        results[name] = await run_load(
            op, LoadConfig(concurrency=2, duration_s=0.3), label=name, cpu_meter=meter, progress=False
        )
    modes = {name: mode_summary(r, schedule_to_start=None, config={"k": 1}) for name, r in results.items()}
    report = build_report(
        modes, machine={"cpus_logical": 2}, load={"concurrency": 2}, run_id="t", command="test"
    )
    path = write_json(report, tmp_path / "out" / "results.json")
    loaded = json.loads(path.read_text())
    assert loaded["schema"] == "sagashop-bench/1"
    assert set(loaded["modes"]) == {"direct", "engine-floor", "saga"}
    saga = loaded["modes"]["saga"]
    assert saga["operations"] > 0 and saga["throughput_ops_s"] > 0
    assert saga["latency_ms"]["p50_ms"] >= 8
    assert saga["cpu"]["cpu_s"] >= 0 and "bench" in saga["cpu"]["by_process"]
    assert set(loaded["ratios"]) == {"saga/direct", "saga/engine-floor"}
    assert loaded["ratios"]["saga/direct"]["latency_p50"] > 1.5

    png = plot_latency(results, tmp_path / "out" / "latency.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000

    table = format_table(report)
    assert "saga/direct: p50 x" in table and "engine-floor" in table


# --------------------------------------------------------------------------------------------------
# one real engine-floor run


async def test_engine_floor_real_run(
    temporal_env: WorkflowEnvironment, settings: Settings, tmp_path: Path
) -> None:
    port = int(settings.temporal_address.rsplit(":", 1)[1])
    target = TemporalTarget(
        settings.temporal_address,
        settings.temporal_namespace,
        temporal_env.client,
        listening_source("temporal", port),
    )
    argv = "--modes engine-floor --concurrency 4 --duration 3 --warmup 1 --no-progress --history-sample 20"
    args = build_parser().parse_args([*argv.split(), "--out", str(tmp_path)])
    report, folder = await run_benchmark(args, temporal=target, settings=settings, command="test")

    floor = report["modes"]["engine-floor"]
    assert floor["operations"] > 0, floor
    assert floor["errors"]["total"] == 0, floor["errors"]
    assert floor["unmeasured"]["errors"]["total"] == 0, floor["unmeasured"]
    assert floor["latency_ms"]["p50_ms"] > 0
    n = DEFAULT_ACTIVITIES
    assert floor["config"]["activities_per_workflow"] == n
    assert floor["config"]["max_concurrent_activities"] == 100

    cpu = floor["cpu"]
    assert cpu["per_op_s"] > 0
    assert {"bench", "floor-worker", "temporal"} <= set(cpu["by_process"])
    assert cpu["by_process"]["floor-worker"] > 0 and cpu["by_process"]["temporal"] > 0

    s2s = floor["schedule_to_start"]
    assert 0 < s2s["workflows_sampled"] <= 20 and not s2s["histories_unreadable"]
    # n activities one after another and n + 1 completed workflow tasks per workflow
    assert s2s["activity_task"]["count"] == n * s2s["workflows_sampled"]
    assert s2s["workflow_task"]["count"] >= (n + 1) * s2s["workflows_sampled"]
    assert s2s["activity_processing"]["count"] == n * s2s["workflows_sampled"]
    assert s2s["workflow_task_processing"]["count"] == (n + 1) * s2s["workflows_sampled"]
    for kind in ("workflow_task", "activity_task", "workflow_task_processing", "activity_processing"):
        assert 0 <= s2s[kind]["p50_ms"] <= s2s[kind]["p99_ms"] < 5_000, s2s[kind]
    assert s2s["workflow_task_failures"]["total"] == 0

    assert (folder / "results.json").is_file()
    assert json.loads((folder / "results.json").read_text())["modes"]["engine-floor"]["operations"] > 0
    assert (folder / "latency.png").stat().st_size > 10_000
    assert (folder / "engine-floor-worker.log").exists()
