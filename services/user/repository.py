"""All SQL of the user service. Functions take the caller's AsyncSession and never commit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.user.models import Address, PaymentMethod, UserPreferences, UserProfile, WishlistItem


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


# --- profiles ----------------------------------------------------------------------------------


async def insert_profile(
    session: AsyncSession, *, user_id: uuid.UUID, email: str, first_name: str, last_name: str
) -> bool:
    """False when a profile with this user id already exists (nothing written)."""
    result = await session.execute(
        insert(UserProfile)
        .values(user_id=user_id, email=email, first_name=first_name, last_name=last_name)
        .on_conflict_do_nothing(index_elements=["user_id"])
        .returning(col(UserProfile.user_id))
    )
    return result.first() is not None


async def get_profile(
    session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False
) -> UserProfile | None:
    """``for_update`` locks the profile: the user's address / payment-method default changes serialize on it."""
    stmt = (
        select(UserProfile)
        .where(col(UserProfile.user_id) == user_id)
        .execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def update_profile(session: AsyncSession, user_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(
        update(UserProfile).where(col(UserProfile.user_id) == user_id).values(**values, updated_at=func.now())
    )


async def delete_profile(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Deletes the profile and, by ON DELETE CASCADE, its addresses, payment methods, preferences and wishlist."""
    result = await session.execute(delete(UserProfile).where(col(UserProfile.user_id) == user_id))
    return _rowcount(result) > 0


# --- addresses ---------------------------------------------------------------------------------


async def list_addresses(
    session: AsyncSession, user_id: uuid.UUID, type_: str | None = None
) -> list[Address]:
    """Served by ix_addresses_user_id_created_at."""
    stmt = select(Address).where(col(Address.user_id) == user_id)
    if type_ is not None:
        stmt = stmt.where(col(Address.type) == type_)
    stmt = stmt.order_by(col(Address.created_at), col(Address.id)).execution_options(populate_existing=True)
    return list((await session.execute(stmt)).scalars())


async def get_address(session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID) -> Address | None:
    """Scoped to the owner: another user's id finds nothing."""
    stmt = (
        select(Address)
        .where(col(Address.id) == address_id, col(Address.user_id) == user_id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def has_address_of_type(session: AsyncSession, user_id: uuid.UUID, type_: str) -> bool:
    stmt = select(col(Address.id)).where(col(Address.user_id) == user_id, col(Address.type) == type_).limit(1)
    return (await session.execute(stmt)).first() is not None


async def clear_default_address(session: AsyncSession, user_id: uuid.UUID, type_: str) -> None:
    """Served by uq_addresses_default_per_user_type."""
    await session.execute(
        update(Address)
        .where(col(Address.user_id) == user_id, col(Address.type) == type_, col(Address.is_default).is_(True))
        .values(is_default=False, updated_at=func.now())
    )


async def insert_address(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(Address).values(**values))


async def update_address(session: AsyncSession, address_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(
        update(Address).where(col(Address.id) == address_id).values(**values, updated_at=func.now())
    )


async def delete_address(session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(Address).where(col(Address.id) == address_id, col(Address.user_id) == user_id)
    )
    return _rowcount(result) > 0


async def newest_address_id(session: AsyncSession, user_id: uuid.UUID, type_: str) -> uuid.UUID | None:
    stmt = (
        select(col(Address.id))
        .where(col(Address.user_id) == user_id, col(Address.type) == type_)
        .order_by(col(Address.created_at).desc(), col(Address.id).desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


# --- payment methods ---------------------------------------------------------------------------


async def list_payment_methods(session: AsyncSession, user_id: uuid.UUID) -> list[PaymentMethod]:
    """Served by ix_payment_methods_user_id_created_at."""
    stmt = (
        select(PaymentMethod)
        .where(col(PaymentMethod.user_id) == user_id)
        .order_by(col(PaymentMethod.created_at), col(PaymentMethod.id))
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(stmt)).scalars())


async def get_payment_method(
    session: AsyncSession, user_id: uuid.UUID, payment_method_id: uuid.UUID
) -> PaymentMethod | None:
    """Scoped to the owner: another user's id finds nothing."""
    stmt = (
        select(PaymentMethod)
        .where(col(PaymentMethod.id) == payment_method_id, col(PaymentMethod.user_id) == user_id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def has_payment_method(session: AsyncSession, user_id: uuid.UUID) -> bool:
    stmt = select(col(PaymentMethod.id)).where(col(PaymentMethod.user_id) == user_id).limit(1)
    return (await session.execute(stmt)).first() is not None


async def clear_default_payment_method(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Served by uq_payment_methods_default_per_user."""
    await session.execute(
        update(PaymentMethod)
        .where(col(PaymentMethod.user_id) == user_id, col(PaymentMethod.is_default).is_(True))
        .values(is_default=False, updated_at=func.now())
    )


async def insert_payment_method(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(PaymentMethod).values(**values))


async def set_payment_method_default(session: AsyncSession, payment_method_id: uuid.UUID) -> None:
    await session.execute(
        update(PaymentMethod)
        .where(col(PaymentMethod.id) == payment_method_id)
        .values(is_default=True, updated_at=func.now())
    )


async def delete_payment_method(
    session: AsyncSession, user_id: uuid.UUID, payment_method_id: uuid.UUID
) -> bool:
    result = await session.execute(
        delete(PaymentMethod).where(
            col(PaymentMethod.id) == payment_method_id, col(PaymentMethod.user_id) == user_id
        )
    )
    return _rowcount(result) > 0


async def newest_payment_method_id(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID | None:
    stmt = (
        select(col(PaymentMethod.id))
        .where(col(PaymentMethod.user_id) == user_id)
        .order_by(col(PaymentMethod.created_at).desc(), col(PaymentMethod.id).desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


# --- preferences -------------------------------------------------------------------------------


async def get_preferences(session: AsyncSession, user_id: uuid.UUID) -> UserPreferences | None:
    stmt = (
        select(UserPreferences)
        .where(col(UserPreferences.user_id) == user_id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def upsert_preferences(session: AsyncSession, user_id: uuid.UUID, values: dict[str, Any]) -> None:
    stmt = insert(UserPreferences).values(user_id=user_id, **values)
    if values:
        await session.execute(
            stmt.on_conflict_do_update(index_elements=["user_id"], set_={**values, "updated_at": func.now()})
        )
    else:
        await session.execute(stmt.on_conflict_do_nothing(index_elements=["user_id"]))


# --- wishlist ----------------------------------------------------------------------------------


async def add_wishlist_item(session: AsyncSession, user_id: uuid.UUID, product_id: uuid.UUID) -> None:
    """Served by uq_wishlist_items_user_product (adding twice keeps the first)."""
    await session.execute(
        insert(WishlistItem)
        .values(id=uuid.uuid4(), user_id=user_id, product_id=product_id)
        .on_conflict_do_nothing(index_elements=["user_id", "product_id"])
    )


async def get_wishlist_item(
    session: AsyncSession, user_id: uuid.UUID, product_id: uuid.UUID
) -> WishlistItem | None:
    stmt = select(WishlistItem).where(
        col(WishlistItem.user_id) == user_id, col(WishlistItem.product_id) == product_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def remove_wishlist_item(session: AsyncSession, user_id: uuid.UUID, product_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(WishlistItem).where(
            col(WishlistItem.user_id) == user_id, col(WishlistItem.product_id) == product_id
        )
    )
    return _rowcount(result) > 0


async def wishlist_page(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[WishlistItem]:
    """Newest first, keyset-paginated on (created_at, id); served by ix_wishlist_items_user_id_created_at_id."""
    stmt = select(WishlistItem).where(col(WishlistItem.user_id) == user_id)
    if before is not None:
        stmt = stmt.where(tuple_(col(WishlistItem.created_at), col(WishlistItem.id)) < tuple_(*before))
    stmt = stmt.order_by(col(WishlistItem.created_at).desc(), col(WishlistItem.id).desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())
