"""All SQL of the product service. Functions take the caller's ``AsyncSession``; none commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    REAL,
    ColumnElement,
    RowMapping,
    Select,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.product.models import (
    ProductStatus,
    ReservationStatus,
    ReviewStatus,
    categories,
    inventory,
    inventory_reservations,
    product_categories,
    product_images,
    product_tags,
    product_variants,
    products,
    reviews,
)
from services.product.schemas import SearchParams, SortOrder

p, v, inv, res = products, product_variants, inventory, inventory_reservations


# --- catalog search ------------------------------------------------------------------------


async def category_subtree(session: AsyncSession, slug: str) -> list[uuid.UUID] | None:
    """Ids of the category ``slug`` and all its descendants; None if there is no such category."""
    sub = select(categories.c.id).where(categories.c.slug == slug).cte("subtree", recursive=True)
    child = categories.alias("child")
    sub = sub.union_all(select(child.c.id).where(child.c.parent_id == sub.c.id))
    ids = list((await session.execute(select(sub.c.id))).scalars())
    return ids or None


def _tsquery(q: str) -> ColumnElement[Any]:
    return func.websearch_to_tsquery(literal_column("'english'"), q)


def sort_key(sort: SortOrder, q: str | None) -> tuple[ColumnElement[Any], bool]:
    """The sort expression of ``sort`` and whether it is descending (ties broken by id, same way)."""
    if sort is SortOrder.RELEVANCE and q:
        return func.ts_rank(p.c.search_vector, _tsquery(q), type_=REAL), True
    if sort is SortOrder.PRICE_ASC:
        return p.c.price_amount, False
    if sort is SortOrder.PRICE_DESC:
        return p.c.price_amount, True
    if sort is SortOrder.RATING:
        return p.c.rating_avg, True
    return p.c.created_at, True  # newest, and relevance without a query


def _in_stock() -> ColumnElement[bool]:
    return exists(
        select(literal_column("1"))
        .select_from(v.join(inv, inv.c.variant_id == v.c.id))
        .where(v.c.product_id == p.c.id, v.c.is_active.is_(True), inv.c.on_hand - inv.c.reserved > 0)
    )


def search_query(
    params: SearchParams, *, subtree: list[uuid.UUID] | None, after: tuple[Any, uuid.UUID] | None
) -> Select[Any]:
    key, descending = sort_key(params.sort, params.q)
    conds: list[ColumnElement[bool]] = []
    if not params.include_unpublished:
        conds.append(p.c.status == ProductStatus.ACTIVE.value)
    if params.q:
        conds.append(p.c.search_vector.op("@@")(_tsquery(params.q)))
    if subtree is not None:
        conds.append(
            exists(
                select(literal_column("1"))
                .select_from(product_categories)
                .where(
                    product_categories.c.product_id == p.c.id,
                    product_categories.c.category_id.in_(subtree),
                )
            )
        )
    if params.tag is not None:
        conds.append(
            exists(
                select(literal_column("1"))
                .select_from(product_tags)
                .where(product_tags.c.product_id == p.c.id, product_tags.c.tag == params.tag)
            )
        )
    if params.brand is not None:
        conds.append(p.c.brand == params.brand)
    if params.price_min is not None:
        conds.append(p.c.price_amount >= params.price_min)
    if params.price_max is not None:
        conds.append(p.c.price_amount <= params.price_max)
    if params.in_stock:
        conds.append(_in_stock())
    if after is not None:
        bound = tuple_(bindparam("after_key", after[0], type_=key.type), bindparam("after_id", after[1]))
        conds.append(tuple_(key, p.c.id) < bound if descending else tuple_(key, p.c.id) > bound)
    thumbnail = (
        select(product_images.c.url)
        .where(product_images.c.product_id == p.c.id)
        .order_by(product_images.c.position, product_images.c.id)
        .limit(1)
        .scalar_subquery()
    )
    order = (key.desc(), p.c.id.desc()) if descending else (key.asc(), p.c.id.asc())
    return (
        select(
            p.c.id,
            p.c.slug,
            p.c.name,
            p.c.brand,
            p.c.status,
            p.c.price_amount,
            p.c.currency,
            p.c.rating_avg,
            p.c.rating_count,
            p.c.created_at,
            _in_stock().label("in_stock"),
            thumbnail.label("thumbnail_url"),
            key.label("sort_key"),
        )
        .where(and_(*conds))
        .order_by(*order)
        .limit(params.limit + 1)
    )


async def search_products(
    session: AsyncSession,
    params: SearchParams,
    *,
    subtree: list[uuid.UUID] | None,
    after: tuple[Any, uuid.UUID] | None,
) -> Sequence[RowMapping]:
    return (await session.execute(search_query(params, subtree=subtree, after=after))).mappings().all()


# --- product detail / categories -----------------------------------------------------------


async def product_row(
    session: AsyncSession, *, product_id: uuid.UUID | None = None, slug: str | None = None
) -> RowMapping | None:
    cond = p.c.id == product_id if product_id is not None else p.c.slug == slug
    cols = [c for c in p.c if c.name != "search_vector"]
    return (await session.execute(select(*cols).where(cond))).mappings().first()


async def categories_of(session: AsyncSession, product_id: uuid.UUID) -> Sequence[RowMapping]:
    q = (
        select(categories.c.id, categories.c.slug, categories.c.name)
        .join(product_categories, product_categories.c.category_id == categories.c.id)
        .where(product_categories.c.product_id == product_id)
        .order_by(categories.c.slug)
    )
    return (await session.execute(q)).mappings().all()


async def tags_of(session: AsyncSession, product_id: uuid.UUID) -> list[str]:
    q = select(product_tags.c.tag).where(product_tags.c.product_id == product_id).order_by(product_tags.c.tag)
    return list((await session.execute(q)).scalars())


def _variant_columns() -> list[ColumnElement[Any]]:
    return [
        v.c.id,
        v.c.product_id,
        v.c.sku,
        v.c.options,
        v.c.is_active,
        func.coalesce(v.c.price_amount, p.c.price_amount).label("price_amount"),
        func.coalesce(v.c.currency, p.c.currency).label("currency"),
        func.coalesce(v.c.weight_grams, p.c.weight_grams).label("weight_grams"),
        func.coalesce(inv.c.on_hand, 0).label("on_hand"),
        func.coalesce(inv.c.reserved, 0).label("reserved"),
    ]


async def variants_of(session: AsyncSession, product_id: uuid.UUID) -> Sequence[RowMapping]:
    q = (
        select(*_variant_columns())
        .select_from(v.join(p, p.c.id == v.c.product_id).outerjoin(inv, inv.c.variant_id == v.c.id))
        .where(v.c.product_id == product_id)
        .order_by(v.c.sku)
    )
    return (await session.execute(q)).mappings().all()


async def variant_row(session: AsyncSession, variant_id: uuid.UUID) -> RowMapping | None:
    q = (
        select(*_variant_columns())
        .select_from(v.join(p, p.c.id == v.c.product_id).outerjoin(inv, inv.c.variant_id == v.c.id))
        .where(v.c.id == variant_id)
    )
    return (await session.execute(q)).mappings().first()


async def images_of(session: AsyncSession, product_id: uuid.UUID) -> Sequence[RowMapping]:
    q = (
        select(
            product_images.c.id,
            product_images.c.variant_id,
            product_images.c.url,
            product_images.c.alt,
            product_images.c.position,
        )
        .where(product_images.c.product_id == product_id)
        .order_by(product_images.c.position, product_images.c.id)
    )
    return (await session.execute(q)).mappings().all()


async def all_categories(session: AsyncSession) -> Sequence[RowMapping]:
    q = select(
        categories.c.id, categories.c.parent_id, categories.c.slug, categories.c.name, categories.c.position
    ).order_by(categories.c.position, categories.c.name)
    return (await session.execute(q)).mappings().all()


async def category_ids_by_slug(session: AsyncSession, slugs: Iterable[str]) -> dict[str, uuid.UUID]:
    wanted = list(slugs)
    if not wanted:
        return {}
    q = select(categories.c.slug, categories.c.id).where(categories.c.slug.in_(wanted))
    return {row.slug: row.id for row in await session.execute(q)}


async def insert_category(session: AsyncSession, values: dict[str, Any]) -> bool:
    q = insert(categories).values(**values).on_conflict_do_nothing().returning(categories.c.id)
    return (await session.execute(q)).first() is not None


# --- admin writes --------------------------------------------------------------------------


async def insert_product(session: AsyncSession, values: dict[str, Any]) -> bool:
    """False when the SKU or the slug is taken (nothing written)."""
    q = insert(p).values(**values).on_conflict_do_nothing().returning(p.c.id)
    return (await session.execute(q)).first() is not None


async def product_sku_taken(session: AsyncSession, sku: str) -> bool:
    return (await session.execute(select(p.c.id).where(p.c.sku == sku))).first() is not None


async def product_slug_taken(
    session: AsyncSession, slug: str, *, other_than: uuid.UUID | None = None
) -> bool:
    q = select(p.c.id).where(p.c.slug == slug)
    if other_than is not None:
        q = q.where(p.c.id != other_than)
    return (await session.execute(q)).first() is not None


async def update_product(session: AsyncSession, product_id: uuid.UUID, values: dict[str, Any]) -> bool:
    q = update(p).where(p.c.id == product_id).values(**values, updated_at=func.now()).returning(p.c.id)
    return (await session.execute(q)).first() is not None


async def replace_categories(session: AsyncSession, product_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
    await session.execute(product_categories.delete().where(product_categories.c.product_id == product_id))
    if ids:
        await session.execute(
            insert(product_categories), [{"product_id": product_id, "category_id": i} for i in ids]
        )


async def replace_tags(session: AsyncSession, product_id: uuid.UUID, tags: list[str]) -> None:
    await session.execute(product_tags.delete().where(product_tags.c.product_id == product_id))
    if tags:
        await session.execute(insert(product_tags), [{"product_id": product_id, "tag": t} for t in tags])


async def insert_variants(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Insert variants; the SKUs that were inserted (a taken SKU is skipped, not an error)."""
    if not rows:
        return set()
    q = insert(v).on_conflict_do_nothing().returning(v.c.sku)
    return set((await session.execute(q, rows)).scalars())


async def update_variant(session: AsyncSession, variant_id: uuid.UUID, values: dict[str, Any]) -> bool:
    q = update(v).where(v.c.id == variant_id).values(**values, updated_at=func.now()).returning(v.c.id)
    return (await session.execute(q)).first() is not None


async def insert_inventory(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(inv).on_conflict_do_nothing(index_elements=[inv.c.variant_id]), rows)


async def insert_images(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(product_images), rows)


async def variant_product(session: AsyncSession, variant_id: uuid.UUID) -> uuid.UUID | None:
    q = select(v.c.product_id).where(v.c.id == variant_id)
    return (await session.execute(q)).scalar_one_or_none()


# --- pricing -------------------------------------------------------------------------------


async def variants_for_pricing(session: AsyncSession, ids: list[uuid.UUID]) -> Sequence[RowMapping]:
    q = (
        select(
            v.c.id,
            v.c.product_id,
            v.c.sku,
            v.c.options,
            v.c.is_active,
            p.c.name,
            p.c.status.label("product_status"),
            func.coalesce(v.c.price_amount, p.c.price_amount).label("unit_price_amount"),
            func.coalesce(v.c.currency, p.c.currency).label("currency"),
            func.coalesce(v.c.weight_grams, p.c.weight_grams).label("weight_grams"),
        )
        .join(p, p.c.id == v.c.product_id)
        .where(v.c.id.in_(ids))
    )
    return (await session.execute(q)).mappings().all()


# --- inventory -----------------------------------------------------------------------------


async def lock_order(session: AsyncSession, order_id: uuid.UUID) -> None:
    """Serialize reserve / release / commit of one order (transaction-scoped advisory lock)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"product.reservation:{order_id}"},
    )


async def variant_states(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[bool, str]]:
    """variant id -> (variant is_active, product status), for the variants that exist."""
    q = select(v.c.id, v.c.is_active, p.c.status).join(p, p.c.id == v.c.product_id).where(v.c.id.in_(ids))
    return {row.id: (row.is_active, row.status) for row in await session.execute(q)}


async def try_reserve(session: AsyncSession, variant_id: uuid.UUID, quantity: int) -> bool:
    """Atomically hold ``quantity`` if that much is available; False (nothing changed) otherwise."""
    q = (
        update(inv)
        .where(inv.c.variant_id == variant_id, inv.c.on_hand - inv.c.reserved >= quantity)
        .values(reserved=inv.c.reserved + quantity, version=inv.c.version + 1, updated_at=func.now())
        .returning(inv.c.variant_id)
    )
    return (await session.execute(q)).first() is not None


async def try_take(session: AsyncSession, variant_id: uuid.UUID, quantity: int) -> bool:
    """Atomically remove ``quantity`` from unreserved stock; False (nothing changed) if not available."""
    q = (
        update(inv)
        .where(inv.c.variant_id == variant_id, inv.c.on_hand - inv.c.reserved >= quantity)
        .values(on_hand=inv.c.on_hand - quantity, version=inv.c.version + 1, updated_at=func.now())
        .returning(inv.c.variant_id)
    )
    return (await session.execute(q)).first() is not None


async def unreserve(session: AsyncSession, variant_id: uuid.UUID, quantity: int) -> None:
    await session.execute(
        update(inv)
        .where(inv.c.variant_id == variant_id)
        .values(reserved=inv.c.reserved - quantity, version=inv.c.version + 1, updated_at=func.now())
    )


async def consume_reserved(session: AsyncSession, variant_id: uuid.UUID, quantity: int) -> None:
    """A reserved quantity leaves the warehouse: on_hand and reserved both drop."""
    await session.execute(
        update(inv)
        .where(inv.c.variant_id == variant_id)
        .values(
            on_hand=inv.c.on_hand - quantity,
            reserved=inv.c.reserved - quantity,
            version=inv.c.version + 1,
            updated_at=func.now(),
        )
    )


async def add_stock(session: AsyncSession, variant_id: uuid.UUID, quantity: int) -> None:
    q = insert(inv).values(variant_id=variant_id, on_hand=quantity)
    q = q.on_conflict_do_update(
        index_elements=[inv.c.variant_id],
        set_={"on_hand": inv.c.on_hand + quantity, "version": inv.c.version + 1, "updated_at": func.now()},
    )
    await session.execute(q)


async def stock_levels(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, RowMapping]:
    q = select(inv.c.variant_id, inv.c.on_hand, inv.c.reserved, inv.c.version).where(
        inv.c.variant_id.in_(ids)
    )
    return {row.variant_id: row for row in (await session.execute(q)).mappings()}


async def set_on_hand(
    session: AsyncSession, variant_id: uuid.UUID, on_hand: int, expected_version: int | None
) -> RowMapping | None:
    """Set on_hand if it stays >= reserved (and the version matches); None if refused or missing."""
    q = update(inv).where(inv.c.variant_id == variant_id, inv.c.reserved <= on_hand)
    if expected_version is not None:
        q = q.where(inv.c.version == expected_version)
    q2 = q.values(on_hand=on_hand, version=inv.c.version + 1, updated_at=func.now()).returning(
        inv.c.variant_id, inv.c.on_hand, inv.c.reserved, inv.c.version
    )
    return (await session.execute(q2)).mappings().first()


async def reservations_of(
    session: AsyncSession, order_id: uuid.UUID, *, for_update: bool = False
) -> Sequence[RowMapping]:
    q = select(res).where(res.c.order_id == order_id).order_by(res.c.variant_id)
    if for_update:
        q = q.with_for_update()
    return (await session.execute(q)).mappings().all()


async def insert_reservations(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(res), rows)


async def set_reservation_status(
    session: AsyncSession, ids: list[uuid.UUID], status: ReservationStatus, *, from_status: ReservationStatus
) -> Sequence[RowMapping]:
    q = (
        update(res)
        .where(res.c.id.in_(ids), res.c.status == from_status.value)
        .values(status=status.value, updated_at=func.now())
        .returning(res.c.id, res.c.variant_id, res.c.quantity)
    )
    return (await session.execute(q)).mappings().all()


async def release_active(session: AsyncSession, order_id: uuid.UUID) -> Sequence[RowMapping]:
    q = (
        update(res)
        .where(res.c.order_id == order_id, res.c.status == ReservationStatus.ACTIVE.value)
        .values(status=ReservationStatus.RELEASED.value, updated_at=func.now())
        .returning(res.c.variant_id, res.c.quantity)
    )
    return (await session.execute(q)).mappings().all()


async def expire_due(session: AsyncSession, now: datetime, batch: int) -> Sequence[RowMapping]:
    """Mark up to ``batch`` active reservations past expiry as expired (skipping rows another
    transaction holds) and return their variant and quantity."""
    due = (
        select(res.c.id)
        .where(res.c.status == ReservationStatus.ACTIVE.value, res.c.expires_at <= now)
        .order_by(res.c.expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    q = (
        update(res)
        .where(res.c.id == due.c.id)
        .values(status=ReservationStatus.EXPIRED.value, updated_at=func.now())
        .returning(res.c.variant_id, res.c.quantity)
    )
    return (await session.execute(q)).mappings().all()


# --- reviews -------------------------------------------------------------------------------


async def lock_product(session: AsyncSession, product_id: uuid.UUID) -> str | None:
    """Lock the product row (rating aggregate updates serialize on it); its status, None if missing."""
    q = select(p.c.status).where(p.c.id == product_id).with_for_update()
    return (await session.execute(q)).scalar_one_or_none()


async def insert_review(session: AsyncSession, values: dict[str, Any]) -> RowMapping | None:
    """None when the user already reviewed this product."""
    q = (
        insert(reviews)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[reviews.c.product_id, reviews.c.user_id])
        .returning(*reviews.c)
    )
    return (await session.execute(q)).mappings().first()


async def recompute_rating(session: AsyncSession, product_id: uuid.UUID) -> None:
    """Recount the product's published reviews into rating_avg / rating_count (caller holds the row lock)."""
    published = and_(reviews.c.product_id == product_id, reviews.c.status == ReviewStatus.PUBLISHED.value)
    avg = (
        select(func.coalesce(func.round(func.avg(reviews.c.rating), 2), 0)).where(published).scalar_subquery()
    )
    count = select(func.count()).where(published).scalar_subquery()
    await session.execute(update(p).where(p.c.id == product_id).values(rating_avg=avg, rating_count=count))


async def review_page(
    session: AsyncSession, product_id: uuid.UUID, *, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> Sequence[RowMapping]:
    q = select(reviews).where(
        reviews.c.product_id == product_id, reviews.c.status == ReviewStatus.PUBLISHED.value
    )
    if after is not None:
        bound = tuple_(
            bindparam("after_key", after[0], type_=reviews.c.created_at.type), bindparam("after_id", after[1])
        )
        q = q.where(tuple_(reviews.c.created_at, reviews.c.id) < bound)
    q = q.order_by(reviews.c.created_at.desc(), reviews.c.id.desc()).limit(limit + 1)
    return (await session.execute(q)).mappings().all()


async def set_review_status(session: AsyncSession, review_id: uuid.UUID, status: str) -> uuid.UUID | None:
    q = (
        update(reviews)
        .where(reviews.c.id == review_id)
        .values(status=status, updated_at=func.now())
        .returning(reviews.c.product_id)
    )
    return (await session.execute(q)).scalar_one_or_none()


async def review_product(session: AsyncSession, review_id: uuid.UUID) -> uuid.UUID | None:
    return (
        await session.execute(select(reviews.c.product_id).where(reviews.c.id == review_id))
    ).scalar_one_or_none()
