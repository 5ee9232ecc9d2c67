"""A throw-away platform for one benchmark run, and the shoppers and carts the checkout modes share.

``platform_for_run`` starts, on free ports and in a temporary folder:

- its own PostgreSQL cluster (``devstack.postgres.LocalCluster``), the ten databases and roles,
  every service's migrations at head;
- the sandboxes (PSP, carrier, SMTP sink);
- with a Temporal server (the run's): every service worker (``--service-workers`` processes for each
  of ``--scaled-services``, one for the others), ``--saga-workers`` saga workers and the API;

then loads the demo catalog, shipping and coupons (``devstack.seed``), gives ``--bench-variants``
catalog variants a stock that never runs out, and creates the demo shoppers (account, profile,
address, a PSP-tokenized card). Everything is stopped and deleted when the run ends, on error and on
Ctrl-C too; process logs stay in ``<results>/logs/``.

Carts: a checkout needs a filled cart, but filling it is not part of what the benchmark times (the
checkout latency runs from ``POST /v1/checkout`` to CONFIRMED). Each virtual user therefore owns two
shoppers and alternates between them: while shopper A checks out, shopper B's cart is being filled
(through the cart service in the benchmark process, the way ``tests/factories.fill_cart`` does), so
the next checkout finds its cart ready. Both the saga and the direct mode fill carts this way, so
the filling costs both the same. ``CartFiller.waited_s`` records any time a checkout still had to
wait for its cart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ProcessSource, TemporalTarget, pid_source, postgres_source
from core.registry import SERVICE_NAMES

PLATFORM_SERVICES = SERVICE_NAMES  # one worker kind per service (core/registry.py)
DEFAULT_STOCK = 10_000_000  # units per benchmark variant: never runs out
TOKEN_REFRESH_S = 600.0  # access tokens live 15 minutes; shoppers get a fresh one after 10


@dataclass(frozen=True)
class PlatformOptions:
    saga_workers: int = 1
    service_workers: int = 1
    scaled_services: tuple[str, ...] = PLATFORM_SERVICES  # these get service_workers processes each
    api_workers: int = 1
    worker_max_concurrent: int = 100  # worker.py --max-concurrent
    products: int = 300
    bench_variants: int = 50
    max_lines: int = 2  # cart lines per checkout: 1..max_lines, quantity 1..2 each
    shoppers_per_user: int = 2
    start_shipping: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "saga_worker_processes": self.saga_workers,
            "service_worker_processes": {
                name: (self.service_workers if name in self.scaled_services else 1)
                for name in PLATFORM_SERVICES
            },
            "api_processes": self.api_workers,
            "worker_max_concurrent": self.worker_max_concurrent,
            "catalog_products": self.products,
            "bench_variants": self.bench_variants,
            "cart_lines": f"1..{self.max_lines}, quantity 1..2",
            "start_shipping": self.start_shipping,
        }


def add_arguments(group: Any) -> None:
    """The platform's options on the `python -m bench` command line (an argparse group)."""
    d = PlatformOptions()
    group.add_argument("--saga-workers", type=int, default=d.saga_workers, help="saga worker processes")
    group.add_argument(
        "--service-workers",
        type=int,
        default=d.service_workers,
        help="worker processes per service task queue (for --scaled-services)",
    )
    group.add_argument(
        "--scaled-services",
        default="all",
        help="comma-separated services that get --service-workers processes (the others one); default all",
    )
    group.add_argument("--api-workers", type=int, default=d.api_workers, help="uvicorn worker processes")
    group.add_argument(
        "--worker-max-concurrent",
        type=int,
        default=d.worker_max_concurrent,
        help="worker.py --max-concurrent (activity / workflow-task slots per process)",
    )
    group.add_argument("--products", type=int, default=d.products, help="demo catalog size")
    group.add_argument(
        "--bench-variants", type=int, default=d.bench_variants, help="catalog variants the shoppers buy"
    )
    group.add_argument("--max-lines", type=int, default=d.max_lines, help="cart lines per checkout (1..N)")
    group.add_argument(
        "--start-shipping",
        action="store_true",
        help="let confirmed checkouts start the shipping saga (off: the benchmark measures checkout only)",
    )


def platform_options(options: Any) -> PlatformOptions:
    d = PlatformOptions()
    scaled = str(getattr(options, "scaled_services", "all") or "all")
    names = PLATFORM_SERVICES if scaled == "all" else tuple(s.strip() for s in scaled.split(",") if s.strip())
    unknown = sorted(set(names) - set(PLATFORM_SERVICES))
    if unknown:
        raise ValueError(f"--scaled-services: unknown service(s) {', '.join(unknown)}")
    opts = PlatformOptions(
        saga_workers=int(getattr(options, "saga_workers", d.saga_workers)),
        service_workers=int(getattr(options, "service_workers", d.service_workers)),
        scaled_services=names,
        api_workers=int(getattr(options, "api_workers", d.api_workers)),
        worker_max_concurrent=int(getattr(options, "worker_max_concurrent", d.worker_max_concurrent)),
        products=int(getattr(options, "products", d.products)),
        bench_variants=int(getattr(options, "bench_variants", d.bench_variants)),
        max_lines=int(getattr(options, "max_lines", d.max_lines)),
        start_shipping=bool(getattr(options, "start_shipping", d.start_shipping)),
    )
    for name in ("saga_workers", "service_workers", "api_workers", "worker_max_concurrent", "bench_variants"):
        if getattr(opts, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if opts.max_lines < 1:
        raise ValueError("--max-lines must be at least 1")
    return opts


# --------------------------------------------------------------------------------------------------
# What the modes use


@dataclass(frozen=True)
class BenchVariant:
    product_id: uuid.UUID
    variant_id: uuid.UUID
    unit_price_amount: int
    currency: str


@dataclass
class BenchShopper:
    index: int
    user_id: uuid.UUID
    email: str
    first_name: str
    address_id: uuid.UUID
    payment_method_id: uuid.UUID
    _token: str = ""
    _token_at: float = -1e9

    def headers(self, settings: Any) -> dict[str, str]:
        """A bearer header with an access token (re-issued before it can expire)."""
        if time.monotonic() - self._token_at > TOKEN_REFRESH_S:
            from services.auth.tokens import issue_access_token

            self._token = issue_access_token(settings, self.user_id, ["customer"]).token
            self._token_at = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"}


class CartFiller:
    """Two (``per_user``) shoppers per virtual user, used in turn; a shopper's cart is filled again in
    the background as soon as its checkout has finished, while the other shopper checks out."""

    def __init__(
        self,
        sessions: Any,  # SessionFactory of cart_db
        shoppers: Sequence[BenchShopper],
        variants: Sequence[BenchVariant],
        *,
        concurrency: int,
        per_user: int = 2,
        max_lines: int = 2,
        seed: int = 7,
    ) -> None:
        if len(shoppers) < concurrency * per_user:
            raise ValueError(f"need {concurrency * per_user} shoppers, have {len(shoppers)}")
        self.sessions = sessions
        self.variants = list(variants)
        self.per_user = per_user
        self.max_lines = max_lines
        self.groups = [list(shoppers[i * per_user : (i + 1) * per_user]) for i in range(concurrency)]
        self.turn = [0] * concurrency
        self.pending: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.rng = random.Random(seed)
        self.waited_s = 0.0
        self.waits = 0
        self.fills = 0
        self.lines_filled = 0

    async def fill(self, shopper: BenchShopper) -> None:
        """1..max_lines random benchmark variants, quantity 1..2, into the shopper's open cart (left
        as it is when it still has items, e.g. after a failed checkout)."""
        from services.cart import service as cart_service
        from services.cart.schemas import AddItem

        count = self.rng.randint(1, min(self.max_lines, len(self.variants)))
        chosen = self.rng.sample(self.variants, count)
        quantities = [self.rng.randint(1, 2) for _ in chosen]
        async with self.sessions() as s, s.begin():
            cart = await cart_service.get_or_create_user_cart(s, shopper.user_id)
            if cart.items:
                return
            for variant, quantity in zip(chosen, quantities, strict=True):
                await cart_service.add_item(
                    s,
                    cart.id,
                    AddItem(
                        variant_id=variant.variant_id,
                        product_id=variant.product_id,
                        quantity=quantity,
                        unit_price_amount=variant.unit_price_amount,
                        currency=variant.currency,
                    ),
                )
        self.fills += 1
        self.lines_filled += count

    async def prefill(self) -> None:
        """Fill every shopper's cart before the load starts."""
        gate = asyncio.Semaphore(8)

        async def one(shopper: BenchShopper) -> None:
            async with gate:
                await self.fill(shopper)

        await asyncio.gather(*(one(s) for group in self.groups for s in group))

    async def take(self, user: int) -> BenchShopper:
        """The shopper whose turn it is for virtual user ``user``, once its cart is filled."""
        group = self.groups[user]
        shopper = group[self.turn[user] % len(group)]
        self.turn[user] += 1
        task = self.pending.pop(shopper.user_id, None)
        if task is not None:
            if not task.done():
                started = time.monotonic()
                await asyncio.shield(task)
                self.waited_s += time.monotonic() - started
                self.waits += 1
            task.result()  # a failed fill fails this checkout
        return shopper

    def refill(self, shopper: BenchShopper) -> None:
        """Start filling the shopper's next cart in the background (its checkout has finished)."""
        self.pending[shopper.user_id] = asyncio.create_task(self.fill(shopper))

    async def close(self) -> None:
        tasks = list(self.pending.values())
        self.pending.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        return {
            "cart_fill": "cart service in the benchmark process, in the background (see bench.platform)",
            "cart_fills": self.fills,
            "cart_lines_filled": self.lines_filled,
            "checkouts_that_waited_for_their_cart": self.waits,
            "cart_wait_s_total": round(self.waited_s, 3),
        }


@dataclass
class Platform:
    settings: Any  # core.settings.Settings of the platform (ports, databases, the run's Temporal)
    options: PlatformOptions
    supervisor: Any  # devstack.supervisor.Supervisor
    cluster: Any  # devstack.postgres.LocalCluster
    variants: list[BenchVariant] = field(default_factory=list)
    shoppers: list[BenchShopper] = field(default_factory=list)
    shipping_method_id: uuid.UUID | None = None
    engines: dict[str, Any] = field(default_factory=dict)  # the benchmark's own (cart fill)
    started_in_s: float = 0.0

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def pids(self, prefix: str) -> list[int]:
        return [p.pid for name, p in self.supervisor.procs.items() if name.startswith(prefix) and p.alive()]

    def session(self, name: str) -> Any:
        from core.db import session_factory

        return session_factory(self.engines[name])

    def cart_filler(self, concurrency: int, *, seed: int) -> CartFiller:
        return CartFiller(
            self.session("cart"),
            self.shoppers,
            self.variants,
            concurrency=concurrency,
            per_user=self.options.shoppers_per_user,
            max_lines=self.options.max_lines,
            seed=seed,
        )

    def cpu_sources(self, *, workers: bool) -> list[ProcessSource]:
        """PostgreSQL (postmaster and every backend) and the sandboxes; with ``workers`` also the
        saga workers, each service's workers (label ``worker-<service>``) and the API (with its
        uvicorn children)."""
        sources = [
            postgres_source(self.settings.postgres_port),
            pid_source("sandboxes", [*self.pids("psp"), *self.pids("carrier"), *self.pids("smtp-sink")]),
        ]
        if workers:
            sources += [
                pid_source("saga-workers", self.pids("worker-sagas")),
                *(pid_source(f"worker-{name}", self.pids(f"worker-{name}")) for name in PLATFORM_SERVICES),
                pid_source("api", self.pids("api"), children=True),
            ]
        return sources

    def check_alive(self) -> None:
        dead = [
            f"{name} (exit {p.popen.returncode}): {p.log_tail(5)}"
            for name, p in self.supervisor.procs.items()
            if not p.alive()
        ]
        if dead:
            raise RuntimeError("platform processes died: " + "; ".join(dead))


_RUNS: dict[str, Platform] = {}


def for_run(run_id: str) -> Platform:
    """The platform ``platform_for_run`` started for this run (the modes' factories look it up)."""
    try:
        return _RUNS[run_id]
    except KeyError:
        raise RuntimeError(f"no benchmark platform for run {run_id}") from None


def worker_specs(settings: Any, opts: PlatformOptions) -> list[Any]:
    from devstack.supervisor import ProcSpec, python_argv

    slots = ["--max-concurrent", str(opts.worker_max_concurrent)]
    specs = []
    for name in PLATFORM_SERVICES:
        count = opts.service_workers if name in opts.scaled_services else 1
        specs += [
            ProcSpec(f"worker-{name}" + (f"-{i}" if i else ""), python_argv("worker.py", name, *slots))
            for i in range(count)
        ]
    specs += [
        ProcSpec("worker-sagas" + (f"-{i}" if i else ""), python_argv("worker.py", "sagas", *slots))
        for i in range(opts.saga_workers)
    ]
    return specs


def platform_settings(base: Any, tmp: Path, pg_port: int, opts: PlatformOptions) -> Any:
    from devstack.ports import free_port

    return base.model_copy(
        update={
            "app_env": "development",
            "data_dir": tmp / "var",
            "postgres_host": "127.0.0.1",
            "postgres_port": pg_port,
            "postgres_admin_url": None,
            **{f"{name}_database_url": None for name in PLATFORM_SERVICES},
            "api_host": "127.0.0.1",
            "api_port": free_port(),
            "public_base_url": None,
            "psp_url": f"http://127.0.0.1:{free_port()}",
            "carrier_url": f"http://127.0.0.1:{free_port()}",
            "smtp_host": "127.0.0.1",
            "smtp_port": free_port(),
            "mail_sink_url": f"http://127.0.0.1:{free_port()}",
            "start_shipping": opts.start_shipping,
            "maintenance_interval_s": 86_400.0,  # no expiry sweep in the middle of a measurement
        }
    )


@contextlib.asynccontextmanager
async def platform_for_run(
    options: argparse.Namespace,
    base_settings: Any,
    work_dir: Path,
    run_id: str,
    temporal: TemporalTarget | None,
    *,
    shoppers: int,
    say: Any = print,
) -> AsyncIterator[Platform]:
    """Start the platform (see the module docstring), yield it, stop and delete it."""
    from core.settings import ROOT
    from devstack.ports import free_port
    from devstack.postgres import LocalCluster
    from devstack.stack import settings_env
    from devstack.supervisor import Supervisor

    opts = platform_options(options)
    started = time.monotonic()
    tmp = _make_tmp()
    cluster = LocalCluster(tmp / "pg", free_port())
    settings = platform_settings(base_settings, tmp, cluster.port, opts)
    if temporal is not None:
        settings = settings.model_copy(
            update={"temporal_address": temporal.address, "temporal_namespace": temporal.namespace}
        )
    env = {**os.environ, **settings_env(settings)}
    supervisor = Supervisor(work_dir / "logs", env, ROOT)
    platform = Platform(settings, opts, supervisor, cluster)
    try:
        await _start(platform, temporal is not None, shoppers=shoppers, say=say)
        platform.started_in_s = time.monotonic() - started
        say(
            f"platform up in {platform.started_in_s:.0f} s: {len(supervisor.procs)} processes, "
            f"PostgreSQL on {cluster.port}, API on {platform.api_url}, logs in {supervisor.log_dir}"
        )
        _RUNS[run_id] = platform
        yield platform
    finally:
        _RUNS.pop(run_id, None)
        try:
            for engine in platform.engines.values():
                with contextlib.suppress(Exception):
                    await engine.dispose()
        finally:
            _stop(platform, tmp)


def _make_tmp() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="sagashop-bench-"))
    tmp.chmod(0o755)  # the PostgreSQL OS user must reach the cluster folder
    return tmp


def _stop(platform: Platform, tmp: Path) -> None:
    """Synchronous on purpose: runs to the end even while the run is being cancelled (Ctrl-C)."""
    try:
        platform.supervisor.stop_all()
    finally:
        try:
            platform.cluster.stop()
        except Exception as exc:  # pragma: no cover - reported, the folder goes anyway
            print(f"stopping the benchmark's PostgreSQL failed: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)


async def _start(platform: Platform, with_temporal: bool, *, shoppers: int, say: Any) -> None:
    from core.db import create_engine
    from devstack import migrate
    from devstack.postgres import bootstrap_databases
    from devstack.stack import api_spec, sandbox_specs

    settings, opts, supervisor, cluster = (
        platform.settings,
        platform.options,
        platform.supervisor,
        platform.cluster,
    )
    say("starting the benchmark platform: PostgreSQL ...")
    cluster.ensure_initialized()
    cluster.start()
    await bootstrap_databases(cluster.admin_dsn(), settings)
    await asyncio.to_thread(migrate.upgrade_all, settings)
    for spec in sandbox_specs(settings, None):
        supervisor.start(spec, wait=False)
    if with_temporal:
        say("starting workers and the API ...")
        for spec in worker_specs(settings, opts):
            supervisor.start(spec, wait=False)
        supervisor.start(api_spec(settings, workers=opts.api_workers), wait=False)
    for proc in list(supervisor.procs.values()):
        supervisor.wait_ready(proc)

    say(f"loading the demo catalog ({opts.products} products) and {shoppers} shoppers ...")
    await _seed(platform, shoppers)
    platform.engines["cart"] = create_engine(settings, "cart", pool_size=8)
    if with_temporal:
        await _wait_ready(platform)
    platform.check_alive()


async def _seed(platform: Platform, shoppers: int) -> None:
    from sqlalchemy import select

    from core.db import create_engine, session_factory
    from devstack.seed import seed
    from services.auth import service as auth_service
    from services.product import service as product_service
    from services.product.models import product_variants, products
    from services.product.schemas import StockLine

    settings, opts = platform.settings, platform.options
    report = await seed(
        settings,
        products=opts.products,
        shoppers=shoppers,
        shoppers_file=platform.supervisor.log_dir.parent / "shoppers.json",
    )
    platform.shipping_method_id = report.shipping_methods["US:standard"]

    engines = {name: create_engine(settings, name, pool_size=2) for name in ("product", "auth")}
    try:
        product_s, auth_s = session_factory(engines["product"]), session_factory(engines["auth"])
        async with product_s() as s, s.begin():
            ids = (
                (
                    await s.execute(
                        select(product_variants.c.id)
                        .join(products, products.c.id == product_variants.c.product_id)
                        .where(products.c.status == "active", product_variants.c.is_active.is_(True))
                        .order_by(product_variants.c.sku)
                    )
                )
                .scalars()
                .all()
            )
            quote = (
                await product_service.price_items(
                    s, [StockLine(variant_id=i, quantity=1) for i in ids[: opts.bench_variants * 4]]
                )
                if ids
                else None
            )
            lines = [
                line
                for line in (quote.lines if quote else [])
                if line.currency == "USD" and line.weight_grams <= 2000
            ]
            # spread over the catalog rather than the first SKUs of one category
            step = max(1, len(lines) // opts.bench_variants)
            chosen = lines[::step][: opts.bench_variants]
            if not chosen:
                raise RuntimeError("the demo catalog has no variant the benchmark can sell")
            for line in chosen:
                await product_service.set_stock(s, line.variant_id, DEFAULT_STOCK)
        platform.variants = [
            BenchVariant(line.product_id, line.variant_id, line.unit_price_amount, line.currency)
            for line in chosen
        ]
        seeded = []
        async with auth_s() as s:
            for n, shopper in enumerate(report.shoppers):
                user = await auth_service.get_user(s, shopper.user_id)
                seeded.append(
                    BenchShopper(
                        n,
                        shopper.user_id,
                        user.email,
                        user.first_name,
                        shopper.address_id,
                        shopper.payment_method_id,
                    )
                )
        platform.shoppers = seeded
    finally:
        for engine in engines.values():
            await engine.dispose()


async def _wait_ready(platform: Platform, timeout_s: float = 120.0) -> None:
    """GET /readyz until every service's worker answers its ping (the API, Temporal and the workers)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    async with httpx.AsyncClient(base_url=platform.api_url, timeout=30) as http:
        while time.monotonic() < deadline:
            platform.check_alive()
            try:
                response = await http.get("/readyz")
                if response.status_code == 200:
                    return
                last = response.text[:500]
            except httpx.HTTPError as exc:
                last = str(exc)
            await asyncio.sleep(1.0)
    raise RuntimeError(f"the benchmark platform did not become ready: {last}")
