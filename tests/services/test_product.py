"""Product service on the real product_db: catalog search (filters, sorts, keyset cursors), detail,
pricing, inventory reservations (no oversell under concurrency, all-or-nothing, idempotency, expiry),
reviews and the demo catalog."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from activities.product import (
    CommitInventoryInput,
    ExpireReservationsInput,
    PriceItemsInput,
    ProductActivities,
    ReleaseInventoryInput,
    ReserveInventoryInput,
    RestockInput,
)
from core.db import SessionFactory
from core.errors import IdempotencyKeyReused
from services.product import service
from services.product.demo import load_demo_catalog
from services.product.errors import (
    DuplicateReview,
    InvalidCursor,
    OutOfStock,
    ProductNotFound,
    ReservationExists,
    ReservationReleased,
    ReviewNotAllowed,
    SkuTaken,
    SlugTaken,
    StockBelowReserved,
)
from services.product.models import (
    ReservationStatus,
    ReviewStatus,
    inventory,
    inventory_reservations,
    ledger,
    product_variants,
    products,
)
from services.product.schemas import (
    CategoryCreate,
    ImageCreate,
    ProductCreate,
    ProductDetail,
    ProductUpdate,
    ReviewCreate,
    SearchParams,
    SortOrder,
    StockLine,
    VariantCreate,
    VariantUpdate,
)

T = TypeVar("T")


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["product"]


@pytest.fixture
def acts(db: SessionFactory) -> ProductActivities:
    return ProductActivities(db)


async def tx(db: SessionFactory, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
    """``fn(session, *args, **kw)`` in its own transaction."""
    async with db() as s, s.begin():
        return await fn(s, *args, **kw)


def uid() -> str:
    return uuid.uuid4().hex[:10]


async def make_product(
    db: SessionFactory,
    *,
    name: str,
    brand: str,
    price: int = 1000,
    currency: str = "USD",
    description: str = "",
    categories: list[str] | None = None,
    tags: list[str] | None = None,
    stock: list[int] | None = None,
    status: str = "active",
    images: int = 1,
) -> ProductDetail:
    """A product with one variant per entry of ``stock`` (its on-hand count)."""
    tok = uid()
    inp = ProductCreate(
        sku=f"T-{tok}",
        slug=f"p-{tok}",
        name=name,
        brand=brand,
        description=description,
        price_amount=price,
        currency=currency,
        weight_grams=200,
        status=status,
        categories=categories or [],
        tags=tags or [],
        variants=[
            VariantCreate(sku=f"T-{tok}-{n}", options={"size": str(n)}, on_hand=q)
            for n, q in enumerate(stock if stock is not None else [5])
        ],
        images=[ImageCreate(url=f"https://example.com/{tok}/{n}.jpg", position=n) for n in range(images)],
    )
    return await tx(db, lambda s: service.create_product(s, inp))


async def search(db: SessionFactory, **kw: Any) -> list[str]:
    page = await tx(db, lambda s: service.search(s, SearchParams(**kw)))
    return [i.name for i in page.items]


async def stock(db: SessionFactory, variant_id: uuid.UUID) -> tuple[int, int]:
    async def q(s: AsyncSession) -> tuple[int, int]:
        row = (
            await s.execute(
                select(inventory.c.on_hand, inventory.c.reserved).where(inventory.c.variant_id == variant_id)
            )
        ).one()
        return row.on_hand, row.reserved

    return await tx(db, q)


async def reservation_rows(db: SessionFactory, order_id: uuid.UUID) -> list[tuple[uuid.UUID, int, str]]:
    async def q(s: AsyncSession) -> list[tuple[uuid.UUID, int, str]]:
        rows = await s.execute(
            select(
                inventory_reservations.c.variant_id,
                inventory_reservations.c.quantity,
                inventory_reservations.c.status,
            ).where(inventory_reservations.c.order_id == order_id)
        )
        return [(r.variant_id, r.quantity, r.status) for r in rows]

    return await tx(db, q)


# --- catalog search ------------------------------------------------------------------------


async def test_full_text_search_ranks_name_matches_first(db: SessionFactory) -> None:
    tok, brand = f"zq{uid()}", f"B{uid()}"
    await make_product(db, name=f"Alpine {tok} jacket", brand=brand)
    await make_product(db, name="Plain jacket", brand=brand, description=f"Pairs well with any {tok}.")
    await make_product(db, name="Unrelated mug", brand=brand)
    assert await search(db, q=tok) == [f"Alpine {tok} jacket", "Plain jacket"]
    # websearch syntax: quoted phrase and exclusion
    assert await search(db, q=f'"alpine {tok}"') == [f"Alpine {tok} jacket"]
    assert await search(db, q=f"{tok} -alpine") == ["Plain jacket"]


async def test_search_filters(db: SessionFactory) -> None:
    t, brand = uid(), f"B{uid()}"
    parent, child = f"c-{t}", f"c-{t}-child"
    await tx(db, lambda s: service.create_category(s, CategoryCreate(slug=parent, name="Parent")))
    await tx(
        db, lambda s: service.create_category(s, CategoryCreate(slug=child, name="Child", parent=parent))
    )
    await make_product(db, name="in-parent", brand=brand, price=1000, categories=[parent], tags=["red"])
    await make_product(db, name="in-child", brand=brand, price=2000, categories=[child], tags=["blue"])
    await make_product(db, name="no-stock", brand=brand, price=3000, stock=[0, 0], tags=["red"])
    await make_product(db, name="draft", brand=brand, price=1500, status="draft")
    await make_product(db, name="other-brand", brand=f"X{uid()}", price=1000, categories=[child])

    by = {"brand": brand, "sort": "price_asc"}
    assert await search(db, **by) == ["in-parent", "in-child", "no-stock"]  # status active only
    assert await search(db, **by, include_unpublished=True) == ["in-parent", "draft", "in-child", "no-stock"]
    assert await search(db, **by, category=parent) == ["in-parent", "in-child"]  # with descendants
    assert await search(db, **by, category=child) == ["in-child"]
    assert await search(db, **by, tag="red") == ["in-parent", "no-stock"]
    assert await search(db, **by, price_min=1500) == ["in-child", "no-stock"]
    assert await search(db, **by, price_max=2000) == ["in-parent", "in-child"]
    assert await search(db, **by, price_min=1500, price_max=2500) == ["in-child"]
    assert await search(db, **by, in_stock=True) == ["in-parent", "in-child"]
    assert sorted(await search(db, category=child)) == ["in-child", "other-brand"]
    with pytest.raises(ValidationError):
        SearchParams(price_min=10, price_max=5)


async def test_search_sorts(db: SessionFactory) -> None:
    brand = f"B{uid()}"
    made = [
        await make_product(db, name=n, brand=brand, price=p) for n, p in (("a", 300), ("b", 100), ("c", 200))
    ]
    ratings = {"a": 4.5, "b": 2.0, "c": 5.0}
    async with db() as s, s.begin():
        for p in made:
            await s.execute(update(products).where(products.c.id == p.id).values(rating_avg=ratings[p.name]))
    assert await search(db, brand=brand, sort="price_asc") == ["b", "c", "a"]
    assert await search(db, brand=brand, sort="price_desc") == ["a", "c", "b"]
    assert await search(db, brand=brand, sort="newest") == ["c", "b", "a"]
    assert await search(db, brand=brand, sort="relevance") == ["c", "b", "a"]  # no query: newest
    assert await search(db, brand=brand, sort="rating") == ["c", "a", "b"]


@pytest.mark.parametrize("sort", list(SortOrder))
async def test_cursor_pagination_has_no_dupes_or_gaps_while_rows_are_inserted(
    db: SessionFactory, sort: SortOrder
) -> None:
    tok, brand = f"zq{uid()}", f"B{uid()}"
    original = []
    for i in range(17):  # repeated prices, ratings and ranks: ties are broken by id
        p = await make_product(
            db, name=f"{tok} item {i}", brand=brand, price=100 * (i % 4), description=f"{tok} " * (i % 3)
        )
        original.append(p.id)
    async with db() as s, s.begin():
        for i, pid in enumerate(original):
            await s.execute(update(products).where(products.c.id == pid).values(rating_avg=(i % 5)))

    seen: list[uuid.UUID] = []
    cursor = None
    pages = 0
    while True:
        params = SearchParams(q=tok, brand=brand, sort=sort, limit=5, cursor=cursor)
        page = await tx(db, service.search, params)
        seen += [i.id for i in page.items]
        pages += 1
        # inserts between pages, on both sides of the cursor
        await make_product(db, name=f"{tok} late {pages}", brand=brand, price=0 if pages % 2 else 999)
        cursor = page.next_cursor
        if cursor is None:
            break
        assert pages < 20
    assert len(seen) == len(set(seen)), "a row was returned twice"
    assert set(original) <= set(seen), "a row was skipped"
    assert pages >= 4


async def test_tampered_or_foreign_cursor_is_refused(db: SessionFactory) -> None:
    brand = f"B{uid()}"
    for i in range(3):
        await make_product(db, name=f"n{i}", brand=brand, price=i)
    page = await tx(db, lambda s: service.search(s, SearchParams(brand=brand, sort="price_asc", limit=1)))
    good = page.next_cursor
    assert good
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    for bad in (flipped, good[:-4], "not-a-cursor", "%%%%"):
        with pytest.raises(InvalidCursor):
            await tx(db, service.search, SearchParams(brand=brand, sort="price_asc", cursor=bad))
    with pytest.raises(InvalidCursor, match="different query"):
        await tx(db, lambda s: service.search(s, SearchParams(brand=brand, sort="price_desc", cursor=good)))
    second = await tx(
        db, lambda s: service.search(s, SearchParams(brand=brand, sort="price_asc", limit=1, cursor=good))
    )
    assert [i.name for i in second.items] == ["n1"]


async def test_product_detail_and_admin_update(db: SessionFactory) -> None:
    brand = f"B{uid()}"
    p = await make_product(db, name="Detail", brand=brand, stock=[7, 3], images=2, tags=["x", "y"])
    async with db() as s, s.begin():
        await service.reserve(
            s, uuid.uuid4(), [StockLine(variant_id=p.variants[0].id, quantity=2)], timedelta(minutes=5)
        )
    d = await tx(db, lambda s: service.get_product(s, slug=p.slug))
    assert [(v.on_hand, v.reserved, v.available) for v in d.variants] == [(7, 2, 5), (3, 0, 3)]
    assert d.available == 8 and len(d.images) == 2 and d.tags == ["x", "y"]
    await tx(db, lambda s: service.update_product(s, p.id, ProductUpdate(status="archived")))
    with pytest.raises(ProductNotFound):
        await tx(db, lambda s: service.get_product(s, product_id=p.id))
    assert (
        await tx(db, lambda s: service.get_product(s, product_id=p.id, include_unpublished=True))
    ).status == "archived"


# --- pricing -------------------------------------------------------------------------------


async def test_price_items(db: SessionFactory, acts: ProductActivities) -> None:
    brand = f"B{uid()}"
    p = await make_product(db, name="Priced", brand=brand, price=1250, stock=[5, 5])
    v0, v1 = p.variants
    await tx(db, lambda s: service.update_variant(s, v1.id, VariantUpdate(price_amount=1500, currency="USD")))
    r = await acts.price_items(
        PriceItemsInput(
            lines=[StockLine(variant_id=v0.id, quantity=2), StockLine(variant_id=v1.id, quantity=1)]
        )
    )
    assert [(x.unit_price_amount, x.line_amount) for x in r.lines] == [(1250, 2500), (1500, 1500)]
    assert (r.subtotal_amount, r.currency, r.total_weight_grams) == (4000, "USD", 600)
    assert r.lines[0].product_id == p.id and r.lines[0].name == "Priced"

    eur = await make_product(db, name="Euro", brand=brand, currency="EUR")
    with pytest.raises(ApplicationError) as e:
        await acts.price_items(
            PriceItemsInput(
                lines=[
                    StockLine(variant_id=v0.id, quantity=1),
                    StockLine(variant_id=eur.variants[0].id, quantity=1),
                ]
            )
        )
    assert e.value.type == "MixedCurrencies"
    await tx(db, lambda s: service.update_variant(s, v1.id, VariantUpdate(is_active=False)))
    unknown = uuid.uuid4()
    with pytest.raises(ApplicationError) as e:
        await acts.price_items(
            PriceItemsInput(
                lines=[StockLine(variant_id=v1.id, quantity=1), StockLine(variant_id=unknown, quantity=1)]
            )
        )
    assert e.value.type == "VariantUnavailable"
    assert set(e.value.details[0]["variant_ids"]) == {str(v1.id), str(unknown)}


# --- inventory -----------------------------------------------------------------------------


async def test_no_oversell_under_50_concurrent_reservations(
    db: SessionFactory, acts: ProductActivities
) -> None:
    p = await make_product(db, name="Hot item", brand=f"B{uid()}", stock=[10])
    vid = p.variants[0].id

    async def one(i: int) -> bool:
        try:
            await acts.reserve_inventory(
                ReserveInventoryInput(
                    idempotency_key=f"race-{vid}-{i}",
                    order_id=uuid.uuid4(),
                    lines=[StockLine(variant_id=vid, quantity=1)],
                )
            )
            return True
        except ApplicationError as exc:
            assert exc.type == "OutOfStock", exc
            return False

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert sum(results) == 10
    assert await stock(db, vid) == (10, 10)  # available = 0, never negative (CHECK would refuse)

    async def active(s: AsyncSession) -> int:
        q = select(func.coalesce(func.sum(inventory_reservations.c.quantity), 0)).where(
            inventory_reservations.c.variant_id == vid, inventory_reservations.c.status == "active"
        )
        return int((await s.execute(q)).scalar_one())

    assert await tx(db, active) == 10


async def test_reservation_is_all_or_nothing(db: SessionFactory) -> None:
    p = await make_product(db, name="Pair", brand=f"B{uid()}", stock=[5, 1])
    a, b = (v.id for v in p.variants)
    order = uuid.uuid4()
    lines = [StockLine(variant_id=a, quantity=2), StockLine(variant_id=b, quantity=2)]
    with pytest.raises(OutOfStock) as e:
        await tx(db, lambda s: service.reserve(s, order, lines, timedelta(minutes=5)))
    assert e.value.context["variants"] == [{"variant_id": str(b), "requested": 2, "available": 1}]
    assert await stock(db, a) == (5, 0) and await stock(db, b) == (1, 0)
    assert await reservation_rows(db, order) == []
    # the savepoint undoes the held lines even if the caller carries on in the same transaction
    async with db() as s, s.begin():
        with pytest.raises(OutOfStock):
            await service.reserve(s, order, lines, timedelta(minutes=5))
        await service.reserve(s, order, [StockLine(variant_id=a, quantity=1)], timedelta(minutes=5))
    assert await stock(db, a) == (5, 1) and await stock(db, b) == (1, 0)


async def test_reserve_is_idempotent_by_key_and_by_order(db: SessionFactory, acts: ProductActivities) -> None:
    p = await make_product(db, name="Idem", brand=f"B{uid()}", stock=[10])
    vid, order = p.variants[0].id, uuid.uuid4()
    inp = ReserveInventoryInput(
        idempotency_key=f"k-{uid()}", order_id=order, lines=[StockLine(variant_id=vid, quantity=3)]
    )
    first = await acts.reserve_inventory(inp)
    again = await acts.reserve_inventory(inp)
    assert again == first
    assert await stock(db, vid) == (10, 3)
    assert len(await reservation_rows(db, order)) == 1
    with pytest.raises(ApplicationError) as e:  # same key, different request
        await acts.reserve_inventory(
            inp.model_copy(update={"lines": [StockLine(variant_id=vid, quantity=4)]})
        )
    assert e.value.type == IdempotencyKeyReused.__name__
    # a new key for the same order and lines returns the existing reservation; other lines are refused
    same = await acts.reserve_inventory(inp.model_copy(update={"idempotency_key": f"k-{uid()}"}))
    assert same.reservation_ids == first.reservation_ids
    with pytest.raises(ReservationExists):
        await tx(
            db,
            lambda s: service.reserve(
                s, order, [StockLine(variant_id=vid, quantity=1)], timedelta(minutes=1)
            ),
        )
    assert await stock(db, vid) == (10, 3)


async def test_price_and_reserve_prices_and_holds_in_one_step(
    db: SessionFactory, acts: ProductActivities
) -> None:
    p = await make_product(db, name="Both", brand=f"B{uid()}", price=900, stock=[4, 1])
    a, b = (v.id for v in p.variants)
    order = uuid.uuid4()
    inp = ReserveInventoryInput(
        idempotency_key=f"pr-{uid()}",
        order_id=order,
        lines=[StockLine(variant_id=a, quantity=2), StockLine(variant_id=b, quantity=1)],
    )
    first = await acts.price_and_reserve(inp)
    assert (first.subtotal_amount, first.currency) == (2700, "USD")
    assert [(x.variant_id, x.line_amount) for x in first.lines] == [(a, 1800), (b, 900)]
    assert len(first.reservation_ids) == 2 and await stock(db, a) == (4, 2) and await stock(db, b) == (1, 1)

    # a retry answers what was reserved, at the prices of the first attempt, and holds nothing more
    await tx(db, lambda s: service.update_variant(s, a, VariantUpdate(price_amount=1000, currency="USD")))
    assert await acts.price_and_reserve(inp) == first
    assert await stock(db, a) == (4, 2)

    # refused as a whole: nothing is held for the order when one line is short
    short = uuid.uuid4()
    with pytest.raises(ApplicationError) as e:
        await acts.price_and_reserve(
            ReserveInventoryInput(
                idempotency_key=f"pr-{uid()}",
                order_id=short,
                lines=[StockLine(variant_id=a, quantity=1), StockLine(variant_id=b, quantity=1)],
            )
        )
    assert e.value.type == "OutOfStock" and e.value.non_retryable
    assert await reservation_rows(db, short) == [] and await stock(db, a) == (4, 2)
    await tx(db, lambda s: service.update_variant(s, b, VariantUpdate(is_active=False)))
    with pytest.raises(ApplicationError) as e:
        await acts.price_and_reserve(
            ReserveInventoryInput(
                idempotency_key=f"pr-{uid()}",
                order_id=uuid.uuid4(),
                lines=[StockLine(variant_id=b, quantity=1)],
            )
        )
    assert e.value.type == "VariantUnavailable"


async def test_release_and_commit_are_idempotent(db: SessionFactory, acts: ProductActivities) -> None:
    p = await make_product(db, name="Flow", brand=f"B{uid()}", stock=[10])
    vid = p.variants[0].id
    line = [StockLine(variant_id=vid, quantity=4)]

    released_order = uuid.uuid4()
    await acts.reserve_inventory(
        ReserveInventoryInput(idempotency_key=f"r-{uid()}", order_id=released_order, lines=line)
    )
    assert await stock(db, vid) == (10, 4)
    rel = await acts.release_inventory(
        ReleaseInventoryInput(idempotency_key=f"x-{uid()}", order_id=released_order)
    )
    assert [(x.variant_id, x.quantity) for x in rel.released_lines] == [(vid, 4)]
    rel2 = await acts.release_inventory(
        ReleaseInventoryInput(idempotency_key=f"x-{uid()}", order_id=released_order)
    )
    assert rel2.released_lines == []
    nothing = await acts.release_inventory(
        ReleaseInventoryInput(idempotency_key=f"x-{uid()}", order_id=uuid.uuid4())
    )
    assert nothing.released_lines == []
    assert await stock(db, vid) == (10, 0)
    with pytest.raises(ReservationReleased):
        await tx(db, lambda s: service.commit(s, released_order))

    sold_order = uuid.uuid4()
    await acts.reserve_inventory(
        ReserveInventoryInput(idempotency_key=f"r-{uid()}", order_id=sold_order, lines=line)
    )
    key = f"c-{uid()}"
    c1 = await acts.commit_inventory(CommitInventoryInput(idempotency_key=key, order_id=sold_order))
    assert not c1.already_committed and [x.quantity for x in c1.committed_lines] == [4]
    assert await acts.commit_inventory(CommitInventoryInput(idempotency_key=key, order_id=sold_order)) == c1
    c2 = await acts.commit_inventory(CommitInventoryInput(idempotency_key=f"c-{uid()}", order_id=sold_order))
    assert c2.already_committed and c2.committed_lines == []
    assert await stock(db, vid) == (6, 0)
    late = await acts.release_inventory(
        ReleaseInventoryInput(idempotency_key=f"x-{uid()}", order_id=sold_order)
    )
    assert late.released_lines == [] and await stock(db, vid) == (6, 0)
    assert await reservation_rows(db, sold_order) == [(vid, 4, "committed")]

    restock = RestockInput(idempotency_key=f"rs-{uid()}", lines=[StockLine(variant_id=vid, quantity=2)])
    await acts.restock(restock)
    await acts.restock(restock)
    assert await stock(db, vid) == (8, 0)


async def test_expiry_sweep_releases_overdue_reservations(
    db: SessionFactory, acts: ProductActivities
) -> None:
    p = await make_product(db, name="Slow", brand=f"B{uid()}", stock=[5, 5])
    a, b = (v.id for v in p.variants)
    overdue, fresh = uuid.uuid4(), uuid.uuid4()
    past = datetime.now(UTC) - timedelta(hours=1)
    async with db() as s, s.begin():
        await service.reserve(
            s,
            overdue,
            [StockLine(variant_id=a, quantity=2), StockLine(variant_id=b, quantity=1)],
            timedelta(minutes=15),
            now=past,
        )
        await service.reserve(s, fresh, [StockLine(variant_id=a, quantity=1)], timedelta(minutes=15))
    assert await stock(db, a) == (5, 3)
    result = await acts.expire_reservations(ExpireReservationsInput())
    assert result.expired >= 2
    assert {r[2] for r in await reservation_rows(db, overdue)} == {ReservationStatus.EXPIRED.value}
    assert {r[2] for r in await reservation_rows(db, fresh)} == {ReservationStatus.ACTIVE.value}
    assert await stock(db, a) == (5, 1) and await stock(db, b) == (5, 0)
    await acts.expire_reservations(ExpireReservationsInput())  # a second sweep changes nothing here
    assert await stock(db, a) == (5, 1)
    # a late commit of an expired reservation takes the stock again while it is there
    c = await tx(db, lambda s: service.commit(s, overdue))
    assert not c.already_committed
    assert await stock(db, a) == (3, 1) and await stock(db, b) == (4, 0)
    # ... and is refused, with nothing changed, once it is gone
    gone = uuid.uuid4()
    async with db() as s, s.begin():
        await service.reserve(s, gone, [StockLine(variant_id=b, quantity=3)], timedelta(minutes=1), now=past)
        await service.expire_reservations(s)
        await service.set_stock(s, b, 1)
    with pytest.raises(OutOfStock):
        await tx(db, lambda s: service.commit(s, gone))
    assert await stock(db, b) == (1, 0)


async def test_invalid_input_is_refused_with_nothing_written(
    db: SessionFactory, acts: ProductActivities
) -> None:
    p = await make_product(db, name="Valid", brand=f"B{uid()}", stock=[3])
    vid = p.variants[0].id
    for q in (0, 1000, -1):
        with pytest.raises(ValidationError):
            StockLine(variant_id=vid, quantity=q)
    with pytest.raises(ValidationError):
        ReserveInventoryInput(
            idempotency_key="", order_id=uuid.uuid4(), lines=[StockLine(variant_id=vid, quantity=1)]
        )
    with pytest.raises(ValidationError):
        ReserveInventoryInput(idempotency_key="k", order_id=uuid.uuid4(), lines=[])
    sku = f"NEG-{uid()}"
    with pytest.raises(ValidationError):
        ProductCreate(sku=sku, slug="neg", name="Negative", price_amount=-1, currency="USD")
    with pytest.raises(ValidationError):
        VariantCreate(sku=sku, price_amount=-5, currency="USD")
    with pytest.raises(ValidationError):
        ProductCreate(sku=sku, slug="lower", name="Bad currency", price_amount=1, currency="usd")

    async def count_sku(s: AsyncSession) -> int:
        return int((await s.execute(select(func.count()).where(products.c.sku == sku))).scalar_one())

    assert await tx(db, count_sku) == 0
    # refused by the rules: nothing written
    order = uuid.uuid4()
    async with db() as s, s.begin():
        await service.reserve(s, order, [StockLine(variant_id=vid, quantity=2)], timedelta(minutes=5))
    with pytest.raises(StockBelowReserved):
        await tx(db, lambda s: service.set_stock(s, vid, 1))
    assert await stock(db, vid) == (3, 2)
    key = f"k-{uid()}"
    with pytest.raises(ApplicationError):
        await acts.reserve_inventory(
            ReserveInventoryInput(
                idempotency_key=key, order_id=uuid.uuid4(), lines=[StockLine(variant_id=vid, quantity=5)]
            )
        )

    async def ledger_rows(s: AsyncSession) -> int:
        return int((await s.execute(select(func.count()).where(ledger.c.key == key))).scalar_one())

    assert await tx(db, ledger_rows) == 0  # a refusal leaves no ledger row behind
    dup = ProductCreate(sku=f"D-{uid()}", slug=p.slug, name="Dup slug", price_amount=1, currency="USD")
    with pytest.raises(SlugTaken):
        await tx(db, lambda s: service.create_product(s, dup))
    taken = ProductCreate(
        sku=f"D-{uid()}",
        slug=f"d-{uid()}",
        name="Dup variant",
        price_amount=1,
        currency="USD",
        variants=[VariantCreate(sku=p.variants[0].sku)],
    )
    with pytest.raises(SkuTaken):
        await tx(db, lambda s: service.create_product(s, taken))

    async def exists(s: AsyncSession, sku: str) -> bool:
        return (await s.execute(select(products.c.id).where(products.c.sku == sku))).first() is not None

    assert not await tx(db, lambda s: exists(s, dup.sku)) and not await tx(db, lambda s: exists(s, taken.sku))


# --- reviews -------------------------------------------------------------------------------


async def test_reviews(db: SessionFactory) -> None:
    p = await make_product(db, name="Reviewed", brand=f"B{uid()}")
    user = uuid.uuid4()

    def review(u: uuid.UUID, rating: int, bought: bool = True) -> ReviewCreate:
        return ReviewCreate(
            product_id=p.id, user_id=u, rating=rating, title="t", body="b", has_purchased=bought
        )

    with pytest.raises(ReviewNotAllowed):
        await tx(db, lambda s: service.create_review(s, review(user, 5, bought=False)))
    with pytest.raises(ValidationError):
        review(user, 6)
    first = await tx(db, lambda s: service.create_review(s, review(user, 5)))
    with pytest.raises(DuplicateReview):
        await tx(db, lambda s: service.create_review(s, review(user, 1)))
    # concurrent reviews from 12 buyers: the aggregate counts every one of them
    await asyncio.gather(*(tx(db, service.create_review, review(uuid.uuid4(), 1 + i % 5)) for i in range(12)))
    detail = await tx(db, lambda s: service.get_product(s, product_id=p.id))
    expected = (5 + sum(1 + i % 5 for i in range(12))) / 13
    assert detail.rating_count == 13 and detail.rating_avg == round(expected, 2)

    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await tx(db, service.list_reviews, p.id, limit=4, cursor=cursor)
        seen += [r.id for r in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert len(seen) == len(set(seen)) == 13
    await tx(db, lambda s: service.moderate_review(s, first.id, ReviewStatus.HIDDEN))
    detail = await tx(db, lambda s: service.get_product(s, product_id=p.id))
    assert detail.rating_count == 12


# --- demo catalog --------------------------------------------------------------------------


async def test_demo_catalog_loads_fast_and_is_idempotent(db: SessionFactory) -> None:
    started = time.monotonic()
    first = await tx(db, lambda s: load_demo_catalog(s))
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"demo catalog took {elapsed:.1f}s"
    assert first.products == 300 and first.categories >= 25
    assert 300 <= first.variants <= 1800 and first.images >= 300 and first.reviews > 0 and first.tags > 0
    second = await tx(db, lambda s: load_demo_catalog(s))
    assert second.created_products == 0
    assert second.model_dump(exclude={"created_products"}) == first.model_dump(exclude={"created_products"})

    async def demo_rows(s: AsyncSession) -> tuple[int, int]:
        n_products = (await s.execute(select(func.count()).where(products.c.sku.like("DEMO-%")))).scalar_one()
        n_variants = (
            await s.execute(select(func.count()).where(product_variants.c.sku.like("DEMO-%")))
        ).scalar_one()
        return int(n_products), int(n_variants)

    assert await tx(db, demo_rows) == (300, first.variants)
    # the tree is usable: a root category finds the products of its descendants
    page = await tx(db, lambda s: service.search(s, SearchParams(category="footwear", limit=100)))
    assert len(page.items) > 10
    tree = await tx(db, service.list_categories)
    assert {n.slug for n in tree} >= {"clothing", "footwear", "electronics"}
