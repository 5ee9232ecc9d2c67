"""Inputs and outputs of the product service's operations (validated before anything is written)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.product.models import ProductStatus, ReservationStatus, ReviewStatus

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=120)]
ProductSlug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=200)]
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)]
Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=50)]
Amount = Annotated[int, Field(ge=0, le=10**12)]
Grams = Annotated[int, Field(ge=0, le=10**8)]
# One line of an order may ask for 1..999 units of a variant.
LineQuantity = Annotated[int, Field(ge=1, le=999)]
Options = dict[
    Annotated[str, StringConstraints(min_length=1, max_length=40)],
    Annotated[str, StringConstraints(min_length=1, max_length=80)],
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# --- catalog search -------------------------------------------------------------------------


class SortOrder(StrEnum):
    RELEVANCE = "relevance"  # full-text rank; without a query the same as newest
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    NEWEST = "newest"
    RATING = "rating"


class SearchParams(_In):
    """Catalog search. Price filters and sorts use the product's base (list) price."""

    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    category: Slug | None = None  # the category and all its descendants
    tag: Tag | None = None
    brand: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = None
    price_min: Amount | None = None
    price_max: Amount | None = None
    in_stock: bool = False  # only products with an active variant that has available stock
    sort: SortOrder = SortOrder.RELEVANCE
    limit: Annotated[int, Field(ge=1, le=100)] = 24
    cursor: Annotated[str, StringConstraints(max_length=1024)] | None = None
    include_unpublished: bool = False  # admin listings; shoppers only ever see active products

    @model_validator(mode="after")
    def _price_range(self) -> Self:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min must not exceed price_max")
        return self


class ProductSummary(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    brand: str | None
    status: str
    price_amount: int
    currency: str
    rating_avg: float
    rating_count: int
    in_stock: bool
    thumbnail_url: str | None
    created_at: datetime


class SearchPage(BaseModel):
    items: list[ProductSummary]
    next_cursor: str | None


# --- product detail ------------------------------------------------------------------------


class CategoryRef(BaseModel):
    id: uuid.UUID
    slug: str
    name: str


class VariantView(BaseModel):
    id: uuid.UUID
    product_id: uuid.UUID
    sku: str
    options: dict[str, str]
    price_amount: int  # effective: the override or the product's price
    currency: str
    weight_grams: int
    is_active: bool
    on_hand: int
    reserved: int
    available: int  # on_hand - reserved


class ImageView(BaseModel):
    id: uuid.UUID
    variant_id: uuid.UUID | None
    url: str
    alt: str
    position: int


class ProductDetail(BaseModel):
    id: uuid.UUID
    sku: str
    slug: str
    name: str
    description: str
    brand: str | None
    status: str
    price_amount: int
    currency: str
    weight_grams: int
    rating_avg: float
    rating_count: int
    available: int  # sum over active variants
    categories: list[CategoryRef]
    tags: list[str]
    variants: list[VariantView]
    images: list[ImageView]
    created_at: datetime
    updated_at: datetime


class CategoryNode(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    position: int
    children: list[CategoryNode] = []


# --- admin ---------------------------------------------------------------------------------


class VariantCreate(_In):
    sku: Sku
    options: Options = {}
    price_amount: Amount | None = None  # None: the product's price
    currency: Currency | None = None
    weight_grams: Grams | None = None
    is_active: bool = True
    on_hand: Annotated[int, Field(ge=0, le=10**7)] = 0

    @model_validator(mode="after")
    def _price_with_currency(self) -> Self:
        if (self.price_amount is None) != (self.currency is None):
            raise ValueError("a variant price override needs both price_amount and currency")
        return self


class VariantUpdate(_In):
    """Fields left out are unchanged; ``price_amount=None`` with ``currency=None`` clears the override."""

    options: Options | None = None
    price_amount: Amount | None = None
    currency: Currency | None = None
    weight_grams: Grams | None = None
    is_active: bool | None = None

    @model_validator(mode="after")
    def _price_with_currency(self) -> Self:
        if ("price_amount" in self.model_fields_set) != ("currency" in self.model_fields_set) or (
            (self.price_amount is None) != (self.currency is None)
        ):
            raise ValueError("set price_amount and currency together (both null clears the override)")
        return self


class ImageCreate(_In):
    url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2048)]
    alt: Annotated[str, StringConstraints(max_length=255)] = ""
    position: Annotated[int, Field(ge=0, le=1000)] = 0
    variant_sku: Sku | None = None  # at product creation
    variant_id: uuid.UUID | None = None  # on an existing product


class ProductCreate(_In):
    sku: Sku
    slug: ProductSlug
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    description: Annotated[str, StringConstraints(max_length=20_000)] = ""
    brand: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = None
    status: ProductStatus = ProductStatus.DRAFT
    price_amount: Amount
    currency: Currency
    weight_grams: Grams = 0
    categories: Annotated[list[Slug], Field(max_length=20)] = []
    tags: Annotated[list[Tag], Field(max_length=30)] = []
    variants: Annotated[list[VariantCreate], Field(max_length=100)] = []
    images: Annotated[list[ImageCreate], Field(max_length=50)] = []

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        skus = [v.sku for v in self.variants]
        if len(set(skus)) != len(skus):
            raise ValueError("variant SKUs must be unique")
        if any(v.currency not in (None, self.currency) for v in self.variants):
            raise ValueError("a variant price must be in the product's currency")
        if any(i.variant_sku is not None and i.variant_sku not in skus for i in self.images):
            raise ValueError("an image names a variant_sku that is not among the variants")
        return self


class ProductUpdate(_In):
    """Fields left out are unchanged; ``categories``/``tags`` given replace the current ones."""

    slug: ProductSlug | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    description: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    brand: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = None
    status: ProductStatus | None = None
    price_amount: Amount | None = None
    weight_grams: Grams | None = None
    categories: Annotated[list[Slug], Field(max_length=20)] | None = None
    tags: Annotated[list[Tag], Field(max_length=30)] | None = None

    @model_validator(mode="after")
    def _not_null(self) -> Self:
        for name in ("slug", "name", "description", "status", "price_amount", "weight_grams"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class CategoryCreate(_In):
    slug: Slug
    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    parent: Slug | None = None
    position: Annotated[int, Field(ge=0, le=10_000)] = 0


# --- inventory -----------------------------------------------------------------------------


class StockLine(_In):
    variant_id: uuid.UUID
    quantity: LineQuantity


class ReservationView(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    variant_id: uuid.UUID
    quantity: int
    status: ReservationStatus
    expires_at: datetime


class ReservationResult(BaseModel):
    reservation_ids: list[uuid.UUID]
    expires_at: datetime


class MovedLine(BaseModel):
    """A quantity moved by release / commit / restock for one variant."""

    variant_id: uuid.UUID
    quantity: int


class CommitResult(BaseModel):
    committed_lines: list[MovedLine]  # committed by this call (empty when already committed)
    already_committed: bool


class StockLevel(BaseModel):
    variant_id: uuid.UUID
    on_hand: int
    reserved: int
    available: int
    version: int


# --- pricing -------------------------------------------------------------------------------


class PricedLine(BaseModel):
    variant_id: uuid.UUID
    product_id: uuid.UUID
    sku: str
    name: str
    options: dict[str, str]
    unit_price_amount: int
    currency: str
    quantity: int
    line_amount: int
    weight_grams: int  # per unit


class PriceQuote(BaseModel):
    lines: list[PricedLine]
    subtotal_amount: int
    currency: str
    total_weight_grams: int


# --- reviews -------------------------------------------------------------------------------


class ReviewCreate(_In):
    product_id: uuid.UUID
    user_id: uuid.UUID
    order_id: uuid.UUID | None = None
    rating: Annotated[int, Field(ge=1, le=5)]
    title: Annotated[str, StringConstraints(max_length=200)] = ""
    body: Annotated[str, StringConstraints(max_length=5000)] = ""
    has_purchased: bool  # established by the caller from order data


class ReviewView(BaseModel):
    id: uuid.UUID
    product_id: uuid.UUID
    user_id: uuid.UUID
    order_id: uuid.UUID | None
    rating: int
    title: str
    body: str
    status: ReviewStatus
    created_at: datetime


class ReviewPage(BaseModel):
    items: list[ReviewView]
    next_cursor: str | None
