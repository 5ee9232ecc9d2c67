"""Test data built through the owning services' own functions (each in its own database), the way an
admin tool or a finished registration would leave it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core.crypto import TokenCipher
from core.db import SessionFactory
from core.settings import Settings
from services.auth import service as auth_service
from services.auth.passwords import hash_password
from services.auth.tokens import issue_access_token
from services.cart import service as cart_service
from services.cart.schemas import AddItem
from services.payment.provider import CardDetails, PspSandboxProvider
from services.product import service as product_service
from services.product.schemas import ProductCreate
from services.shipping.demo import load_demo_shipping
from services.user import service as user_service
from services.user.schemas import AddressIn, PaymentMethodIn

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
THREE_DS_CARD = "4000000000003220"


@dataclass
class Shopper:
    user_id: uuid.UUID
    email: str
    token: str
    address_id: uuid.UUID
    payment_method_id: uuid.UUID

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class StockedVariant:
    product_id: uuid.UUID
    variant_id: uuid.UUID
    price_amount: int
    currency: str = "USD"


_HASHES: dict[str, str] = {}


async def _password_hash() -> str:
    """One argon2id hash for every test shopper (hashing is deliberately slow)."""
    if "default" not in _HASHES:
        _HASHES["default"] = await hash_password("correct horse battery staple")
    return _HASHES["default"]


async def make_shopper(
    sessions: dict[str, SessionFactory],
    settings: Settings,
    *,
    card: str = GOOD_CARD,
    country: str = "US",
    postal_code: str = "10001",
    roles: tuple[str, ...] = ("customer",),
) -> Shopper:
    user_id = uuid.uuid4()
    email = f"shopper-{user_id.hex[:12]}@example.com"
    async with sessions["auth"]() as s, s.begin():
        await auth_service.register_user(
            s,
            user_id=user_id,
            email=email,
            first_name="Test",
            last_name="Shopper",
            password="correct horse battery staple",
        )
        for role in roles:
            if role != "customer":
                await auth_service.grant_role(s, user_id, role)
    async with PspSandboxProvider(settings.psp_url) as psp:
        token = await psp.tokenize(CardDetails(number=card, exp_month=12, exp_year=2030, cvc="123"))
    async with sessions["user"]() as s, s.begin():
        await user_service.create_profile(
            s, user_id=user_id, email=email, first_name="Test", last_name="Shopper"
        )
        address = await user_service.add_address(
            s,
            user_id,
            AddressIn.model_validate(
                {
                    "type": "shipping",
                    "name": "Test Shopper",
                    "line1": "1 Main St",
                    "city": "New York",
                    "postal_code": postal_code,
                    "country": country,
                }
            ),
        )
        method = await user_service.add_payment_method(
            s,
            TokenCipher(settings.encryption_key.get_secret_value()),
            user_id,
            PaymentMethodIn(
                psp_token=token.token,
                brand=token.brand,
                last4=token.last4,
                exp_month=token.exp_month,
                exp_year=token.exp_year,
            ),
        )
    access = issue_access_token(settings, user_id, list(roles))
    return Shopper(user_id, email, access.token, address.id, method.id)


async def stocked_variant(
    sessions: dict[str, SessionFactory], *, on_hand: int, price_amount: int = 2500, weight_grams: int = 400
) -> StockedVariant:
    sku = f"T-{uuid.uuid4().hex[:10].upper()}"
    async with sessions["product"]() as s, s.begin():
        product = await product_service.create_product(
            s,
            ProductCreate.model_validate(
                {
                    "sku": sku,
                    "slug": sku.lower(),
                    "name": f"Test product {sku}",
                    "status": "active",
                    "price_amount": price_amount,
                    "currency": "USD",
                    "weight_grams": weight_grams,
                    "variants": [{"sku": f"{sku}-V", "on_hand": on_hand}],
                }
            ),
        )
    return StockedVariant(product.id, product.variants[0].id, price_amount)


async def fill_cart(
    sessions: dict[str, SessionFactory], user_id: uuid.UUID, variant: StockedVariant, quantity: int = 1
) -> uuid.UUID:
    async with sessions["cart"]() as s, s.begin():
        cart = await cart_service.get_or_create_user_cart(s, user_id)
        await cart_service.add_item(
            s,
            cart.id,
            AddItem(
                variant_id=variant.variant_id,
                product_id=variant.product_id,
                quantity=quantity,
                unit_price_amount=variant.price_amount,
                currency=variant.currency,
            ),
        )
    return cart.id


async def shipping_methods(sessions: dict[str, SessionFactory]) -> dict[str, uuid.UUID]:
    """The demo carrier, zones, methods and rates (idempotent); keys like ``us:standard``."""
    async with sessions["shipping"]() as s, s.begin():
        return await load_demo_shipping(s)
