"""The shopping cart: a signed-in shopper's cart, or a guest's cart found by its ``X-Cart-Token``.

A guest without a token gets a new cart and its raw token once (``X-Cart-Token`` response header and
``guest_token`` in the body); only the token's hash is stored. Prices never come from the client: the
API reads the variant's current price and product from the product service, then writes the cart in
the cart service (two single-service steps). A cart locked by a running checkout refuses edits (409
``cart-locked``); an item that is not in the caller's cart is 404, whoever's it is.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Caller, CurrentUser, OptionalUser
from api.deps import SessionsDep
from api.problems import problem_responses
from api.routes.catalog import storable
from services.cart import service as cart_service
from services.cart.errors import CartEmpty, CartItemNotFound
from services.cart.models import MAX_ITEM_QUANTITY
from services.cart.schemas import AddItem, CartView, MergeResult, UpdateItem
from services.discount import service as discount_service
from services.discount.models import CouponType
from services.product import service as product_service
from services.product.schemas import StockLine

router = APIRouter(prefix="/v1/cart", tags=["cart"])

CART_TOKEN_HEADER = "X-Cart-Token"
# Guests are not accounts: their coupon previews count no per-customer usage (checkout checks it).
GUEST_USER_ID = uuid.UUID(int=0)

# Typed ``str`` with a None default (not ``str | None``): a header is text or absent, and a nullable
# schema would let clients send an empty value the length rule refuses.
CartToken = Annotated[
    str,
    Header(
        alias=CART_TOKEN_HEADER,
        min_length=16,
        max_length=128,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="a guest cart's token, as returned when the cart was created (ignored when signed in)",
    ),
]
RequiredCartToken = Annotated[
    str,
    Header(
        alias=CART_TOKEN_HEADER,
        min_length=16,
        max_length=128,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the guest cart's token",
    ),
]
Quantity = Annotated[int, Field(ge=1, le=MAX_ITEM_QUANTITY, description=f"1..{MAX_ITEM_QUANTITY} units")]
MAX_VERSION = 2**31 - 1  # the cart's INTEGER version column
Version = Annotated[
    int, Field(ge=1, le=MAX_VERSION, description="the cart `version` the client saw (optimistic concurrency)")
]
CouponCode = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), AfterValidator(storable)
]


# Guests use the cart without signing in: the bearer token is optional (an empty requirement, OpenAPI's
# "no authentication" alternative, next to the bearer scheme FastAPI lists from the dependency).
GUEST_ALLOWED: dict[str, Any] = {"security": [{}]}

# The 200 of the routes that may create a guest cart.
NEW_TOKEN_HEADER: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            CART_TOKEN_HEADER: {
                "description": "only when this call created a guest cart: its token (shown once)",
                "schema": {"type": "string"},
            }
        }
    }
}


class CartOut(CartView):
    guest_token: str | None = Field(
        default=None,
        description="only when this call created a guest cart: its token, never shown again (also in the "
        "`X-Cart-Token` response header); send it as `X-Cart-Token` on later cart calls",
    )


class AddItemRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"variant_id": "5f0c8a2e-1b3d-4c5e-8f70-9a1b2c3d4e5f", "quantity": 2}]
        },
    )

    variant_id: uuid.UUID
    quantity: Quantity
    expected_version: Version | None = None


class UpdateItemRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"quantity": 3, "expected_version": 4}]}
    )

    quantity: Quantity
    expected_version: Version | None = None


class CouponPreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "WELCOME10"}]})

    code: CouponCode


class CouponPreview(BaseModel):
    code: str
    type: CouponType
    discount_amount: int = Field(description="what the coupon takes off the current cart, minor units")
    free_shipping: bool
    subtotal_amount: int
    total_after_discount_amount: int = Field(description="subtotal minus discount, before shipping")
    currency: str


async def _cart(
    s: AsyncSession, caller: Caller | None, token: str | None, *, create: bool
) -> tuple[CartView, str | None]:
    """The caller's cart and, when this call created a guest cart, its raw token. With
    ``create=False`` a guest without a live cart gets ``CartItemNotFound`` (the caller's
    transaction rolls back whatever was started)."""
    if caller is not None:
        return await cart_service.get_or_create_user_cart(s, caller.user_id), None
    if token is None and not create:
        raise CartItemNotFound("no such item in this cart")
    guest = await cart_service.get_or_create_guest_cart(s, token)
    if guest.guest_token is not None and not create:
        raise CartItemNotFound("no such item in this cart")
    return guest.cart, guest.guest_token


def _out(response: Response, cart: CartView, token: str | None) -> CartOut:
    response.headers["Cache-Control"] = "no-store"
    if token is not None:
        response.headers[CART_TOKEN_HEADER] = token
    return CartOut(**cart.model_dump(), guest_token=token)


@router.get(
    "",
    response_model=CartOut,
    summary="The caller's cart",
    openapi_extra=GUEST_ALLOWED,
    description="Signed in: the shopper's cart. Guest: the cart of `X-Cart-Token`; without a (live) "
    "token a new empty guest cart whose token is returned once.",
    responses={**NEW_TOKEN_HEADER, **problem_responses(401, 422)},
)
async def get_cart(
    caller: OptionalUser,
    sessions: SessionsDep,
    response: Response,
    x_cart_token: CartToken = None,  # type: ignore[assignment]
) -> CartOut:
    async with sessions["cart"]() as s, s.begin():
        cart, token = await _cart(s, caller, x_cart_token, create=True)
    return _out(response, cart, token)


@router.post(
    "/items",
    response_model=CartOut,
    summary="Add a variant to the cart",
    openapi_extra=GUEST_ALLOWED,
    description="The unit price and product are read from the catalog (never sent by the client); "
    "the same variant again adds to its line (at most "
    f"{MAX_ITEM_QUANTITY} units). A guest without a token gets a new cart and its token.",
    responses={**NEW_TOKEN_HEADER, **problem_responses(401, 409, 422)},
)
async def add_item(
    body: AddItemRequest,
    caller: OptionalUser,
    sessions: SessionsDep,
    response: Response,
    x_cart_token: CartToken = None,  # type: ignore[assignment]
) -> CartOut:
    async with sessions["product"]() as s:
        quote = await product_service.price_items(
            s, [StockLine(variant_id=body.variant_id, quantity=body.quantity)]
        )  # VariantUnavailable (409) for unknown or inactive variants
    line = quote.lines[0]
    async with sessions["cart"]() as s, s.begin():
        cart, token = await _cart(s, caller, x_cart_token, create=True)
        cart = await cart_service.add_item(
            s,
            cart.id,
            AddItem(
                variant_id=line.variant_id,
                product_id=line.product_id,
                quantity=body.quantity,
                unit_price_amount=line.unit_price_amount,
                currency=line.currency,
                expected_version=body.expected_version,
            ),
        )
    return _out(response, cart, token)


@router.patch(
    "/items/{item_id}",
    response_model=CartOut,
    summary="Change an item's quantity",
    openapi_extra=GUEST_ALLOWED,
    responses=problem_responses(401, 404, 409, 422),
)
async def update_item(
    item_id: uuid.UUID,
    body: UpdateItemRequest,
    caller: OptionalUser,
    sessions: SessionsDep,
    response: Response,
    x_cart_token: CartToken = None,  # type: ignore[assignment]
) -> CartOut:
    async with sessions["cart"]() as s, s.begin():
        cart, _ = await _cart(s, caller, x_cart_token, create=False)
        cart = await cart_service.update_item(
            s, cart.id, item_id, UpdateItem(quantity=body.quantity, expected_version=body.expected_version)
        )
    return _out(response, cart, None)


@router.delete(
    "/items/{item_id}",
    response_model=CartOut,
    summary="Remove an item from the cart",
    openapi_extra=GUEST_ALLOWED,
    responses=problem_responses(401, 404, 409, 422),
)
async def remove_item(
    item_id: uuid.UUID,
    caller: OptionalUser,
    sessions: SessionsDep,
    response: Response,
    x_cart_token: CartToken = None,  # type: ignore[assignment]
    expected_version: Annotated[
        int | None, Query(ge=1, le=MAX_VERSION, description="optimistic concurrency")
    ] = None,
) -> CartOut:
    async with sessions["cart"]() as s, s.begin():
        cart, _ = await _cart(s, caller, x_cart_token, create=False)
        cart = await cart_service.remove_item(s, cart.id, item_id, expected_version=expected_version)
    return _out(response, cart, None)


@router.post(
    "/merge",
    response_model=MergeResult,
    summary="Merge a guest cart into the signed-in shopper's cart",
    description="Quantities of the same variant add up (capped per line); lines priced in another "
    "currency are skipped. The guest cart is closed; an unknown or already merged token merges nothing.",
    responses=problem_responses(401, 409, 422),
)
async def merge_cart(
    caller: CurrentUser, sessions: SessionsDep, response: Response, x_cart_token: RequiredCartToken
) -> MergeResult:
    async with sessions["cart"]() as s, s.begin():
        result = await cart_service.merge_guest_cart(s, caller.user_id, x_cart_token)
    response.headers["Cache-Control"] = "no-store"
    return result


@router.post(
    "/coupon-preview",
    response_model=CouponPreview,
    summary="What a coupon would take off the current cart",
    openapi_extra=GUEST_ALLOWED,
    description="A preview: it holds no coupon use. Refusals are problem details with the coupon's "
    "refusal type (`coupon-not-found` 404, `coupon-expired` / `coupon-minimum-not-met` / ... 422, "
    "`coupon-exhausted` / `coupon-per-customer-limit-reached` 409); an empty cart is 409 `cart-empty`. "
    "For guests the per-customer limit is checked at checkout.",
    responses=problem_responses(401, 404, 409, 422),
)
async def coupon_preview(
    body: CouponPreviewRequest,
    caller: OptionalUser,
    sessions: SessionsDep,
    response: Response,
    x_cart_token: CartToken = None,  # type: ignore[assignment]
) -> CouponPreview:
    async with sessions["cart"]() as s, s.begin():
        if caller is None and x_cart_token is None:
            raise CartEmpty("the cart is empty")
        try:
            cart, _ = await _cart(s, caller, x_cart_token, create=False)
        except CartItemNotFound:  # a dead guest token: nothing to preview against
            raise CartEmpty("the cart is empty") from None
    if not cart.items:
        raise CartEmpty("the cart is empty", cart_id=str(cart.id))
    async with sessions["discount"]() as s:
        quote = await discount_service.validate(
            s,
            body.code,
            caller.user_id if caller else GUEST_USER_ID,
            cart.subtotal_amount,
            cart.currency,
            datetime.now(UTC),
        )
    response.headers["Cache-Control"] = "no-store"
    return CouponPreview(
        code=quote.code,
        type=quote.type,
        discount_amount=quote.discount_amount,
        free_shipping=quote.free_shipping,
        subtotal_amount=cart.subtotal_amount,
        total_after_discount_amount=cart.subtotal_amount - quote.discount_amount,
        currency=cart.currency,
    )
