"""Demo data for the demo and the benchmarks: ``python -m devstack seed [--products 300] [--shoppers N]``.

Loads, each through its owning service's own code and database role:

- product_db: the demo catalog (``services.product.demo``): a category tree, products with variants,
  images, tags, stock and reviews;
- shipping_db: the sandbox carrier, three zones, their methods and weight-band rates;
- discount_db: the demo coupons (WELCOME10, SAVE5, FREESHIP, LIMITED, ONEPER);
- notification_db: nothing - the email templates come with its first migration (counted here);
- with ``--shoppers N``: N demo shoppers (auth account, profile, a shipping address and a card
  tokenized by the PSP sandbox, which must be running: ``make up`` starts it), written with their ids
  to a JSON file for the benchmark (``var/seed/shoppers.json`` unless ``--out`` says otherwise).

Everything is keyed by natural keys or deterministic ids, so seeding again creates nothing new
(and seeding with a larger N adds only the missing shoppers). Refused with ``APP_ENV=production``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.crypto import TokenCipher
from core.db import SessionFactory, create_engine, session_factory
from core.registry import service
from core.settings import Settings
from devstack.errors import SetupError
from services.auth import repository as auth_repo
from services.auth import service as auth_service
from services.auth.passwords import hash_password
from services.discount.demo import DEMO_COUPONS, load_demo_coupons
from services.payment.provider import CardDetails, CardToken, ProviderUnavailable, PspSandboxProvider
from services.product.demo import NAMESPACE, load_demo_catalog
from services.shipping.demo import load_demo_shipping
from services.user import service as user_service
from services.user.schemas import AddressIn, PaymentMethodIn

T = TypeVar("T")

DEMO_PASSWORD = "demo-Shopper-2025"  # every demo shopper's password (development data only)
DEMO_CARD = "4242424242424242"  # the PSP sandbox's always-succeeding test card
SHOPPER_CONCURRENCY = 8
MAX_SHOPPERS = 100_000

# Tables whose presence shows that a database was migrated, per service this command writes to.
_PROBES = {
    "product": "products",
    "shipping": "shipping_methods",
    "discount": "coupons",
    "notification": "email_templates",
    "auth": "users",
    "user": "user_profiles",
}
_CITIES = (
    ("New York", "NY", "10001"),
    ("Chicago", "IL", "60601"),
    ("Austin", "TX", "73301"),
    ("Seattle", "WA", "98101"),
    ("Denver", "CO", "80202"),
    ("Boston", "MA", "02108"),
)
_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia", "Linus")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Perlman")


@dataclass
class SeededShopper:
    user_id: uuid.UUID
    email: str
    address_id: uuid.UUID
    payment_method_id: uuid.UUID
    created: bool


@dataclass
class SeedReport:
    products: int = 0
    products_created: int = 0
    variants: int = 0
    categories: int = 0
    images: int = 0
    reviews: int = 0
    shipping_methods: dict[str, uuid.UUID] = field(default_factory=dict)
    shipping_rows_created: int = 0
    coupons_created: list[str] = field(default_factory=list)
    email_templates: int = 0
    shoppers: list[SeededShopper] = field(default_factory=list)
    shoppers_file: Path | None = None

    @property
    def shoppers_created(self) -> int:
        return sum(1 for s in self.shoppers if s.created)

    def lines(self) -> list[str]:
        out = [
            f"catalog:   {self.products} demo products ({self.products_created} created now), "
            f"{self.variants} variants, {self.categories} categories, {self.images} images, "
            f"{self.reviews} reviews",
            f"shipping:  {len(self.shipping_methods)} methods ({self.shipping_rows_created} carrier/zone/"
            "method/rate rows created now)",
            f"coupons:   {', '.join(self.coupons_created) + ' created' if self.coupons_created else 'none created (all present)'}",
            f"templates: {self.email_templates} email templates (from the notification migration)",
        ]
        if self.shoppers:
            out.append(
                f"shoppers:  {len(self.shoppers)} demo shoppers ({self.shoppers_created} created now), "
                f"password {DEMO_PASSWORD!r}; ids in {self.shoppers_file}"
            )
        return out


def shopper_id(n: int) -> uuid.UUID:
    """The id of demo shopper ``n`` (0-based): the same ids the demo catalog's reviews are written by."""
    return uuid.uuid5(NAMESPACE, f"user:demo-shopper-{n}")


def shopper_email(n: int) -> str:
    return f"demo-shopper-{n:05d}@example.com"


def default_shoppers_file(settings: Settings) -> Path:
    return settings.data_dir / "seed" / "shoppers.json"


# --- connections ------------------------------------------------------------------------------------


async def _check_reachable(settings: Settings, name: str, engine: AsyncEngine) -> None:
    """A clear SetupError when the database is down, refuses the role, or has not been migrated."""
    info = service(name)
    url = make_url(settings.database_url(name))
    where = f"{info.database} at {url.host}:{url.port} as {url.username}"
    try:
        async with engine.connect() as conn:
            present = await conn.scalar(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": _PROBES[name]})
    except (OSError, TimeoutError, DBAPIError) as exc:
        raise SetupError(
            f"cannot reach {where}: {str(exc).splitlines()[0]}",
            "start the platform first (`make up`), or point POSTGRES_HOST / POSTGRES_PORT or "
            f"{name.upper()}_DATABASE_URL at a running server prepared with `python -m devstack init-db`",
        ) from None
    if not present:
        raise SetupError(
            f"{info.database} has no table {_PROBES[name]}: its migrations have not run",
            "run `python -m devstack migrate` (or `make up`)",
        )


async def _tx(sessions: SessionFactory, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async with sessions() as s, s.begin():
        return await work(s)


async def _count(s: AsyncSession, table: str, where: str = "true") -> int:
    return int((await s.execute(text(f"SELECT count(*) FROM {table} WHERE {where}"))).scalar_one())


# --- the parts --------------------------------------------------------------------------------------


async def seed_catalog(sessions: SessionFactory, report: SeedReport, products: int) -> None:
    summary = await _tx(sessions, lambda s: load_demo_catalog(s, products=products))
    report.products, report.products_created = summary.products, summary.created_products
    report.variants, report.categories = summary.variants, summary.categories
    report.images, report.reviews = summary.images, summary.reviews


async def seed_shipping(sessions: SessionFactory, report: SeedReport) -> None:
    tables = ("carriers", "shipping_zones", "shipping_methods", "shipping_rates")

    async def work(s: AsyncSession) -> tuple[dict[str, uuid.UUID], int]:
        before = sum([await _count(s, t) for t in tables])
        ids = await load_demo_shipping(s)
        return ids, sum([await _count(s, t) for t in tables]) - before

    report.shipping_methods, report.shipping_rows_created = await _tx(sessions, work)


async def seed_coupons(sessions: SessionFactory, report: SeedReport) -> None:
    report.coupons_created = await _tx(sessions, load_demo_coupons)


async def count_templates(sessions: SessionFactory, report: SeedReport) -> None:
    report.email_templates = await _tx(sessions, lambda s: _count(s, "email_templates"))


async def seed_shoppers(
    settings: Settings, auth: SessionFactory, user: SessionFactory, report: SeedReport, count: int
) -> None:
    password_hash = await hash_password(DEMO_PASSWORD)  # once: argon2id is deliberately slow
    gate = asyncio.Semaphore(SHOPPER_CONCURRENCY)

    async def one(n: int) -> SeededShopper:
        async with gate:
            return await _seed_shopper(settings, auth, user, n, password_hash)

    results = await asyncio.gather(*(one(n) for n in range(count)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:  # every shopper has finished or failed: nothing runs on after this
        raise next((f for f in failures if isinstance(f, SetupError)), failures[0])
    report.shoppers = [r for r in results if isinstance(r, SeededShopper)]


async def _seed_shopper(
    settings: Settings, auth: SessionFactory, user: SessionFactory, n: int, password_hash: str
) -> SeededShopper:
    """Account, profile, address and card of demo shopper ``n``: whatever of it is missing."""
    user_id, email = shopper_id(n), shopper_email(n)
    first, last = _FIRST[n % len(_FIRST)], _LAST[(n // len(_FIRST)) % len(_LAST)]
    city, region, postal = _CITIES[n % len(_CITIES)]

    async def account(s: AsyncSession) -> bool:
        if await auth_repo.get_user(s, user_id) is not None:
            return False
        await auth_service.register_user(
            s, user_id=user_id, email=email, first_name=first, last_name=last, password_hash=password_hash
        )
        return True

    created = await _tx(auth, account)

    async def existing(s: AsyncSession) -> tuple[uuid.UUID | None, uuid.UUID | None]:
        # creates the profile (with default preferences) unless it exists
        await user_service.create_profile(s, user_id=user_id, email=email, first_name=first, last_name=last)
        addresses = await user_service.list_addresses(s, user_id)
        methods = await user_service.list_payment_methods(s, user_id)
        return (addresses[0].id if addresses else None), (methods[0].id if methods else None)

    address_id, method_id = await _tx(user, existing)
    if address_id is None:
        address = AddressIn.model_validate(
            {
                "type": "shipping",
                "name": f"{first} {last}",
                "line1": f"{100 + n} Market Street",
                "city": city,
                "region": region,
                "postal_code": postal,
                "country": "US",
                "is_default": True,
            }
        )
        address_id = (await _tx(user, lambda s: user_service.add_address(s, user_id, address))).id
        created = True
    if method_id is None:
        token = await _tokenize(settings)
        cipher = TokenCipher(settings.encryption_key.get_secret_value())
        card = PaymentMethodIn(
            psp_token=token.token,
            brand=token.brand,
            last4=token.last4,
            exp_month=token.exp_month,
            exp_year=token.exp_year,
        )
        method_id = (await _tx(user, lambda s: user_service.add_payment_method(s, cipher, user_id, card))).id
        created = True
    return SeededShopper(user_id, email, address_id, method_id, created)


async def _tokenize(settings: Settings) -> CardToken:
    """The sandbox card, tokenized by the PSP (only its token reaches user_db, encrypted)."""
    card = CardDetails(number=DEMO_CARD, exp_month=12, exp_year=datetime.now(UTC).year + 4, cvc="123")
    try:
        async with PspSandboxProvider(settings.psp_url, timeout=10) as psp:
            return await psp.tokenize(card)
    except ProviderUnavailable as exc:
        raise SetupError(
            f"demo shoppers need the PSP sandbox to tokenize their cards: {exc}",
            f"start the platform (`make up` runs the sandbox at {settings.psp_url}), or set PSP_URL",
        ) from None


def write_shoppers_file(path: Path, report: SeedReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "generated_by": "python -m devstack seed",
        "password": DEMO_PASSWORD,
        "shipping_methods": {k: str(v) for k, v in sorted(report.shipping_methods.items())},
        "coupons": sorted(_demo_coupon_codes()),
        "shoppers": [
            {
                "user_id": str(s.user_id),
                "email": s.email,
                "address_id": str(s.address_id),
                "payment_method_id": str(s.payment_method_id),
            }
            for s in report.shoppers
        ],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def _demo_coupon_codes() -> list[str]:
    return [c.code for c in DEMO_COUPONS]


# --- the command ------------------------------------------------------------------------------------


async def seed(
    settings: Settings, *, products: int = 300, shoppers: int = 0, shoppers_file: Path | None = None
) -> SeedReport:
    """Load the demo data (idempotent); raises SetupError with a hint when something is missing."""
    if settings.app_env == "production":
        raise SetupError("refusing to load demo data with APP_ENV=production")
    if not 1 <= products <= 99_999:
        raise SetupError("--products must be between 1 and 99999")
    if not 0 <= shoppers <= MAX_SHOPPERS:
        raise SetupError(f"--shoppers must be between 0 and {MAX_SHOPPERS}")
    names = ["product", "shipping", "discount", "notification"] + (["auth", "user"] if shoppers else [])
    engines = {
        n: create_engine(settings, n, pool_size=SHOPPER_CONCURRENCY if n in ("auth", "user") else 2)
        for n in names
    }
    try:
        for name, engine in engines.items():
            await _check_reachable(settings, name, engine)
        sessions = {name: session_factory(engine) for name, engine in engines.items()}
        report = SeedReport()
        await seed_catalog(sessions["product"], report, products)
        await seed_shipping(sessions["shipping"], report)
        await seed_coupons(sessions["discount"], report)
        await count_templates(sessions["notification"], report)
        if shoppers:
            await seed_shoppers(settings, sessions["auth"], sessions["user"], report, shoppers)
            report.shoppers_file = shoppers_file or default_shoppers_file(settings)
            write_shoppers_file(report.shoppers_file, report)
        return report
    finally:
        for engine in engines.values():
            await engine.dispose()


async def demo_counts(sessions: dict[str, SessionFactory]) -> dict[str, int]:
    """Row counts of every table the seed writes (for checking that seeding twice changes nothing)."""
    tables = {
        "product": (
            "products",
            "product_variants",
            "inventory",
            "categories",
            "product_images",
            "reviews",
            "product_tags",
        ),
        "shipping": ("carriers", "shipping_zones", "shipping_methods", "shipping_rates"),
        "discount": ("coupons",),
        "notification": ("email_templates",),
        "auth": ("users", "user_roles"),
        "user": ("user_profiles", "addresses", "payment_methods", "user_preferences"),
    }
    counts: dict[str, int] = {}
    for name, names in tables.items():
        if name not in sessions:
            continue
        async with sessions[name]() as s:
            for table in names:
                counts[f"{name}.{table}"] = int(
                    (await s.execute(select(func.count()).select_from(text(table)))).scalar_one()
                )
    return counts
