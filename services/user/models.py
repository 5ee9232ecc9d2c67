"""Tables of ``user_db``. Only the user service reads or writes them.

``user_profiles.user_id`` is the auth service's user id (no foreign key across services); every other
table hangs off the profile with a foreign key inside this database, so deleting a profile (the
registration saga's compensation) removes everything of that user. ``wishlist_items.product_id`` is a
product service reference (no foreign key).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CHAR,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from core.ledger import ledger_table


class UserModel(SQLModel, registry=registry()):
    """Base class of every user_db table; its metadata is what migrations/user builds."""


metadata = UserModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata, "event_logs")


class AddressType(StrEnum):
    SHIPPING = "shipping"
    BILLING = "billing"


def _now_column(name: str) -> Any:
    return Column(name, DateTime(timezone=True), nullable=False, server_default=func.now())


def _user_fk() -> Any:
    return Column(
        "user_id",
        UUID(as_uuid=True),
        ForeignKey("user_profiles.user_id", ondelete="CASCADE"),
        nullable=False,
    )


class UserProfile(UserModel, table=True):
    """Extended user information; created by the registration saga (the seed's ``user.created``)."""

    __tablename__ = "user_profiles"
    __table_args__ = (
        CheckConstraint(
            "date_of_birth IS NULL OR date_of_birth >= DATE '1900-01-01'", name="ck_user_profiles_dob"
        ),
    )

    user_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True), primary_key=True, comment="auth users.id (no FK across services)"
        )
    )
    email: str = Field(sa_column=Column(String(320), nullable=False, comment="copy of the auth email"))
    first_name: str = Field(sa_column=Column(String(100), nullable=False))
    last_name: str = Field(sa_column=Column(String(100), nullable=False))
    phone: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    date_of_birth: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    locale: str | None = Field(default=None, sa_column=Column(String(35), nullable=True, comment="BCP 47"))
    created_at: datetime | None = Field(default=None, sa_column=_now_column("created_at"))
    updated_at: datetime | None = Field(default=None, sa_column=_now_column("updated_at"))


class Address(UserModel, table=True):
    """A shipping or billing address of a user; at most one default per (user, type)."""

    __tablename__ = "addresses"
    __table_args__ = (
        CheckConstraint("type IN ('shipping', 'billing')", name="ck_addresses_type"),
        CheckConstraint("country ~ '^[A-Z]{2}$'", name="ck_addresses_country"),
        # "The user's default shipping/billing address", and at most one default per user and type.
        Index(
            "uq_addresses_default_per_user_type",
            "user_id",
            "type",
            unique=True,
            postgresql_where=text("is_default"),
        ),
        # Address book listing: WHERE user_id = :u ORDER BY created_at; and the ON DELETE CASCADE.
        Index("ix_addresses_user_id_created_at", "user_id", "created_at"),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    user_id: uuid.UUID = Field(sa_column=_user_fk())
    type: str = Field(sa_column=Column(String(10), nullable=False))
    name: str = Field(sa_column=Column(String(200), nullable=False, comment="recipient"))
    line1: str = Field(sa_column=Column(String(200), nullable=False))
    line2: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    city: str = Field(sa_column=Column(String(100), nullable=False))
    region: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    postal_code: str = Field(sa_column=Column(String(20), nullable=False))
    country: str = Field(sa_column=Column(CHAR(2), nullable=False, comment="ISO 3166-1 alpha-2"))
    phone: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    is_default: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default="false"))
    created_at: datetime | None = Field(default=None, sa_column=_now_column("created_at"))
    updated_at: datetime | None = Field(default=None, sa_column=_now_column("updated_at"))


class PaymentMethod(UserModel, table=True):
    """A card tokenized by the PSP. Only the PSP token (Fernet-encrypted), brand, last4 and expiry."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        CheckConstraint("last4 ~ '^[0-9]{4}$'", name="ck_payment_methods_last4"),
        CheckConstraint("exp_month BETWEEN 1 AND 12", name="ck_payment_methods_exp_month"),
        CheckConstraint("exp_year BETWEEN 2000 AND 2199", name="ck_payment_methods_exp_year"),
        # "The user's default payment method", and at most one default per user.
        Index(
            "uq_payment_methods_default_per_user", "user_id", unique=True, postgresql_where=text("is_default")
        ),
        # Listing: WHERE user_id = :u ORDER BY created_at; and the ON DELETE CASCADE.
        Index("ix_payment_methods_user_id_created_at", "user_id", "created_at"),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    user_id: uuid.UUID = Field(sa_column=_user_fk())
    psp_token_encrypted: str = Field(
        sa_column=Column(Text, nullable=False, comment="Fernet ciphertext of the PSP token (ENCRYPTION_KEY)")
    )
    brand: str = Field(sa_column=Column(String(30), nullable=False))
    last4: str = Field(sa_column=Column(CHAR(4), nullable=False))
    exp_month: int = Field(sa_column=Column(SmallInteger, nullable=False))
    exp_year: int = Field(sa_column=Column(SmallInteger, nullable=False))
    is_default: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default="false"))
    created_at: datetime | None = Field(default=None, sa_column=_now_column("created_at"))
    updated_at: datetime | None = Field(default=None, sa_column=_now_column("updated_at"))


class UserPreferences(UserModel, table=True):
    """One row per user (PK serves the lookup): language, currency, marketing consent, free extras."""

    __tablename__ = "user_preferences"
    __table_args__ = (CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_user_preferences_currency"),)

    user_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True), ForeignKey("user_profiles.user_id", ondelete="CASCADE"), primary_key=True
        )
    )
    language: str = Field(sa_column=Column(String(35), nullable=False, server_default="en"))
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False, server_default="USD"))
    marketing_opt_in: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default="false")
    )
    extras: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    )
    created_at: datetime | None = Field(default=None, sa_column=_now_column("created_at"))
    updated_at: datetime | None = Field(default=None, sa_column=_now_column("updated_at"))


class WishlistItem(UserModel, table=True):
    """A product a user keeps for later; once per (user, product)."""

    __tablename__ = "wishlist_items"
    __table_args__ = (
        # Add / remove / "is it in my wishlist": WHERE user_id = :u AND product_id = :p; and uniqueness.
        UniqueConstraint("user_id", "product_id", name="uq_wishlist_items_user_product"),
        # Cursor pagination: WHERE user_id = :u AND (created_at, id) < (:c, :i) ORDER BY created_at DESC, id DESC.
        Index("ix_wishlist_items_user_id_created_at_id", "user_id", "created_at", "id"),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    user_id: uuid.UUID = Field(sa_column=_user_fk())
    product_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), nullable=False, comment="product service id (no FK)")
    )
    created_at: datetime | None = Field(default=None, sa_column=_now_column("created_at"))
