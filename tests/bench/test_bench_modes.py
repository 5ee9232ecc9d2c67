"""The saga and direct modes for real: one short run of `python -m bench --modes direct,saga` on its
own throw-away platform (PostgreSQL cluster, Temporal dev server, every worker, the API, the
sandboxes), then nothing of it left running."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest

from bench.__main__ import build_parser, run_benchmark
from bench.engine_floor import DEFAULT_ACTIVITIES
from bench.platform import CartFiller, platform_options
from devstack.ports import port_in_use

pytestmark = pytest.mark.timeout(240)

ARGV = (
    "--modes direct,saga --concurrency 3 --duration 4 --warmup 2 --settle 0 --no-progress "
    "--history-sample 10 --products 20 --bench-variants 8"
)


def test_platform_options_from_the_command_line() -> None:
    args = build_parser().parse_args(
        "--modes saga --saga-workers 2 --service-workers 2 --scaled-services product,order".split()
    )
    opts = platform_options(args)
    counts = opts.describe()["service_worker_processes"]
    assert opts.saga_workers == 2 and counts["product"] == 2 and counts["order"] == 2
    assert counts["auth"] == 1 and not opts.start_shipping
    with pytest.raises(ValueError, match="unknown service"):
        platform_options(build_parser().parse_args(["--scaled-services", "nope"]))
    with pytest.raises(ValueError, match="shoppers"):
        CartFiller(None, [], [], concurrency=2)


async def test_direct_and_saga_short_real_run(tmp_path: Path) -> None:
    args = build_parser().parse_args([*ARGV.split(), "--out", str(tmp_path)])
    report, folder = await run_benchmark(args, command="test")

    for name in ("direct", "saga"):
        mode = report["modes"][name]
        assert mode["operations"] > 0, (name, mode)
        assert mode["errors"]["total"] == 0, (name, mode["errors"])
        assert mode["unmeasured"]["errors"]["total"] == 0, (name, mode["unmeasured"])
        assert mode["config"]["checkouts_that_waited_for_their_cart"] <= mode["operations"]
        assert mode["cpu"]["per_op_s"] > 0

    direct, saga = report["modes"]["direct"], report["modes"]["saga"]
    assert {"bench", "postgres", "sandboxes"} <= set(direct["cpu"]["by_process"])
    assert {"bench", "postgres", "api", "saga-workers", "worker-cart", "worker-payment", "temporal"} <= set(
        saga["cpu"]["by_process"]
    )
    assert saga["config"]["saga_worker_processes"] == 1 and "dead_processes" not in saga["config"]
    s2s = saga["schedule_to_start"]
    assert 0 < s2s["workflows_sampled"] <= 10 and not s2s["histories_unreadable"]
    # the checkout's own activities (the payment child's authorization is not sampled)
    assert s2s["activity_task"]["count"] >= (DEFAULT_ACTIVITIES - 1) * s2s["workflows_sampled"]
    assert s2s["workflow_task_failures"]["total"] == 0
    assert set(report["ratios"]) == {"saga/direct"}
    assert report["ratios"]["saga/direct"]["latency_p50"] is not None

    results = json.loads((folder / "results.json").read_text())
    assert results["modes"]["saga"]["operations"] == saga["operations"]
    assert (folder / "latency.png").stat().st_size > 10_000
    assert (folder / "logs" / "worker-sagas.log").exists()

    # nothing of the platform is left: ports closed, no process of its cluster or workers
    api_port = urlparse(saga["config"]["api_url"]).port
    assert api_port is not None and not port_in_use(api_port)
    assert not port_in_use(saga["config"]["postgres_port"])
    data_dir = saga["config"]["platform_data_dir"]
    assert not Path(data_dir).parent.exists()
    leftovers = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.environ().get("DATA_DIR") == data_dir or data_dir in " ".join(proc.info["cmdline"] or []):
                leftovers.append(proc.info["cmdline"])
        except psutil.Error:
            continue
    assert leftovers == []
