"""Admin: the catalog (products, variants, images, categories), inventory, coupons and promotions,
shipping configuration (carriers, zones, methods, rates) and email templates.

Every route needs the ``admin`` role. Each write is one transaction on the owning service's database
through that service's functions: bodies are validated first (unknown fields are refused, 422 with
field errors), a business refusal rolls the transaction back, so a refused write leaves nothing behind.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from api.auth import AdminUser, Caller
from api.deps import SessionsDep
from api.middleware import strict_json_body
from api.problems import problem_responses
from services.discount import service as discount_service
from services.discount.schemas import CODE, CouponIn, CouponPage, CouponView, PromotionIn, PromotionView
from services.notification import service as notification_service
from services.notification.schemas import (
    LOCALE_PATTERN,
    TEMPLATE_KEY_PATTERN,
    CategoryName,
    RenderedView,
    TemplateIn,
    TemplateUpdate,
    TemplateView,
)
from services.product import service as product_service
from services.product.errors import VariantNotFound
from services.product.models import ProductStatus
from services.product.schemas import (
    Amount,
    CategoryCreate,
    CategoryNode,
    ImageCreate,
    ImageView,
    ProductCreate,
    ProductDetail,
    ProductUpdate,
    SearchPage,
    SearchParams,
    SortOrder,
    StockLevel,
    VariantCreate,
    VariantUpdate,
    VariantView,
)
from services.shipping import service as shipping_service
from services.shipping.schemas import (
    COUNTRY_PATTERN,
    CarrierIn,
    CarrierUpdate,
    CarrierView,
    MethodIn,
    MethodUpdate,
    MethodView,
    RateIn,
    RateUpdate,
    RateView,
    ZoneIn,
    ZoneUpdate,
    ZoneView,
)

router = APIRouter(prefix="/v1/admin")
CATALOG, INVENTORY, DISCOUNTS, SHIPPING, TEMPLATES = (
    "admin: catalog",
    "admin: inventory",
    "admin: discounts",
    "admin: shipping",
    "admin: email templates",
)
MAX_AMOUNT = 10**12  # minor units; far above any price, far below BIGINT


async def _admin(caller: AdminUser, _: Annotated[None, Depends(strict_json_body)]) -> Caller:
    """The admin role first (401/403), then the body's JSON types (422)."""
    return caller


Admin = Annotated[Caller, Depends(_admin)]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    """Request models of this module: unknown fields refused (no mass assignment), with examples."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


def _read(statuses: tuple[int, ...] = ()) -> dict[int | str, dict[str, Any]]:
    return problem_responses(401, 403, 422, *statuses)


def _write(statuses: tuple[int, ...] = ()) -> dict[int | str, dict[str, Any]]:
    return problem_responses(401, 403, 409, 413, 422, *statuses)


# == catalog ===================================================================================


class ProductCreateBody(ProductCreate):
    model_config = _examples(
        {
            "sku": "TSHIRT-ORG",
            "slug": "organic-cotton-t-shirt",
            "name": "Organic cotton T-shirt",
            "description": "Heavy jersey, boxy fit.",
            "brand": "Sagashop Basics",
            "status": "draft",
            "price_amount": 2900,
            "currency": "USD",
            "weight_grams": 220,
            "categories": [],
            "tags": ["organic", "cotton"],
            "variants": [
                {"sku": "TSHIRT-ORG-S", "options": {"size": "S"}, "on_hand": 20},
                {"sku": "TSHIRT-ORG-M", "options": {"size": "M"}, "on_hand": 35},
            ],
            "images": [{"url": "https://img.example.com/tshirt-front.jpg", "alt": "front", "position": 0}],
        }
    )


Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=120)]
Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=50)]


class ProductUpdateBody(ProductUpdate):
    """Leave a field out to keep it; only ``brand`` can be cleared with null."""

    model_config = _examples(
        {"name": "Organic cotton T-shirt (boxy)", "price_amount": 2500, "tags": ["sale"]}
    )

    slug: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=200)] = None  # type: ignore[assignment]
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)] = None  # type: ignore[assignment]
    description: Annotated[str, StringConstraints(max_length=20_000)] = None  # type: ignore[assignment]
    status: ProductStatus = None  # type: ignore[assignment]
    price_amount: Amount = None  # type: ignore[assignment]
    weight_grams: Annotated[int, Field(ge=0, le=10**8)] = None  # type: ignore[assignment]
    categories: Annotated[list[Slug], Field(max_length=20)] = None  # type: ignore[assignment]
    tags: Annotated[list[Tag], Field(max_length=30)] = None  # type: ignore[assignment]


class ProductStatusBody(BaseModel):
    model_config = _examples({"status": "active"})

    status: ProductStatus


class VariantCreateBody(VariantCreate):
    model_config = _examples({"sku": "TSHIRT-ORG-L", "options": {"size": "L"}, "on_hand": 10})


class VariantUpdateBody(VariantUpdate):
    """Leave a field out to keep it; null clears only the price override (price_amount and currency
    together) and the weight override."""

    model_config = _examples({"is_active": False}, {"price_amount": 3100, "currency": "USD"})

    options: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=40)],
        Annotated[str, StringConstraints(min_length=1, max_length=80)],
    ] = None  # type: ignore[assignment]
    is_active: bool = None  # type: ignore[assignment]


class ImageBody(BaseModel):
    model_config = _examples({"url": "https://img.example.com/tshirt-back.jpg", "alt": "back", "position": 1})

    url: Annotated[str, StringConstraints(pattern=r"^https?://[!-~]+$", max_length=2048)] = Field(
        description="http(s), printable ASCII (percent-encode the rest)"
    )
    alt: Annotated[str, StringConstraints(max_length=255)] = ""
    position: Annotated[int, Field(ge=0, le=1000)] = 0
    variant_id: uuid.UUID | None = Field(default=None, description="a variant of this product")


class CategoryCreateBody(CategoryCreate):
    model_config = _examples({"slug": "t-shirts", "name": "T-shirts", "parent": None, "position": 3})


@router.get(
    "/products",
    tags=[CATALOG],
    response_model=SearchPage,
    summary="Products in every status (draft, active, archived)",
    responses=_read((404,)),
)
async def list_products(
    admin: Admin,
    sessions: SessionsDep,
    q: Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^[^\x00]+$")] = None,
    category: Annotated[
        str | None, Query(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=120, description="slug")
    ] = None,
    sort: SortOrder = SortOrder.NEWEST,
    limit: Annotated[int, Query(ge=1, le=100)] = 24,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> SearchPage:
    try:
        params = SearchParams(
            q=q, category=category, sort=sort, limit=limit, cursor=cursor, include_unpublished=True
        )
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    async with sessions["product"]() as s:
        return await product_service.search(s, params)


@router.post(
    "/products",
    tags=[CATALOG],
    status_code=201,
    response_model=ProductDetail,
    summary="Create a product with its variants (and their initial stock), images, categories and tags",
    responses=_write((404,)),
)
async def create_product(
    body: ProductCreateBody, admin: Admin, sessions: SessionsDep, response: Response
) -> ProductDetail:
    async with sessions["product"]() as s, s.begin():
        product = await product_service.create_product(s, body)
    response.headers["Location"] = f"/v1/admin/products/{product.id}"
    return product


@router.get(
    "/products/{product_id}",
    tags=[CATALOG],
    response_model=ProductDetail,
    summary="A product in any status, with every variant (active or not) and its stock",
    responses=_read((404,)),
)
async def get_product(product_id: uuid.UUID, admin: Admin, sessions: SessionsDep) -> ProductDetail:
    async with sessions["product"]() as s:
        return await product_service.get_product(s, product_id=product_id, include_unpublished=True)


@router.patch(
    "/products/{product_id}",
    tags=[CATALOG],
    response_model=ProductDetail,
    summary="Change a product (fields left out are unchanged; categories/tags given replace the current)",
    responses=_write((404,)),
)
async def update_product(
    product_id: uuid.UUID, body: ProductUpdateBody, admin: Admin, sessions: SessionsDep
) -> ProductDetail:
    async with sessions["product"]() as s, s.begin():
        return await product_service.update_product(s, product_id, body)


@router.put(
    "/products/{product_id}/status",
    tags=[CATALOG],
    response_model=ProductDetail,
    summary="Publish (active), unpublish (draft) or archive a product",
    responses=_write((404,)),
)
async def set_product_status(
    product_id: uuid.UUID, body: ProductStatusBody, admin: Admin, sessions: SessionsDep
) -> ProductDetail:
    async with sessions["product"]() as s, s.begin():
        return await product_service.update_product(s, product_id, ProductUpdate(status=body.status))


@router.post(
    "/products/{product_id}/variants",
    tags=[CATALOG],
    status_code=201,
    response_model=VariantView,
    summary="Add a variant (with its initial stock)",
    responses=_write((404,)),
)
async def create_variant(
    product_id: uuid.UUID, body: VariantCreateBody, admin: Admin, sessions: SessionsDep
) -> VariantView:
    async with sessions["product"]() as s, s.begin():
        return await product_service.create_variant(s, product_id, body)


@router.patch(
    "/variants/{variant_id}",
    tags=[CATALOG],
    response_model=VariantView,
    summary="Change a variant (options, price override, weight, active)",
    responses=_write((404,)),
)
async def update_variant(
    variant_id: uuid.UUID, body: VariantUpdateBody, admin: Admin, sessions: SessionsDep
) -> VariantView:
    async with sessions["product"]() as s, s.begin():
        return await product_service.update_variant(s, variant_id, body)


@router.post(
    "/products/{product_id}/images",
    tags=[CATALOG],
    status_code=201,
    response_model=ImageView,
    summary="Add an image to a product (optionally of one of its variants)",
    responses=_write((404,)),
)
async def add_image(product_id: uuid.UUID, body: ImageBody, admin: Admin, sessions: SessionsDep) -> ImageView:
    async with sessions["product"]() as s, s.begin():
        return await product_service.add_image(
            s,
            product_id,
            ImageCreate(url=body.url, alt=body.alt, position=body.position, variant_id=body.variant_id),
        )


@router.get(
    "/categories",
    tags=[CATALOG],
    response_model=list[CategoryNode],
    summary="The category tree",
    responses=problem_responses(401, 403),
)
async def list_categories(admin: Admin, sessions: SessionsDep) -> list[CategoryNode]:
    async with sessions["product"]() as s:
        return await product_service.list_categories(s)


@router.post(
    "/categories",
    tags=[CATALOG],
    status_code=201,
    response_model=CategoryNode,
    summary="Create a category (under `parent`, a slug, or at the root)",
    responses=_write((404,)),
)
async def create_category(body: CategoryCreateBody, admin: Admin, sessions: SessionsDep) -> CategoryNode:
    async with sessions["product"]() as s, s.begin():
        return await product_service.create_category(s, body)


# == inventory =================================================================================


class StockBody(BaseModel):
    model_config = _examples({"on_hand": 40}, {"on_hand": 12, "expected_version": 3})

    on_hand: int = Field(
        ge=0, le=10**7, description="units on the shelf (a stock take); never below reserved"
    )
    expected_version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="refuse (409) if the stock changed since this version"
    )


@router.get(
    "/inventory",
    tags=[INVENTORY],
    response_model=list[StockLevel],
    summary="Stock of several variants (on hand, reserved, available)",
    responses=_read(),
)
async def stock_levels(
    admin: Admin,
    sessions: SessionsDep,
    variant_id: Annotated[list[uuid.UUID], Query(min_length=1, max_length=200)],
) -> list[StockLevel]:
    async with sessions["product"]() as s:
        return await product_service.stock_of(s, variant_id)


@router.get(
    "/inventory/{variant_id}",
    tags=[INVENTORY],
    response_model=StockLevel,
    summary="Stock of one variant",
    responses=_read((404,)),
)
async def stock_level(variant_id: uuid.UUID, admin: Admin, sessions: SessionsDep) -> StockLevel:
    async with sessions["product"]() as s:
        levels = await product_service.stock_of(s, [variant_id])
    if not levels:
        raise VariantNotFound("no such variant", variant_id=str(variant_id))
    return levels[0]


@router.put(
    "/inventory/{variant_id}",
    tags=[INVENTORY],
    response_model=StockLevel,
    summary="Set a variant's on-hand stock (never below what is reserved)",
    responses=_write((404,)),
)
async def set_stock(
    variant_id: uuid.UUID, body: StockBody, admin: Admin, sessions: SessionsDep
) -> StockLevel:
    async with sessions["product"]() as s, s.begin():
        return await product_service.set_stock(
            s, variant_id, body.on_hand, expected_version=body.expected_version
        )


# == coupons and promotions ====================================================================


class CouponBody(CouponIn):
    model_config = _examples(
        {
            "code": "SPRING15",
            "description": "15% off in spring, from 50.00",
            "type": "percentage",
            "value": 15,
            "min_subtotal_amount": 5000,
            "max_discount_amount": 3000,
            "starts_at": "2026-03-20T00:00:00Z",
            "ends_at": "2026-06-21T00:00:00Z",
            "usage_limit_total": 1000,
            "usage_limit_per_customer": 1,
        }
    )


class PromotionBody(PromotionIn):
    model_config = _examples(
        {
            "name": "3 for 2 on socks",
            "type": "percentage",
            "value": 100,
            "priority": 10,
            "stackable": True,
            "rules": [
                {
                    "rule_type": "category",
                    "params": {"category_ids": ["0b3c5a2e-8e0f-4c38-9d7e-52f0e0d9b0a1"]},
                },
                {"rule_type": "buy_x_get_y", "params": {"buy": 2, "get": 1}},
            ],
        }
    )


CouponCode = Annotated[str, Path(min_length=1, max_length=64, pattern=CODE, examples=["SPRING15"])]


@router.get(
    "/coupons",
    tags=[DISCOUNTS],
    response_model=CouponPage,
    summary="Coupons by code, in pages",
    responses=_read(),
)
async def list_coupons(
    admin: Admin,
    sessions: SessionsDep,
    active: Annotated[bool | None, Query(description="only active (true) or inactive (false) ones")] = None,
    cursor: Annotated[str | None, Query(max_length=64, pattern=CODE)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CouponPage:
    async with sessions["discount"]() as s:
        return await discount_service.list_coupons(s, active=active, cursor=cursor, limit=limit)


@router.post(
    "/coupons",
    tags=[DISCOUNTS],
    status_code=201,
    response_model=CouponView,
    summary="Create a coupon (codes are unique, stored upper case)",
    responses=_write(),
)
async def create_coupon(
    body: CouponBody, admin: Admin, sessions: SessionsDep, response: Response
) -> CouponView:
    async with sessions["discount"]() as s, s.begin():
        await discount_service.create_coupon(s, body)
        coupon = await discount_service.get_coupon(s, body.code)
    response.headers["Location"] = f"/v1/admin/coupons/{coupon.code}"
    return coupon


@router.get(
    "/coupons/{code}",
    tags=[DISCOUNTS],
    response_model=CouponView,
    summary="A coupon with its use count",
    responses=_read((404,)),
)
async def get_coupon(code: CouponCode, admin: Admin, sessions: SessionsDep) -> CouponView:
    async with sessions["discount"]() as s:
        return await discount_service.get_coupon(s, code)


@router.post(
    "/coupons/{code}/deactivate",
    tags=[DISCOUNTS],
    response_model=CouponView,
    summary="Switch a coupon off (shoppers can no longer use it; held reservations stay valid)",
    responses=_write((404,)),
)
async def deactivate_coupon(code: CouponCode, admin: Admin, sessions: SessionsDep) -> CouponView:
    async with sessions["discount"]() as s, s.begin():
        return await discount_service.set_coupon_active(s, code, False)


@router.post(
    "/coupons/{code}/activate",
    tags=[DISCOUNTS],
    response_model=CouponView,
    summary="Switch a coupon back on",
    responses=_write((404,)),
)
async def activate_coupon(code: CouponCode, admin: Admin, sessions: SessionsDep) -> CouponView:
    async with sessions["discount"]() as s, s.begin():
        return await discount_service.set_coupon_active(s, code, True)


@router.get(
    "/promotions",
    tags=[DISCOUNTS],
    response_model=list[PromotionView],
    summary="Automatic promotions in evaluation order (highest priority first), with their rules",
    responses=_read(),
)
async def list_promotions(
    admin: Admin,
    sessions: SessionsDep,
    active: Annotated[bool | None, Query(description="only active (true) or inactive (false) ones")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[PromotionView]:
    async with sessions["discount"]() as s:
        return await discount_service.list_promotions(s, active=active, limit=limit)


@router.post(
    "/promotions",
    tags=[DISCOUNTS],
    status_code=201,
    response_model=PromotionView,
    summary="Create an automatic promotion (rules' params are checked by rule type)",
    responses=_write(),
)
async def create_promotion(
    body: PromotionBody, admin: Admin, sessions: SessionsDep, response: Response
) -> PromotionView:
    async with sessions["discount"]() as s, s.begin():
        promotion_id = await discount_service.create_promotion(s, body)
        promotion = await discount_service.get_promotion(s, promotion_id)
    response.headers["Location"] = f"/v1/admin/promotions/{promotion_id}"
    return promotion


@router.get(
    "/promotions/{promotion_id}",
    tags=[DISCOUNTS],
    response_model=PromotionView,
    summary="One promotion with its rules",
    responses=_read((404,)),
)
async def get_promotion(promotion_id: uuid.UUID, admin: Admin, sessions: SessionsDep) -> PromotionView:
    async with sessions["discount"]() as s:
        return await discount_service.get_promotion(s, promotion_id)


@router.post(
    "/promotions/{promotion_id}/deactivate",
    tags=[DISCOUNTS],
    response_model=PromotionView,
    summary="Switch a promotion off",
    responses=_write((404,)),
)
async def deactivate_promotion(promotion_id: uuid.UUID, admin: Admin, sessions: SessionsDep) -> PromotionView:
    async with sessions["discount"]() as s, s.begin():
        return await discount_service.set_promotion_active(s, promotion_id, False)


@router.post(
    "/promotions/{promotion_id}/activate",
    tags=[DISCOUNTS],
    response_model=PromotionView,
    summary="Switch a promotion back on",
    responses=_write((404,)),
)
async def activate_promotion(promotion_id: uuid.UUID, admin: Admin, sessions: SessionsDep) -> PromotionView:
    async with sessions["discount"]() as s, s.begin():
        return await discount_service.set_promotion_active(s, promotion_id, True)


# == shipping ==================================================================================


class CarrierBody(CarrierIn):
    model_config = _examples(
        {
            "code": "fastpost",
            "name": "FastPost",
            "tracking_url_template": "https://track.fastpost.example/{tracking_number}",
            "is_active": True,
            "settings": {"account": "SAGA-001"},
        }
    )


class CarrierUpdateBody(CarrierUpdate):
    model_config = _examples({"is_active": False}, {"name": "FastPost Express"})


Countries = Annotated[
    list[Annotated[str, StringConstraints(pattern=COUNTRY_PATTERN)]],
    Field(
        max_length=300, json_schema_extra={"uniqueItems": True}, description="ISO 3166-1 alpha-2, no repeats"
    ),
]


class ZoneBody(ZoneIn):
    model_config = _examples(
        {"name": "Alps", "countries": ["AT", "CH", "LI"], "postal_code_patterns": None, "is_active": True}
    )

    countries: Countries = Field(
        default_factory=list, description="empty: the catch-all zone (rest of world)"
    )


class ZoneUpdateBody(ZoneUpdate):
    model_config = _examples({"countries": ["AT", "CH"]}, {"is_active": False})

    countries: Countries | None = None


class MethodBody(MethodIn):
    model_config = _examples(
        {
            "carrier_id": "5a9d8c7b-6e5f-4a3b-2c1d-0e9f8a7b6c5d",
            "zone_id": "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9",
            "code": "standard",
            "name": "Standard (3-5 days)",
            "service_level": "standard",
            "min_delivery_days": 3,
            "max_delivery_days": 5,
        }
    )


class MethodUpdateBody(MethodUpdate):
    model_config = _examples({"max_delivery_days": 6}, {"is_active": False})


class RateBody(RateIn):
    model_config = _examples(
        {
            "method_id": "5a9d8c7b-6e5f-4a3b-2c1d-0e9f8a7b6c5d",
            "min_weight_grams": 0,
            "max_weight_grams": 2000,
            "min_subtotal_amount": 0,
            "amount": 599,
            "currency": "USD",
            "free_over_amount": 7500,
        }
    )

    min_subtotal_amount: int = Field(default=0, ge=0, le=MAX_AMOUNT)
    amount: int = Field(ge=0, le=MAX_AMOUNT)
    free_over_amount: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)


class RateUpdateBody(RateUpdate):
    model_config = _examples({"amount": 649}, {"clear_free_over": True})

    amount: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)
    free_over_amount: int | None = Field(default=None, ge=0, le=MAX_AMOUNT)


@router.get(
    "/shipping/carriers",
    tags=[SHIPPING],
    response_model=list[CarrierView],
    summary="Carriers",
    responses=problem_responses(401, 403),
)
async def list_carriers(admin: Admin, sessions: SessionsDep) -> list[CarrierView]:
    async with sessions["shipping"]() as s:
        return await shipping_service.list_carriers(s)


@router.post(
    "/shipping/carriers",
    tags=[SHIPPING],
    status_code=201,
    response_model=CarrierView,
    summary="Add a carrier (codes are unique)",
    responses=_write(),
)
async def create_carrier(body: CarrierBody, admin: Admin, sessions: SessionsDep) -> CarrierView:
    async with sessions["shipping"]() as s, s.begin():
        return await shipping_service.create_carrier(s, body)


@router.patch(
    "/shipping/carriers/{carrier_id}",
    tags=[SHIPPING],
    response_model=CarrierView,
    summary="Change a carrier",
    responses=_write((404,)),
)
async def update_carrier(
    carrier_id: uuid.UUID, body: CarrierUpdateBody, admin: Admin, sessions: SessionsDep
) -> CarrierView:
    async with sessions["shipping"]() as s, s.begin():
        return await shipping_service.update_carrier(s, carrier_id, body)


@router.get(
    "/shipping/zones",
    tags=[SHIPPING],
    response_model=list[ZoneView],
    summary="Shipping zones (countries, optional postal code patterns)",
    responses=problem_responses(401, 403),
)
async def list_zones(admin: Admin, sessions: SessionsDep) -> list[ZoneView]:
    async with sessions["shipping"]() as s:
        return await shipping_service.list_zones(s)


@router.post(
    "/shipping/zones",
    tags=[SHIPPING],
    status_code=201,
    response_model=ZoneView,
    summary="Add a zone (no countries: the catch-all zone)",
    responses=_write(),
)
async def create_zone(body: ZoneBody, admin: Admin, sessions: SessionsDep) -> ZoneView:
    async with sessions["shipping"]() as s, s.begin():
        return await shipping_service.create_zone(s, body)


@router.patch(
    "/shipping/zones/{zone_id}",
    tags=[SHIPPING],
    response_model=ZoneView,
    summary="Change a zone",
    responses=_write((404,)),
)
async def update_zone(
    zone_id: uuid.UUID, body: ZoneUpdateBody, admin: Admin, sessions: SessionsDep
) -> ZoneView:
    async with sessions["shipping"]() as s, s.begin():
        return await shipping_service.update_zone(s, zone_id, body)


@router.get(
    "/shipping/methods",
    tags=[SHIPPING],
    response_model=list[MethodView],
    summary="Shipping methods (of one zone, or all)",
    responses=_read(),
)
async def list_methods(
    admin: Admin, sessions: SessionsDep, zone_id: uuid.UUID | None = None
) -> list[MethodView]:
    async with sessions["shipping"]() as s:
        return await shipping_service.list_methods(s, zone_id)


@router.post(
    "/shipping/methods",
    tags=[SHIPPING],
    status_code=201,
    response_model=MethodView,
    summary="Add a method of a carrier in a zone",
    responses=_write((404,)),
)
async def create_method(body: MethodBody, admin: Admin, sessions: SessionsDep) -> MethodView:
    async with sessions["shipping"]() as s, s.begin():
        return await shipping_service.create_method(s, body)


@router.patch(
    "/shipping/methods/{method_id}",
    tags=[SHIPPING],
    response_model=MethodView,
    summary="Change a method",
    responses=_write((404,)),
)
async def update_method(
    method_id: uuid.UUID, body: MethodUpdateBody, admin: Admin, sessions: SessionsDep
) -> MethodView:
    async with sessions["shipping"]() as s, s.begin():
        return await shipping_service.update_method(s, method_id, body)


@router.get(
    "/shipping/methods/{method_id}/rates",
    tags=[SHIPPING],
    response_model=list[RateView],
    summary="A method's rates (weight bands per currency and subtotal tier)",
    responses=_read((404,)),
)
async def list_rates(method_id: uuid.UUID, admin: Admin, sessions: SessionsDep) -> list[RateView]:
    async with sessions["shipping"]() as s:
        return await shipping_service.list_rates(s, method_id)


@router.post(
    "/shipping/rates",
    tags=[SHIPPING],
    status_code=201,
    response_model=RateView,
    summary="Add a rate (its weight band must not overlap the method's others)",
    responses=_write((404,)),
)
async def create_rate(body: RateBody, admin: Admin, sessions: SessionsDep) -> RateView:
    async with sessions["shipping"]() as s, s.begin():
        return await shipping_service.create_rate(s, body)


@router.patch(
    "/shipping/rates/{rate_id}",
    tags=[SHIPPING],
    response_model=RateView,
    summary="Change a rate's price or free-shipping threshold",
    responses=_write((404,)),
)
async def update_rate(
    rate_id: uuid.UUID, body: RateUpdateBody, admin: Admin, sessions: SessionsDep
) -> RateView:
    async with sessions["shipping"]() as s, s.begin():
        return await shipping_service.update_rate(s, rate_id, body)


@router.delete(
    "/shipping/rates/{rate_id}",
    tags=[SHIPPING],
    status_code=204,
    response_class=Response,
    summary="Remove a rate",
    responses={**problem_responses(401, 403, 404, 422), 204: {"description": "removed"}},
)
async def delete_rate(rate_id: uuid.UUID, admin: Admin, sessions: SessionsDep) -> Response:
    async with sessions["shipping"]() as s, s.begin():
        await shipping_service.delete_rate(s, rate_id)
    return Response(status_code=204)


# == email templates ===========================================================================


class TemplateBody(TemplateIn):
    model_config = _examples(
        {
            "key": "back_in_stock",
            "locale": "en",
            "category": "marketing",
            "description": "A wishlist item is available again",
            "subject_template": "{{ product_name }} is back",
            "text_template": "Good news: {{ product_name }} is back in stock.",
            "html_template": "<p>Good news: <b>{{ product_name }}</b> is back in stock.</p>",
        }
    )


class TemplateUpdateBody(TemplateUpdate):
    """Leave a field out to keep it; null clears only ``description`` (and ``clear_html`` the HTML part)."""

    model_config = _examples(
        {"subject_template": "Back in stock: {{ product_name }}"}, {"clear_html": True}, {"is_active": False}
    )

    category: CategoryName = None  # type: ignore[assignment]
    subject_template: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = None  # type: ignore[assignment]
    text_template: Annotated[str, StringConstraints(min_length=1, max_length=100_000)] = None  # type: ignore[assignment]
    is_active: bool = None  # type: ignore[assignment]


class PreviewBody(BaseModel):
    model_config = _examples({"context": {"product_name": "Organic cotton T-shirt"}})

    context: dict[str, Any] = Field(default_factory=dict, description="the template's variables")


TemplateKey = Annotated[str, Path(pattern=TEMPLATE_KEY_PATTERN, max_length=100, examples=["back_in_stock"])]
Locale = Annotated[str, Path(pattern=LOCALE_PATTERN, max_length=5, examples=["en"])]


@router.get(
    "/email-templates",
    tags=[TEMPLATES],
    response_model=list[TemplateView],
    summary="Email templates (all locales, active or not)",
    responses=_read(),
)
async def list_templates(
    admin: Admin,
    sessions: SessionsDep,
    key: Annotated[str | None, Query(pattern=TEMPLATE_KEY_PATTERN, max_length=100)] = None,
) -> list[TemplateView]:
    async with sessions["notification"]() as s:
        return await notification_service.list_templates(s, key)


@router.post(
    "/email-templates",
    tags=[TEMPLATES],
    status_code=201,
    response_model=TemplateView,
    summary="Add an email template (it must compile: Jinja syntax, known filters)",
    responses=_write(),
)
async def create_template(body: TemplateBody, admin: Admin, sessions: SessionsDep) -> TemplateView:
    async with sessions["notification"]() as s, s.begin():
        return await notification_service.create_template(s, body)


@router.get(
    "/email-templates/{key}/{locale}",
    tags=[TEMPLATES],
    response_model=TemplateView,
    summary="One email template",
    responses=_read((404,)),
)
async def get_template(key: TemplateKey, locale: Locale, admin: Admin, sessions: SessionsDep) -> TemplateView:
    async with sessions["notification"]() as s:
        return await notification_service.get_template(s, key, locale)


@router.patch(
    "/email-templates/{key}/{locale}",
    tags=[TEMPLATES],
    response_model=TemplateView,
    summary="Change an email template (checked before it is stored; every change bumps its version)",
    responses=_write((404,)),
)
async def update_template(
    key: TemplateKey, locale: Locale, body: TemplateUpdateBody, admin: Admin, sessions: SessionsDep
) -> TemplateView:
    async with sessions["notification"]() as s, s.begin():
        return await notification_service.update_template(s, key, locale, body)


@router.post(
    "/email-templates/{key}/{locale}/preview",
    tags=[TEMPLATES],
    response_model=RenderedView,
    summary="Render a template with a sample context (nothing is sent or stored)",
    responses=problem_responses(401, 403, 404, 413, 422),
)
async def preview_template(
    key: TemplateKey, locale: Locale, body: PreviewBody, admin: Admin, sessions: SessionsDep
) -> RenderedView:
    async with sessions["notification"]() as s:
        return await notification_service.preview_template(s, key, locale, body.context)
