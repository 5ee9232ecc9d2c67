"""Tables of ``product_db``. Only the product service reads or writes them."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from core.ledger import ledger_table


class ProductModel(SQLModel, registry=registry()):
    """Base class of every product_db table; its metadata is what migrations/product builds."""


metadata = ProductModel.metadata

# Idempotency ledger: every writing operation records its key here with its effect.
ledger = ledger_table(metadata)


class ProductStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


class ReservationStatus(StrEnum):
    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


class ReviewStatus(StrEnum):
    PUBLISHED = "published"
    HIDDEN = "hidden"


def _in(values: type[StrEnum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


def _uuid_pk() -> Any:
    return Field(default_factory=uuid.uuid4, sa_column=Column(PG_UUID(as_uuid=True), primary_key=True))


def _created_at() -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def _updated_at() -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


# Full-text document of a product: name weighs most, then brand, then description.
SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(brand, '')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')"
)


class Product(ProductModel, table=True):
    """A catalog entry; prices in minor units. Shoppers only ever see ``active`` products."""

    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("sku", name="uq_products_sku"),
        UniqueConstraint("slug", name="uq_products_slug"),
        CheckConstraint(f"status IN ({_in(ProductStatus)})", name="ck_products_status"),
        CheckConstraint("price_amount >= 0", name="ck_products_price_amount"),
        CheckConstraint("weight_grams >= 0", name="ck_products_weight_grams"),
        CheckConstraint("rating_avg >= 0 AND rating_avg <= 5", name="ck_products_rating_avg"),
        CheckConstraint("rating_count >= 0", name="ck_products_rating_count"),
        # catalog search: `search_vector @@ websearch_to_tsquery(...)`
        Index("ix_products_search_vector", "search_vector", postgresql_using="gin"),
        # catalog search sorted by newest (keyset on created_at, id; scanned backwards)
        Index("ix_products_status_created", "status", "created_at", "id"),
        # catalog search sorted by price / filtered by price range (keyset on price_amount, id)
        Index("ix_products_status_price", "status", "price_amount", "id"),
        # catalog search sorted by rating (keyset on rating_avg, id)
        Index("ix_products_status_rating", "status", "rating_avg", "id"),
        # catalog search filtered by brand
        Index("ix_products_brand", "brand"),
    )

    id: uuid.UUID = _uuid_pk()
    sku: str = Field(sa_column=Column(String(64), nullable=False))
    slug: str = Field(sa_column=Column(String(200), nullable=False))
    name: str = Field(sa_column=Column(String(255), nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    brand: str | None = Field(default=None, sa_column=Column(String(120), nullable=True))
    status: str = Field(
        default=ProductStatus.DRAFT.value,
        sa_column=Column(String(20), nullable=False, server_default=ProductStatus.DRAFT.value),
    )
    price_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(sa_column=Column(CHAR(3), nullable=False))
    weight_grams: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    rating_avg: Decimal = Field(
        default=Decimal("0"), sa_column=Column(Numeric(3, 2), nullable=False, server_default="0")
    )
    rating_count: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    search_vector: str | None = Field(
        default=None, sa_column=Column(TSVECTOR, Computed(SEARCH_VECTOR_SQL, persisted=True))
    )
    created_at: datetime | None = _created_at()
    updated_at: datetime | None = _updated_at()


class Category(ProductModel, table=True):
    """A node of the category tree (``parent_id`` NULL at the roots)."""

    __tablename__ = "categories"
    __table_args__ = (
        UniqueConstraint("slug", name="uq_categories_slug"),
        # category tree listing and the descendants walk (children of a parent, in display order)
        Index("ix_categories_parent_position", "parent_id", "position"),
    )

    id: uuid.UUID = _uuid_pk()
    parent_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(
            PG_UUID(as_uuid=True), ForeignKey("categories.id", ondelete="RESTRICT"), nullable=True
        ),
    )
    slug: str = Field(sa_column=Column(String(120), nullable=False))
    name: str = Field(sa_column=Column(String(120), nullable=False))
    position: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    created_at: datetime | None = _created_at()


class ProductCategory(ProductModel, table=True):
    """Many-to-many: a product listed in a category."""

    __tablename__ = "product_categories"
    __table_args__ = (
        PrimaryKeyConstraint("product_id", "category_id", name="pk_product_categories"),
        # catalog search filtered by category (and its descendants): products of a category
        Index("ix_product_categories_category", "category_id", "product_id"),
    )

    product_id: uuid.UUID = Field(
        sa_column=Column(PG_UUID(as_uuid=True), ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    )
    category_id: uuid.UUID = Field(
        sa_column=Column(
            PG_UUID(as_uuid=True), ForeignKey("categories.id", ondelete="CASCADE"), nullable=False
        )
    )


class ProductVariant(ProductModel, table=True):
    """A buyable variant (size, color ...). Price, currency and weight default to the product's."""

    __tablename__ = "product_variants"
    __table_args__ = (
        UniqueConstraint("sku", name="uq_product_variants_sku"),
        CheckConstraint("price_amount IS NULL OR price_amount >= 0", name="ck_product_variants_price_amount"),
        CheckConstraint(
            "(price_amount IS NULL) = (currency IS NULL)", name="ck_product_variants_price_currency"
        ),
        CheckConstraint("weight_grams IS NULL OR weight_grams >= 0", name="ck_product_variants_weight_grams"),
        # product detail and price_items: the variants of a product
        Index("ix_product_variants_product", "product_id"),
    )

    id: uuid.UUID = _uuid_pk()
    product_id: uuid.UUID = Field(
        sa_column=Column(PG_UUID(as_uuid=True), ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    )
    sku: str = Field(sa_column=Column(String(64), nullable=False))
    options: dict[str, str] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    )
    price_amount: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    currency: str | None = Field(default=None, sa_column=Column(CHAR(3), nullable=True))
    weight_grams: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    is_active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default="true"))
    created_at: datetime | None = _created_at()
    updated_at: datetime | None = _updated_at()


class ProductImage(ProductModel, table=True):
    """An image of a product, optionally of one variant."""

    __tablename__ = "product_images"
    __table_args__ = (
        # product detail (images in display order) and the search thumbnail (first image)
        Index("ix_product_images_product_position", "product_id", "position"),
        # foreign key: deleting a variant finds its images
        Index("ix_product_images_variant", "variant_id"),
    )

    id: uuid.UUID = _uuid_pk()
    product_id: uuid.UUID = Field(
        sa_column=Column(PG_UUID(as_uuid=True), ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    )
    variant_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(
            PG_UUID(as_uuid=True), ForeignKey("product_variants.id", ondelete="CASCADE"), nullable=True
        ),
    )
    url: str = Field(sa_column=Column(String(2048), nullable=False))
    alt: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    position: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    created_at: datetime | None = _created_at()


class Inventory(ProductModel, table=True):
    """Stock of one variant. ``available = on_hand - reserved`` never goes below zero (CHECK)."""

    __tablename__ = "inventory"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="ck_inventory_on_hand"),
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="ck_inventory_reserved"),
    )

    variant_id: uuid.UUID = Field(
        sa_column=Column(
            PG_UUID(as_uuid=True),
            ForeignKey("product_variants.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    on_hand: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    reserved: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    updated_at: datetime | None = _updated_at()


class InventoryReservation(ProductModel, table=True):
    """Stock held for an order until it is committed (sold), released (compensation) or expires."""

    __tablename__ = "inventory_reservations"
    __table_args__ = (
        # release / commit by order (leading column); one line per variant per order
        UniqueConstraint("order_id", "variant_id", name="uq_inventory_reservations_order_variant"),
        CheckConstraint(f"status IN ({_in(ReservationStatus)})", name="ck_inventory_reservations_status"),
        CheckConstraint("quantity > 0", name="ck_inventory_reservations_quantity"),
        # expiry sweep: active reservations whose expires_at has passed
        Index(
            "ix_inventory_reservations_active_expiry",
            "expires_at",
            postgresql_where=text("status = 'active'"),
        ),
        # foreign key: variant deletion / stock investigations per variant
        Index("ix_inventory_reservations_variant", "variant_id"),
    )

    id: uuid.UUID = _uuid_pk()
    order_id: uuid.UUID = Field(sa_column=Column(PG_UUID(as_uuid=True), nullable=False))
    variant_id: uuid.UUID = Field(
        sa_column=Column(
            PG_UUID(as_uuid=True), ForeignKey("product_variants.id", ondelete="CASCADE"), nullable=False
        )
    )
    quantity: int = Field(sa_column=Column(Integer, nullable=False))
    status: str = Field(
        default=ReservationStatus.ACTIVE.value,
        sa_column=Column(String(20), nullable=False, server_default=ReservationStatus.ACTIVE.value),
    )
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    created_at: datetime | None = _created_at()
    updated_at: datetime | None = _updated_at()


class Review(ProductModel, table=True):
    """A shopper's review; one per product per user, only from a buyer (checked by the caller)."""

    __tablename__ = "reviews"
    __table_args__ = (
        # one review per product per user; also serves "has this user reviewed this product"
        UniqueConstraint("product_id", "user_id", name="uq_reviews_product_user"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="ck_reviews_rating"),
        CheckConstraint(f"status IN ({_in(ReviewStatus)})", name="ck_reviews_status"),
        # review list of a product, newest first (keyset on created_at, id), and the rating aggregate
        Index("ix_reviews_product_status_created", "product_id", "status", "created_at", "id"),
        # a user's reviews (support / account page)
        Index("ix_reviews_user", "user_id"),
    )

    id: uuid.UUID = _uuid_pk()
    product_id: uuid.UUID = Field(
        sa_column=Column(PG_UUID(as_uuid=True), ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    )
    user_id: uuid.UUID = Field(sa_column=Column(PG_UUID(as_uuid=True), nullable=False))
    order_id: uuid.UUID | None = Field(default=None, sa_column=Column(PG_UUID(as_uuid=True), nullable=True))
    rating: int = Field(sa_column=Column(SmallInteger, nullable=False))
    title: str = Field(default="", sa_column=Column(String(200), nullable=False, server_default=""))
    body: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    status: str = Field(
        default=ReviewStatus.PUBLISHED.value,
        sa_column=Column(String(20), nullable=False, server_default=ReviewStatus.PUBLISHED.value),
    )
    created_at: datetime | None = _created_at()
    updated_at: datetime | None = _updated_at()


class ProductTag(ProductModel, table=True):
    """A free-form tag on a product (``summer``, ``organic`` ...)."""

    __tablename__ = "product_tags"
    __table_args__ = (
        PrimaryKeyConstraint("product_id", "tag", name="pk_product_tags"),
        # catalog search filtered by tag
        Index("ix_product_tags_tag", "tag", "product_id"),
    )

    product_id: uuid.UUID = Field(
        sa_column=Column(PG_UUID(as_uuid=True), ForeignKey("products.id", ondelete="CASCADE"), nullable=False)
    )
    tag: str = Field(sa_column=Column(String(50), nullable=False))


def _table(model: type[ProductModel]) -> Table:
    """The Core table of a model (typed, for the repository's SQL)."""
    t = model.__table__  # type: ignore[attr-defined]
    assert isinstance(t, Table)
    return t


products = _table(Product)
categories = _table(Category)
product_categories = _table(ProductCategory)
product_variants = _table(ProductVariant)
product_images = _table(ProductImage)
inventory = _table(Inventory)
inventory_reservations = _table(InventoryReservation)
reviews = _table(Review)
product_tags = _table(ProductTag)
