"""The public catalog: search, product detail, the category tree, and reviews.

Everything here reads or writes the product service alone, except the purchase check of a new review:
``has_purchased`` comes from the shopper's own orders in the order service (a single-service read),
and the review is then written in the product service with that answer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Self

from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from api.auth import CurrentUser
from api.deps import SessionsDep
from api.problems import problem_responses
from api.ratelimit import rate_limited, rate_limited_responses
from core.db import SessionFactory
from services.order import service as order_service
from services.order.models import OrderStatus
from services.product import service as product_service
from services.product.schemas import (
    CategoryNode,
    CategoryRef,
    ImageView,
    ProductDetail,
    ReviewCreate,
    ReviewView,
    SearchPage,
    SearchParams,
    SortOrder,
)

router = APIRouter(prefix="/v1", tags=["catalog"])

# Orders whose products the shopper has bought (paid, possibly shipped, delivered or sent back).
PURCHASED_STATUSES = (
    OrderStatus.CONFIRMED,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
    OrderStatus.PARTIALLY_RETURNED,
    OrderStatus.RETURNED,
)

SearchLimit = rate_limited("search", lambda s: (s.api_search_rate_per_s, s.api_search_burst))


def storable(value: str) -> str:
    """PostgreSQL text holds neither NUL characters nor lone surrogates: refuse them as bad input."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=120)]
Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=50)]
Amount = Annotated[int, Field(ge=0, le=10**12)]
SearchText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(storable)
]
BrandText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120), AfterValidator(storable)
]
ReviewTitle = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(storable)
]
ReviewBody = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=5000), AfterValidator(storable)
]
Cursor = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9_-]+$")]


# --- models -------------------------------------------------------------------------------------


class CatalogQuery(BaseModel):
    """Query parameters of the catalog search; unknown parameters are refused (a typo never silently
    widens the result)."""

    model_config = ConfigDict(extra="forbid")

    q: SearchText | None = Field(
        default=None, description='full-text search (web-search syntax: words, "phrases", -not)'
    )
    category: Slug | None = Field(default=None, description="category slug; includes its descendants")
    tag: Tag | None = None
    brand: BrandText | None = None
    price_min: Amount | None = Field(default=None, description="minimum base price, minor units")
    price_max: Amount | None = Field(default=None, description="maximum base price, minor units")
    in_stock: bool = Field(default=False, description="only products with an available active variant")
    sort: SortOrder = Field(
        default=SortOrder.RELEVANCE, description="`relevance` without `q` is the same as `newest`"
    )
    limit: int = Field(default=24, ge=1, le=100)
    cursor: Cursor | None = Field(
        default=None, description="`next_cursor` of the previous page, with the same filters and sort"
    )

    @model_validator(mode="after")
    def _price_range(self) -> Self:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min must not exceed price_max")
        return self


class VariantOut(BaseModel):
    id: uuid.UUID
    sku: str
    options: dict[str, str]
    price_amount: int = Field(description="the price of this variant, minor units")
    currency: str
    weight_grams: int
    available: int = Field(description="units that can be bought now")
    in_stock: bool


class ProductOut(BaseModel):
    id: uuid.UUID
    sku: str
    slug: str
    name: str
    description: str
    brand: str | None
    price_amount: int = Field(description="base (list) price, minor units")
    currency: str
    weight_grams: int
    rating_avg: float
    rating_count: int
    available: int = Field(description="units available over all variants")
    in_stock: bool
    categories: list[CategoryRef]
    tags: list[str]
    variants: list[VariantOut]
    images: list[ImageView]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, p: ProductDetail) -> ProductOut:
        return cls(
            **p.model_dump(exclude={"variants", "status", "categories", "images"}),
            in_stock=p.available > 0,
            categories=p.categories,
            images=p.images,
            variants=[
                VariantOut(
                    id=v.id,
                    sku=v.sku,
                    options=v.options,
                    price_amount=v.price_amount,
                    currency=v.currency,
                    weight_grams=v.weight_grams,
                    available=max(0, v.available),
                    in_stock=v.available > 0,
                )
                for v in p.variants
            ],
        )


class ReviewOut(BaseModel):
    """A published review (the reviewer's account is not disclosed)."""

    id: uuid.UUID
    product_id: uuid.UUID
    rating: int
    title: str
    body: str
    verified_purchase: bool
    created_at: datetime

    @classmethod
    def of(cls, r: ReviewView) -> ReviewOut:
        return cls(
            id=r.id,
            product_id=r.product_id,
            rating=r.rating,
            title=r.title,
            body=r.body,
            verified_purchase=r.order_id is not None,
            created_at=r.created_at,
        )


class ReviewsPage(BaseModel):
    items: list[ReviewOut]
    next_cursor: str | None


class ReviewRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"rating": 5, "title": "Love it", "body": "Exactly as described and arrived quickly."}
            ]
        },
    )

    rating: int = Field(ge=1, le=5)
    title: ReviewTitle = ""
    body: ReviewBody = ""


# --- search -------------------------------------------------------------------------------------


@router.get(
    "/products",
    response_model=SearchPage,
    summary="Search the catalog",
    description="Full-text search with category (and its descendants), tag, brand, price and stock "
    "filters; sorted by relevance, price, newest or rating; keyset pagination with `next_cursor` "
    "(a cursor only works with the filters and sort it was issued for). Rate limited per client.",
    dependencies=[SearchLimit],
    responses=rate_limited_responses(404, 422),
)
async def search_products(query: Annotated[CatalogQuery, Query()], sessions: SessionsDep) -> SearchPage:
    try:
        params = SearchParams(**query.model_dump())
    except ValidationError as exc:  # the service's own rules, refused as field errors like FastAPI's
        raise RequestValidationError(exc.errors()) from None
    async with sessions["product"]() as s:
        return await product_service.search(s, params)


@router.get(
    "/products/{product_id}",
    response_model=ProductOut,
    summary="A product with variants, images, stock availability and rating",
    responses=problem_responses(404, 422),
)
async def get_product(product_id: uuid.UUID, sessions: SessionsDep) -> ProductOut:
    async with sessions["product"]() as s:
        return ProductOut.of(await product_service.get_product(s, product_id=product_id))


@router.get(
    "/categories",
    response_model=list[CategoryNode],
    summary="The category tree",
    description="Root categories in display order, each with its children (recursively).",
)
async def list_categories(sessions: SessionsDep) -> list[CategoryNode]:
    async with sessions["product"]() as s:
        return await product_service.list_categories(s)


# --- reviews ------------------------------------------------------------------------------------


@router.get(
    "/products/{product_id}/reviews",
    response_model=ReviewsPage,
    summary="Published reviews of a product, newest first",
    responses=problem_responses(404, 422),
)
async def list_reviews(
    product_id: uuid.UUID,
    sessions: SessionsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[Cursor | None, Query(description="`next_cursor` of the previous page")] = None,
) -> ReviewsPage:
    async with sessions["product"]() as s:
        await product_service.get_product(s, product_id=product_id)  # ProductNotFound -> 404
        page = await product_service.list_reviews(s, product_id, limit=limit, cursor=cursor)
    return ReviewsPage(items=[ReviewOut.of(r) for r in page.items], next_cursor=page.next_cursor)


async def purchase_order_id(
    sessions: dict[str, SessionFactory], user_id: uuid.UUID, product_id: uuid.UUID
) -> uuid.UUID | None:
    """The newest of the user's bought orders that contains ``product_id`` (order service read)."""
    async with sessions["order"]() as s:
        cursor: str | None = None
        while True:
            page = await order_service.list_orders(
                s, user_id=user_id, statuses=PURCHASED_STATUSES, cursor=cursor, limit=100
            )
            for summary in page.orders:
                order = await order_service.get_order(s, summary.id, user_id)
                if any(item.product_id == product_id for item in order.items):
                    return order.id
            if page.next_cursor is None:
                return None
            cursor = page.next_cursor


@router.post(
    "/products/{product_id}/reviews",
    status_code=201,
    response_model=ReviewOut,
    summary="Review a product you bought",
    description="Only a shopper with a confirmed (or later) order containing the product may review "
    "it (403 `review-not-allowed` otherwise); one review per product per shopper (409 `duplicate-review`).",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def create_review(
    product_id: uuid.UUID, body: ReviewRequest, caller: CurrentUser, sessions: SessionsDep, response: Response
) -> ReviewOut:
    async with sessions["product"]() as s:
        await product_service.get_product(s, product_id=product_id)  # ProductNotFound -> 404
    order_id = await purchase_order_id(sessions, caller.user_id, product_id)
    async with sessions["product"]() as s, s.begin():
        review = await product_service.create_review(
            s,
            ReviewCreate(
                product_id=product_id,
                user_id=caller.user_id,
                order_id=order_id,
                rating=body.rating,
                title=body.title,
                body=body.body,
                has_purchased=order_id is not None,
            ),
        )
    response.headers["Location"] = f"/v1/products/{product_id}/reviews"
    return ReviewOut.of(review)
