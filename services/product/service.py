"""Rules of the product service: catalog search and detail, admin edits, pricing, inventory
reservations (never below zero), reviews. Every function runs in the caller's transaction and
never commits; a refusal raises a ``services.product.errors`` error and leaves nothing written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidRequest
from services.product import cursor as cursors
from services.product import repository as repo
from services.product.errors import (
    CategoryNotFound,
    ConcurrentUpdate,
    DuplicateReview,
    InvalidCursor,
    MixedCurrencies,
    OutOfStock,
    ProductNotFound,
    ReservationExists,
    ReservationNotFound,
    ReservationReleased,
    ReviewNotAllowed,
    ReviewNotFound,
    SkuTaken,
    SlugTaken,
    StockBelowReserved,
    VariantNotFound,
    VariantUnavailable,
)
from services.product.models import ProductStatus, ReservationStatus, ReviewStatus
from services.product.schemas import (
    CategoryCreate,
    CategoryNode,
    CategoryRef,
    CommitResult,
    ImageCreate,
    ImageView,
    MovedLine,
    PricedLine,
    PriceQuote,
    ProductCreate,
    ProductDetail,
    ProductSummary,
    ProductUpdate,
    ReservationResult,
    ReviewCreate,
    ReviewPage,
    ReviewView,
    SearchPage,
    SearchParams,
    SortOrder,
    StockLevel,
    StockLine,
    VariantCreate,
    VariantUpdate,
    VariantView,
)

EXPIRY_BATCH = 500

# --- catalog search ------------------------------------------------------------------------


def _search_fingerprint(params: SearchParams) -> str:
    return cursors.fingerprint(params.model_dump(mode="json", exclude={"cursor", "limit"}))


def _encode_key(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decode_key(sort: SortOrder, q: str | None, raw: list[Any], raw_id: str) -> tuple[Any, uuid.UUID]:
    """The typed (sort key, id) of a cursor; InvalidCursor when the values do not fit the sort."""
    try:
        if len(raw) != 1:
            raise ValueError("one sort key expected")
        (value,) = raw
        key: Any
        if sort is SortOrder.RELEVANCE and q:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError("rank must be a number")
            key = float(value)
        elif sort in (SortOrder.PRICE_ASC, SortOrder.PRICE_DESC):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError("price must be an integer")
            key = value
        elif sort is SortOrder.RATING:
            key = Decimal(str(value))
            if not key.is_finite():
                raise ValueError("rating must be finite")
        else:
            key = datetime.fromisoformat(str(value))
            if key.tzinfo is None:
                raise ValueError("timestamp without time zone")
        return key, uuid.UUID(raw_id)
    except (ValueError, TypeError, InvalidOperation):
        raise InvalidCursor("the pagination cursor does not fit this sort order") from None


async def search(session: AsyncSession, params: SearchParams) -> SearchPage:
    """One page of the catalog, keyset-paginated: stable while products are added between pages."""
    fp = _search_fingerprint(params)
    after = None
    if params.cursor is not None:
        raw_key, raw_id = cursors.decode(params.cursor, fp)
        after = _decode_key(params.sort, params.q, raw_key, raw_id)
    subtree = None
    if params.category is not None:
        subtree = await repo.category_subtree(session, params.category)
        if subtree is None:
            raise CategoryNotFound(f"no category {params.category!r}", category=params.category)
    rows = await repo.search_products(session, params, subtree=subtree, after=after)
    page, more = rows[: params.limit], len(rows) > params.limit
    next_cursor = None
    if more and page:
        last = page[-1]
        next_cursor = cursors.encode(fp, [_encode_key(last["sort_key"])], str(last["id"]))
    return SearchPage(
        items=[
            ProductSummary(
                id=r["id"],
                slug=r["slug"],
                name=r["name"],
                brand=r["brand"],
                status=r["status"],
                price_amount=r["price_amount"],
                currency=r["currency"],
                rating_avg=float(r["rating_avg"]),
                rating_count=r["rating_count"],
                in_stock=r["in_stock"],
                thumbnail_url=r["thumbnail_url"],
                created_at=r["created_at"],
            )
            for r in page
        ],
        next_cursor=next_cursor,
    )


# --- product detail / categories -----------------------------------------------------------


def _variant_view(r: RowMapping) -> VariantView:
    return VariantView(
        id=r["id"],
        product_id=r["product_id"],
        sku=r["sku"],
        options=r["options"],
        price_amount=r["price_amount"],
        currency=r["currency"],
        weight_grams=r["weight_grams"],
        is_active=r["is_active"],
        on_hand=r["on_hand"],
        reserved=r["reserved"],
        available=r["on_hand"] - r["reserved"],
    )


async def get_product(
    session: AsyncSession,
    *,
    product_id: uuid.UUID | None = None,
    slug: str | None = None,
    include_unpublished: bool = False,
) -> ProductDetail:
    """A product with its variants (and their availability), images, categories, tags and rating."""
    if (product_id is None) == (slug is None):
        raise InvalidRequest("give exactly one of product_id or slug")
    row = await repo.product_row(session, product_id=product_id, slug=slug)
    if row is None or (not include_unpublished and row["status"] != ProductStatus.ACTIVE.value):
        raise ProductNotFound("no such product", product_id=str(product_id or slug))
    pid: uuid.UUID = row["id"]
    variants = [_variant_view(r) for r in await repo.variants_of(session, pid)]
    return ProductDetail(
        id=pid,
        sku=row["sku"],
        slug=row["slug"],
        name=row["name"],
        description=row["description"],
        brand=row["brand"],
        status=row["status"],
        price_amount=row["price_amount"],
        currency=row["currency"],
        weight_grams=row["weight_grams"],
        rating_avg=float(row["rating_avg"]),
        rating_count=row["rating_count"],
        available=sum(x.available for x in variants if x.is_active),
        categories=[CategoryRef(**c) for c in await repo.categories_of(session, pid)],
        tags=await repo.tags_of(session, pid),
        variants=variants if include_unpublished else [x for x in variants if x.is_active],
        images=[ImageView(**i) for i in await repo.images_of(session, pid)],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def list_categories(session: AsyncSession) -> list[CategoryNode]:
    """The category tree (roots, each with its children in display order)."""
    rows = await repo.all_categories(session)
    nodes = {
        r["id"]: CategoryNode(id=r["id"], slug=r["slug"], name=r["name"], position=r["position"])
        for r in rows
    }
    roots: list[CategoryNode] = []
    for r in rows:
        parent = r["parent_id"]
        (nodes[parent].children if parent in nodes else roots).append(nodes[r["id"]])
    return roots


async def create_category(session: AsyncSession, inp: CategoryCreate) -> CategoryNode:
    parent_id = None
    if inp.parent is not None:
        found = await repo.category_ids_by_slug(session, [inp.parent])
        if inp.parent not in found:
            raise CategoryNotFound(f"no parent category {inp.parent!r}", category=inp.parent)
        parent_id = found[inp.parent]
    cid = uuid.uuid4()
    values = {"id": cid, "parent_id": parent_id, "slug": inp.slug, "name": inp.name, "position": inp.position}
    if not await repo.insert_category(session, values):
        raise SlugTaken(f"category slug {inp.slug!r} is taken", slug=inp.slug)
    return CategoryNode(id=cid, slug=inp.slug, name=inp.name, position=inp.position)


# --- admin writes --------------------------------------------------------------------------


async def _category_ids(session: AsyncSession, slugs: list[str]) -> list[uuid.UUID]:
    wanted = list(dict.fromkeys(slugs))
    found = await repo.category_ids_by_slug(session, wanted)
    missing = [s for s in wanted if s not in found]
    if missing:
        raise CategoryNotFound(f"no category {', '.join(missing)}", categories=missing)
    return [found[s] for s in wanted]


def _variant_values(product_id: uuid.UUID, inp: VariantCreate) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "product_id": product_id,
        "sku": inp.sku,
        "options": dict(inp.options),
        "price_amount": inp.price_amount,
        "currency": inp.currency,
        "weight_grams": inp.weight_grams,
        "is_active": inp.is_active,
    }


async def _insert_variants(
    session: AsyncSession, product_id: uuid.UUID, variants: Sequence[VariantCreate]
) -> dict[str, uuid.UUID]:
    rows = [_variant_values(product_id, x) for x in variants]
    inserted = await repo.insert_variants(session, rows)
    taken = [r["sku"] for r in rows if r["sku"] not in inserted]
    if taken:
        raise SkuTaken(f"variant SKU {', '.join(taken)} is taken", skus=taken)
    await repo.insert_inventory(
        session, [{"variant_id": r["id"], "on_hand": x.on_hand} for r, x in zip(rows, variants, strict=True)]
    )
    return {r["sku"]: r["id"] for r in rows}


async def create_product(session: AsyncSession, inp: ProductCreate) -> ProductDetail:
    """A product with its categories, tags, variants (and their initial stock) and images."""
    pid = uuid.uuid4()
    category_ids = await _category_ids(session, inp.categories)
    values = {
        "id": pid,
        "sku": inp.sku,
        "slug": inp.slug,
        "name": inp.name,
        "description": inp.description,
        "brand": inp.brand,
        "status": inp.status.value,
        "price_amount": inp.price_amount,
        "currency": inp.currency,
        "weight_grams": inp.weight_grams,
    }
    if not await repo.insert_product(session, values):
        if await repo.product_sku_taken(session, inp.sku):
            raise SkuTaken(f"product SKU {inp.sku!r} is taken", sku=inp.sku)
        raise SlugTaken(f"product slug {inp.slug!r} is taken", slug=inp.slug)
    await repo.replace_categories(session, pid, category_ids)
    await repo.replace_tags(session, pid, list(dict.fromkeys(inp.tags)))
    variant_ids = await _insert_variants(session, pid, inp.variants)
    await repo.insert_images(
        session,
        [
            {
                "id": uuid.uuid4(),
                "product_id": pid,
                "variant_id": variant_ids[i.variant_sku] if i.variant_sku else None,
                "url": i.url,
                "alt": i.alt,
                "position": i.position,
            }
            for i in inp.images
        ],
    )
    return await get_product(session, product_id=pid, include_unpublished=True)


async def update_product(session: AsyncSession, product_id: uuid.UUID, inp: ProductUpdate) -> ProductDetail:
    fields = inp.model_fields_set - {"categories", "tags"}
    values = {name: getattr(inp, name) for name in fields}
    if "status" in values:
        values["status"] = ProductStatus(values["status"]).value
    if inp.slug is not None and await repo.product_slug_taken(session, inp.slug, other_than=product_id):
        raise SlugTaken(f"product slug {inp.slug!r} is taken", slug=inp.slug)
    if await repo.product_row(session, product_id=product_id) is None:
        raise ProductNotFound("no such product", product_id=str(product_id))
    if values:
        await repo.update_product(session, product_id, values)
    if inp.categories is not None:
        await repo.replace_categories(session, product_id, await _category_ids(session, inp.categories))
    if inp.tags is not None:
        await repo.replace_tags(session, product_id, list(dict.fromkeys(inp.tags)))
    return await get_product(session, product_id=product_id, include_unpublished=True)


async def create_variant(session: AsyncSession, product_id: uuid.UUID, inp: VariantCreate) -> VariantView:
    product = await repo.product_row(session, product_id=product_id)
    if product is None:
        raise ProductNotFound("no such product", product_id=str(product_id))
    if inp.currency not in (None, product["currency"]):
        raise InvalidRequest("a variant price must be in the product's currency", currency=inp.currency)
    ids = await _insert_variants(session, product_id, [inp])
    row = await repo.variant_row(session, ids[inp.sku])
    assert row is not None
    return _variant_view(row)


async def update_variant(session: AsyncSession, variant_id: uuid.UUID, inp: VariantUpdate) -> VariantView:
    row = await repo.variant_row(session, variant_id)
    if row is None:
        raise VariantNotFound("no such variant", variant_id=str(variant_id))
    product = await repo.product_row(session, product_id=row["product_id"])
    assert product is not None
    if inp.currency not in (None, product["currency"]):
        raise InvalidRequest("a variant price must be in the product's currency", currency=inp.currency)
    values = {name: getattr(inp, name) for name in inp.model_fields_set}
    if values:
        await repo.update_variant(session, variant_id, values)
    updated = await repo.variant_row(session, variant_id)
    assert updated is not None
    return _variant_view(updated)


async def add_image(session: AsyncSession, product_id: uuid.UUID, inp: ImageCreate) -> ImageView:
    if await repo.product_row(session, product_id=product_id) is None:
        raise ProductNotFound("no such product", product_id=str(product_id))
    if inp.variant_id is not None and await repo.variant_product(session, inp.variant_id) != product_id:
        raise VariantNotFound("no such variant of this product", variant_id=str(inp.variant_id))
    image = ImageView(
        id=uuid.uuid4(), variant_id=inp.variant_id, url=inp.url, alt=inp.alt, position=inp.position
    )
    await repo.insert_images(session, [{"product_id": product_id, **image.model_dump()}])
    return image


async def set_stock(
    session: AsyncSession, variant_id: uuid.UUID, on_hand: int, *, expected_version: int | None = None
) -> StockLevel:
    """Set a variant's on-hand count (a stock take). Never below what is reserved."""
    if on_hand < 0:
        raise InvalidRequest("on_hand must be >= 0", on_hand=on_hand)
    if await repo.variant_product(session, variant_id) is None:
        raise VariantNotFound("no such variant", variant_id=str(variant_id))
    row = await repo.set_on_hand(session, variant_id, on_hand, expected_version)
    if row is None:
        current = (await repo.stock_levels(session, [variant_id])).get(variant_id)
        if current is None:
            await repo.insert_inventory(session, [{"variant_id": variant_id, "on_hand": on_hand}])
            return StockLevel(
                variant_id=variant_id, on_hand=on_hand, reserved=0, available=on_hand, version=1
            )
        if current["reserved"] > on_hand:
            raise StockBelowReserved(
                f"on_hand {on_hand} is below the {current['reserved']} units reserved",
                variant_id=str(variant_id),
                reserved=current["reserved"],
            )
        raise ConcurrentUpdate(
            "the stock changed since it was read", variant_id=str(variant_id), version=current["version"]
        )
    return StockLevel(
        variant_id=variant_id,
        on_hand=row["on_hand"],
        reserved=row["reserved"],
        available=row["on_hand"] - row["reserved"],
        version=row["version"],
    )


async def stock_of(session: AsyncSession, variant_ids: Iterable[uuid.UUID]) -> list[StockLevel]:
    ids = sorted(set(variant_ids))
    levels = await repo.stock_levels(session, ids)
    return [
        StockLevel(
            variant_id=i,
            on_hand=r["on_hand"],
            reserved=r["reserved"],
            available=r["on_hand"] - r["reserved"],
            version=r["version"],
        )
        for i in ids
        if (r := levels.get(i)) is not None
    ]


# --- pricing -------------------------------------------------------------------------------


def merge_lines(lines: Iterable[StockLine]) -> dict[uuid.UUID, int]:
    """Quantities per variant (repeated variants summed), in first-seen order."""
    merged: dict[uuid.UUID, int] = {}
    for line in lines:
        merged[line.variant_id] = merged.get(line.variant_id, 0) + line.quantity
    return merged


async def price_items(session: AsyncSession, lines: Sequence[StockLine]) -> PriceQuote:
    """Current prices of the lines; refuses unknown/inactive variants and mixed currencies."""
    if not lines:
        raise InvalidRequest("nothing to price")
    merged = merge_lines(lines)
    rows = {r["id"]: r for r in await repo.variants_for_pricing(session, list(merged))}
    unavailable = [
        str(vid)
        for vid in merged
        if (r := rows.get(vid)) is None
        or not r["is_active"]
        or r["product_status"] != ProductStatus.ACTIVE.value
    ]
    if unavailable:
        raise VariantUnavailable(
            f"variant(s) not available: {', '.join(unavailable)}", variant_ids=unavailable
        )
    currencies = sorted({rows[vid]["currency"] for vid in merged})
    if len(currencies) > 1:
        raise MixedCurrencies(f"items are priced in {', '.join(currencies)}", currencies=currencies)
    priced = [
        PricedLine(
            variant_id=vid,
            product_id=rows[vid]["product_id"],
            sku=rows[vid]["sku"],
            name=rows[vid]["name"],
            options=rows[vid]["options"],
            unit_price_amount=rows[vid]["unit_price_amount"],
            currency=rows[vid]["currency"],
            quantity=q,
            line_amount=rows[vid]["unit_price_amount"] * q,
            weight_grams=rows[vid]["weight_grams"],
        )
        for vid, q in merged.items()
    ]
    return PriceQuote(
        lines=priced,
        subtotal_amount=sum(x.line_amount for x in priced),
        currency=currencies[0],
        total_weight_grams=sum(x.weight_grams * x.quantity for x in priced),
    )


async def price_and_reserve(
    session: AsyncSession,
    order_id: uuid.UUID,
    lines: Sequence[StockLine],
    ttl: timedelta,
    *,
    now: datetime | None = None,
) -> tuple[PriceQuote, ReservationResult]:
    """Checkout's product step: the current prices of the lines and their stock held for the order,
    in the caller's one transaction (one round trip for the saga instead of two). Refuses as
    ``price_items`` and ``reserve`` do; nothing is held when it refuses."""
    quote = await price_items(session, lines)
    return quote, await reserve(session, order_id, lines, ttl, now=now)


# --- inventory -----------------------------------------------------------------------------


def _shortages(failed: dict[uuid.UUID, int], levels: dict[uuid.UUID, RowMapping]) -> list[dict[str, Any]]:
    return [
        {
            "variant_id": str(vid),
            "requested": q,
            "available": (levels[vid]["on_hand"] - levels[vid]["reserved"]) if vid in levels else 0,
        }
        for vid, q in failed.items()
    ]


async def reserve(
    session: AsyncSession,
    order_id: uuid.UUID,
    lines: Sequence[StockLine],
    ttl: timedelta,
    *,
    now: datetime | None = None,
) -> ReservationResult:
    """Hold stock for an order until ``now + ttl``: all lines or none, never below zero.

    Each line is one conditional UPDATE (``on_hand - reserved >= q``), taken in variant-id order so
    concurrent reservations cannot deadlock. Reserving again for the same order with the same lines
    returns the existing reservation; different lines are refused (``ReservationExists``).
    """
    if not lines:
        raise InvalidRequest("nothing to reserve")
    if ttl <= timedelta(0):
        raise InvalidRequest("ttl must be positive")
    now = now or datetime.now(UTC)
    merged = dict(sorted(merge_lines(lines).items()))
    await repo.lock_order(session, order_id)
    existing = await repo.reservations_of(session, order_id, for_update=True)
    if existing:
        same = {r["variant_id"]: r["quantity"] for r in existing} == merged and all(
            r["status"] == ReservationStatus.ACTIVE.value for r in existing
        )
        if not same:
            raise ReservationExists(
                "this order already has a different or no longer active reservation", order_id=str(order_id)
            )
        return ReservationResult(
            reservation_ids=[r["id"] for r in existing], expires_at=min(r["expires_at"] for r in existing)
        )
    states = await repo.variant_states(session, list(merged))
    unavailable = [
        str(vid)
        for vid in merged
        if (s := states.get(vid)) is None or not s[0] or s[1] != ProductStatus.ACTIVE.value
    ]
    if unavailable:
        raise VariantUnavailable(
            f"variant(s) not available: {', '.join(unavailable)}", variant_ids=unavailable
        )
    expires_at = now + ttl
    rows = [
        {"id": uuid.uuid4(), "order_id": order_id, "variant_id": vid, "quantity": q, "expires_at": expires_at}
        for vid, q in merged.items()
    ]
    async with session.begin_nested():  # a shortage undoes the lines already held, whatever the caller does
        failed = {vid: q for vid, q in merged.items() if not await repo.try_reserve(session, vid, q)}
        if failed:
            shortages = _shortages(failed, await repo.stock_levels(session, list(failed)))
            raise OutOfStock(
                "not enough stock for variant(s) " + ", ".join(s["variant_id"] for s in shortages),
                variants=shortages,
            )
        await repo.insert_reservations(session, rows)
    return ReservationResult(reservation_ids=[r["id"] for r in rows], expires_at=expires_at)


async def release(session: AsyncSession, order_id: uuid.UUID) -> list[MovedLine]:
    """Give an order's active reservation back (compensation). Nothing active: a no-op."""
    await repo.lock_order(session, order_id)
    released = sorted(await repo.release_active(session, order_id), key=lambda r: r["variant_id"])
    for r in released:
        await repo.unreserve(session, r["variant_id"], r["quantity"])
    return [MovedLine(variant_id=r["variant_id"], quantity=r["quantity"]) for r in released]


async def commit(session: AsyncSession, order_id: uuid.UUID) -> CommitResult:
    """Turn an order's reservation into a sale: on_hand and reserved drop by the quantity.

    Committing twice is a no-op. Lines whose reservation expired are taken again if the stock is
    still there (else ``OutOfStock``); a released (compensated) reservation is refused.
    """
    await repo.lock_order(session, order_id)
    rows = await repo.reservations_of(session, order_id, for_update=True)
    if not rows:
        raise ReservationNotFound("this order has no reservation", order_id=str(order_id))
    statuses = {r["status"] for r in rows}
    if statuses == {ReservationStatus.COMMITTED.value}:
        return CommitResult(committed_lines=[], already_committed=True)
    if ReservationStatus.RELEASED.value in statuses:
        raise ReservationReleased("this order's reservation was released", order_id=str(order_id))
    todo = [r for r in rows if r["status"] != ReservationStatus.COMMITTED.value]
    async with session.begin_nested():
        failed: dict[uuid.UUID, int] = {}
        for r in todo:  # variant-id order (reservations_of sorts)
            if r["status"] == ReservationStatus.ACTIVE.value:
                await repo.consume_reserved(session, r["variant_id"], r["quantity"])
            elif not await repo.try_take(session, r["variant_id"], r["quantity"]):
                failed[r["variant_id"]] = r["quantity"]
        if failed:
            shortages = _shortages(failed, await repo.stock_levels(session, list(failed)))
            raise OutOfStock(
                "the reservation expired and the stock is gone for variant(s) "
                + ", ".join(s["variant_id"] for s in shortages),
                variants=shortages,
            )
        for from_status in (ReservationStatus.ACTIVE, ReservationStatus.EXPIRED):
            ids = [r["id"] for r in todo if r["status"] == from_status.value]
            if ids:
                await repo.set_reservation_status(
                    session, ids, ReservationStatus.COMMITTED, from_status=from_status
                )
    return CommitResult(
        committed_lines=[MovedLine(variant_id=r["variant_id"], quantity=r["quantity"]) for r in todo],
        already_committed=False,
    )


async def expire_reservations(
    session: AsyncSession, now: datetime | None = None, *, batch: int = EXPIRY_BATCH
) -> int:
    """Release up to ``batch`` active reservations whose expiry has passed; how many were expired."""
    rows = await repo.expire_due(session, now or datetime.now(UTC), batch)
    per_variant: dict[uuid.UUID, int] = {}
    for r in rows:
        per_variant[r["variant_id"]] = per_variant.get(r["variant_id"], 0) + r["quantity"]
    for vid in sorted(per_variant):
        await repo.unreserve(session, vid, per_variant[vid])
    return len(rows)


async def restock(session: AsyncSession, lines: Sequence[StockLine]) -> list[MovedLine]:
    """Put units back on hand (accepted returns)."""
    if not lines:
        raise InvalidRequest("nothing to restock")
    merged = dict(sorted(merge_lines(lines).items()))
    states = await repo.variant_states(session, list(merged))
    missing = [str(vid) for vid in merged if vid not in states]
    if missing:
        raise VariantNotFound(f"no variant(s) {', '.join(missing)}", variant_ids=missing)
    for vid, q in merged.items():
        await repo.add_stock(session, vid, q)
    return [MovedLine(variant_id=vid, quantity=q) for vid, q in merged.items()]


# --- reviews -------------------------------------------------------------------------------


def _review_view(r: RowMapping) -> ReviewView:
    return ReviewView(
        id=r["id"],
        product_id=r["product_id"],
        user_id=r["user_id"],
        order_id=r["order_id"],
        rating=r["rating"],
        title=r["title"],
        body=r["body"],
        status=r["status"],
        created_at=r["created_at"],
    )


async def create_review(session: AsyncSession, inp: ReviewCreate) -> ReviewView:
    """A buyer's review (one per product per user); the product's rating follows in the same transaction."""
    if not inp.has_purchased:
        raise ReviewNotAllowed("only a customer who bought this product can review it")
    status = await repo.lock_product(session, inp.product_id)
    if status != ProductStatus.ACTIVE.value:
        raise ProductNotFound("no such product", product_id=str(inp.product_id))
    row = await repo.insert_review(
        session,
        {
            "id": uuid.uuid4(),
            "product_id": inp.product_id,
            "user_id": inp.user_id,
            "order_id": inp.order_id,
            "rating": inp.rating,
            "title": inp.title,
            "body": inp.body,
        },
    )
    if row is None:
        raise DuplicateReview("you already reviewed this product", product_id=str(inp.product_id))
    await repo.recompute_rating(session, inp.product_id)
    return _review_view(row)


async def moderate_review(session: AsyncSession, review_id: uuid.UUID, status: ReviewStatus) -> None:
    """Hide or re-publish a review; the product's rating is recomputed."""
    product_id = await repo.review_product(session, review_id)
    if product_id is None:
        raise ReviewNotFound("no such review", review_id=str(review_id))
    await repo.lock_product(session, product_id)
    await repo.set_review_status(session, review_id, status.value)
    await repo.recompute_rating(session, product_id)


async def list_reviews(
    session: AsyncSession, product_id: uuid.UUID, *, limit: int = 20, cursor: str | None = None
) -> ReviewPage:
    """Published reviews of a product, newest first, keyset-paginated."""
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100", limit=limit)
    fp = cursors.fingerprint({"reviews_of": str(product_id)})
    after = None
    if cursor is not None:
        raw_key, raw_id = cursors.decode(cursor, fp)
        key, rid = _decode_key(SortOrder.NEWEST, None, raw_key, raw_id)
        after = (key, rid)
    rows = await repo.review_page(session, product_id, limit=limit, after=after)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit and page:
        next_cursor = cursors.encode(fp, [page[-1]["created_at"].isoformat()], str(page[-1]["id"]))
    return ReviewPage(items=[_review_view(r) for r in page], next_cursor=next_cursor)
