"""The cart over HTTP against the running stack: guest carts by token, items priced from the catalog
(never by the client), quantity limits, optimistic versions, other shoppers' items (404), the merge of
a guest cart at login, the checkout's lock (409) and coupon previews. Each test checks cart_db too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.db import SessionFactory
from services.cart import service as cart_service
from services.discount import service as discount_service
from services.discount.schemas import CouponIn
from services.product import service as product_service
from services.product.schemas import VariantUpdate
from tests.conftest import Stack
from tests.factories import Shopper, StockedVariant, make_shopper, stocked_variant

pytestmark = pytest.mark.timeout(300)
PROBLEM = "application/problem+json"
TOKEN = "X-Cart-Token"


def problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == type_ and body["status"] == status, body
    return body


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def cart_rows(sessions: dict[str, SessionFactory], cart_id: str) -> dict[str, Any]:
    """The cart row and its lines {variant_id: (quantity, unit_price_amount)} as stored."""
    async with sessions["cart"]() as s:
        cart = (
            (
                await s.execute(
                    text("SELECT status, version, user_id, guest_token_hash FROM carts WHERE id = :c"),
                    {"c": uuid.UUID(cart_id)},
                )
            )
            .mappings()
            .one()
        )
        lines = await s.execute(
            text("SELECT variant_id, quantity, unit_price_amount FROM cart_items WHERE cart_id = :c"),
            {"c": uuid.UUID(cart_id)},
        )
        return {**cart, "lines": {str(r[0]): (r[1], r[2]) for r in lines}}


async def add(
    http: httpx.AsyncClient, variant: StockedVariant, quantity: int, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await http.post(
        "/v1/cart/items", json={"variant_id": str(variant.variant_id), "quantity": quantity}, headers=headers
    )


@pytest.fixture
async def shopper(stack: Stack, sessions: dict[str, SessionFactory]) -> Shopper:
    return await make_shopper(sessions, stack.settings)


# -- guest carts ----------------------------------------------------------------------------------------
async def test_guest_cart_token_is_returned_once(stack: Stack, sessions: dict[str, SessionFactory]) -> None:
    async with stack.http() as http:
        first = await http.get("/v1/cart")
        body = ok(first)
        token = first.headers[TOKEN]
        assert body["guest_token"] == token and len(token) >= 32
        assert (body["user_id"], body["status"], body["items"], body["item_count"]) == (None, "active", [], 0)
        assert first.headers["cache-control"] == "no-store"

        again = await http.get("/v1/cart", headers={TOKEN: token})
        assert ok(again)["id"] == body["id"]
        assert TOKEN not in again.headers and again.json()["guest_token"] is None  # never shown again

        dead = await http.get("/v1/cart", headers={TOKEN: "x" * 43})
        assert ok(dead)["id"] != body["id"] and dead.headers[TOKEN] not in (token, "x" * 43)
        problem(await http.get("/v1/cart", headers={TOKEN: "short"}), 422, "/problems/validation-error")
    stored = await cart_rows(sessions, body["id"])
    assert stored["user_id"] is None and stored["guest_token_hash"] == cart_service.hash_guest_token(token)
    assert token not in str(stored)  # only the hash is kept


async def test_items_are_priced_from_the_catalog(stack: Stack, sessions: dict[str, SessionFactory]) -> None:
    variant = await stocked_variant(sessions, on_hand=50, price_amount=1234)
    async with stack.http() as http:
        created = await add(http, variant, 1)  # a guest without a token: a new cart
        cart = ok(created)
        token = created.headers[TOKEN]
        assert cart["guest_token"] == token
        (item,) = cart["items"]
        assert (item["variant_id"], item["product_id"]) == (str(variant.variant_id), str(variant.product_id))
        assert (item["unit_price_amount"], item["currency"], item["quantity"]) == (1234, "USD", 1)
        guest = {TOKEN: token}
        cart = ok(await add(http, variant, 2, guest))
        assert cart["id"] == created.json()["id"] and cart["items"][0]["quantity"] == 3
        assert cart["subtotal_amount"] == 3 * 1234
        before = await cart_rows(sessions, cart["id"])

        # the client never sets a price (or anything else the catalog decides)
        for extra in ({"unit_price_amount": 1}, {"product_id": str(uuid.uuid4())}, {"currency": "EUR"}):
            body = {"variant_id": str(variant.variant_id), "quantity": 1, **extra}
            refused = problem(
                await http.post("/v1/cart/items", json=body, headers=guest), 422, "/problems/validation-error"
            )
            assert refused["errors"][0]["type"] == "extra_forbidden"
        # quantity limits: 1..99 per request and per line
        for quantity in (0, -1, 100):
            problem(await add(http, variant, quantity, guest), 422, "/problems/validation-error")
        problem(await add(http, variant, 97, guest), 422, "/problems/quantity-limit-exceeded")
        problem(
            await http.post(
                "/v1/cart/items", json={"variant_id": str(uuid.uuid4()), "quantity": 1}, headers=guest
            ),
            409,
            "/problems/variant-unavailable",
        )
        assert await cart_rows(sessions, cart["id"]) == before  # nothing written by the refusals

        # the price at the moment of adding is the catalog's current one
        async with sessions["product"]() as s, s.begin():
            await product_service.update_variant(
                s, variant.variant_id, VariantUpdate(price_amount=1500, currency="USD")
            )
        fresh = ok(await add(http, variant, 1))
    assert fresh["items"][0]["unit_price_amount"] == 1500
    assert (await cart_rows(sessions, fresh["id"]))["lines"] == {str(variant.variant_id): (1, 1500)}


async def test_edit_and_remove_items(
    stack: Stack, sessions: dict[str, SessionFactory], shopper: Shopper
) -> None:
    one = await stocked_variant(sessions, on_hand=50, price_amount=500)
    two = await stocked_variant(sessions, on_hand=50, price_amount=700)
    h = shopper.headers
    async with stack.http() as http:
        ok(await add(http, one, 1, h))
        cart = ok(await add(http, two, 2, h))
        assert cart["user_id"] == str(shopper.user_id) and cart["guest_token"] is None
        item = next(i for i in cart["items"] if i["variant_id"] == str(one.variant_id))
        url = f"/v1/cart/items/{item['id']}"

        edited = ok(
            await http.patch(url, json={"quantity": 5, "expected_version": cart["version"]}, headers=h)
        )
        assert edited["version"] == cart["version"] + 1
        assert {i["variant_id"]: i["quantity"] for i in edited["items"]} == {
            str(one.variant_id): 5,
            str(two.variant_id): 2,
        }
        assert edited["subtotal_amount"] == 5 * 500 + 2 * 700
        stale = await http.patch(url, json={"quantity": 1, "expected_version": cart["version"]}, headers=h)
        problem(stale, 409, "/problems/concurrent-update")
        for quantity in (0, 100):
            problem(
                await http.patch(url, json={"quantity": quantity}, headers=h),
                422,
                "/problems/validation-error",
            )
        problem(
            await http.patch(url, json={"quantity": 1, "unit_price_amount": 1}, headers=h),
            422,
            "/problems/validation-error",
        )
        assert (await cart_rows(sessions, cart["id"]))["lines"][str(one.variant_id)] == (5, 500)

        problem(
            await http.delete(url, params={"expected_version": cart["version"]}, headers=h),
            409,
            "/problems/concurrent-update",
        )
        removed = ok(await http.delete(url, headers=h))
        assert [i["variant_id"] for i in removed["items"]] == [str(two.variant_id)]
        problem(await http.delete(url, headers=h), 404, "/problems/cart-item-not-found")
        problem(await http.patch(url, json={"quantity": 1}, headers=h), 404, "/problems/cart-item-not-found")
        current = ok(await http.get("/v1/cart", headers=h))
    assert current["id"] == cart["id"]
    assert (await cart_rows(sessions, cart["id"]))["lines"] == {str(two.variant_id): (2, 700)}


async def test_another_shoppers_item_is_not_found(
    stack: Stack, sessions: dict[str, SessionFactory], shopper: Shopper
) -> None:
    other = await make_shopper(sessions, stack.settings)
    variant = await stocked_variant(sessions, on_hand=50)
    async with stack.http() as http:
        cart = ok(await add(http, variant, 2, shopper.headers))
        url = f"/v1/cart/items/{cart['items'][0]['id']}"
        guest_token = (await http.get("/v1/cart")).headers[TOKEN]
        for headers in (other.headers, {TOKEN: guest_token}, {}):
            problem(
                await http.patch(url, json={"quantity": 9}, headers=headers),
                404,
                "/problems/cart-item-not-found",
            )
            problem(await http.delete(url, headers=headers), 404, "/problems/cart-item-not-found")
        problem(
            await http.patch(url, json={"quantity": 9}, headers={"Authorization": "Bearer nope"}),
            401,
            "/problems/invalid-access-token",
        )
    assert (await cart_rows(sessions, cart["id"]))["lines"] == {
        str(variant.variant_id): (2, variant.price_amount)
    }


# -- merge at login -------------------------------------------------------------------------------------
async def test_merge_guest_cart_into_the_shoppers(
    stack: Stack, sessions: dict[str, SessionFactory], shopper: Shopper
) -> None:
    one = await stocked_variant(sessions, on_hand=50, price_amount=1000)
    two = await stocked_variant(sessions, on_hand=50, price_amount=2000)
    async with stack.http() as http:
        ok(await add(http, one, 1, shopper.headers))
        created = await add(http, one, 2)
        guest_cart, token = ok(created)["id"], created.headers[TOKEN]
        ok(await add(http, two, 1, {TOKEN: token}))

        problem(await http.post("/v1/cart/merge", headers={TOKEN: token}), 401, "/problems/not-authenticated")
        problem(await http.post("/v1/cart/merge", headers=shopper.headers), 422, "/problems/validation-error")
        merged = ok(await http.post("/v1/cart/merge", headers={**shopper.headers, TOKEN: token}))
        assert merged["merged_lines"] == 2 and merged["skipped_variant_ids"] == []
        cart = merged["cart"]
        assert cart["user_id"] == str(shopper.user_id)
        assert {i["variant_id"]: i["quantity"] for i in cart["items"]} == {
            str(one.variant_id): 3,
            str(two.variant_id): 1,
        }
        again = ok(await http.post("/v1/cart/merge", headers={**shopper.headers, TOKEN: token}))
        assert again["merged_lines"] == 0 and again["cart"]["id"] == cart["id"]
        # the merged guest cart is closed: its token now gets a fresh, empty cart
        after = await http.get("/v1/cart", headers={TOKEN: token})
        assert ok(after)["id"] != guest_cart and after.json()["items"] == [] and after.headers[TOKEN] != token
    assert (await cart_rows(sessions, guest_cart))["status"] == "merged"
    assert (await cart_rows(sessions, cart["id"]))["lines"] == {
        str(one.variant_id): (3, 1000),
        str(two.variant_id): (1, 2000),
    }


# -- the checkout's lock --------------------------------------------------------------------------------
async def test_locked_cart_refuses_edits(
    stack: Stack, sessions: dict[str, SessionFactory], shopper: Shopper
) -> None:
    variant = await stocked_variant(sessions, on_hand=50)
    h = shopper.headers
    async with stack.http() as http:
        cart = ok(await add(http, variant, 1, h))
        item_url = f"/v1/cart/items/{cart['items'][0]['id']}"
        workflow_id = f"checkout-test-{uuid.uuid4()}"
        async with sessions["cart"]() as s, s.begin():
            await cart_service.lock(s, shopper.user_id, workflow_id)
        before = await cart_rows(sessions, cart["id"])
        locked = ok(await http.get("/v1/cart", headers=h))
        assert (locked["id"], locked["status"], locked["locked_by"]) == (cart["id"], "locked", workflow_id)

        problem(await add(http, variant, 1, h), 409, "/problems/cart-locked")
        problem(await http.patch(item_url, json={"quantity": 4}, headers=h), 409, "/problems/cart-locked")
        problem(await http.delete(item_url, headers=h), 409, "/problems/cart-locked")
        guest_token = (await add(http, variant, 1)).headers[TOKEN]
        problem(
            await http.post("/v1/cart/merge", headers={**h, TOKEN: guest_token}), 409, "/problems/cart-locked"
        )
        assert await cart_rows(sessions, cart["id"]) == before

        async with sessions["cart"]() as s, s.begin():
            await cart_service.unlock(s, uuid.UUID(cart["id"]), workflow_id)
        assert ok(await http.patch(item_url, json={"quantity": 4}, headers=h))["items"][0]["quantity"] == 4


# -- coupon preview -------------------------------------------------------------------------------------
async def new_coupon(sessions: dict[str, SessionFactory], **fields: Any) -> str:
    code = f"T{uuid.uuid4().hex[:8].upper()}"
    async with sessions["discount"]() as s, s.begin():
        await discount_service.create_coupon(
            s, CouponIn.model_validate({"code": code, "type": "percentage", "value": 10, **fields})
        )
    return code


async def usage_count(sessions: dict[str, SessionFactory], codes: list[str]) -> int:
    async with sessions["discount"]() as s:
        return int(
            (
                await s.execute(
                    text(
                        "SELECT count(*) FROM coupon_usage u JOIN coupons c ON c.id = u.coupon_id "
                        "WHERE c.code = ANY(:codes)"
                    ),
                    {"codes": codes},
                )
            ).scalar_one()
        )


async def test_coupon_preview(stack: Stack, sessions: dict[str, SessionFactory], shopper: Shopper) -> None:
    variant = await stocked_variant(sessions, on_hand=50, price_amount=1234)
    now = datetime.now(UTC)
    percent = await new_coupon(sessions)
    fixed = await new_coupon(sessions, type="fixed_amount", value=500, currency="USD")
    expired = await new_coupon(sessions, starts_at=now - timedelta(days=10), ends_at=now - timedelta(days=1))
    minimum = await new_coupon(sessions, min_subtotal_amount=100_000)
    exhausted = await new_coupon(sessions, usage_limit_total=1)
    async with sessions["discount"]() as s, s.begin():  # someone else took its only use
        await discount_service.reserve(s, exhausted, uuid.uuid4(), uuid.uuid4(), 5000, "USD", now)
    url, h = "/v1/cart/coupon-preview", shopper.headers
    async with stack.http() as http:
        problem(await http.post(url, json={"code": percent}, headers=h), 409, "/problems/cart-empty")
        ok(await add(http, variant, 2, h))

        preview = ok(await http.post(url, json={"code": f"  {percent.lower()} "}, headers=h))
        assert preview == {
            "code": percent,
            "type": "percentage",
            "discount_amount": 2468 // 10,
            "free_shipping": False,
            "subtotal_amount": 2468,
            "total_after_discount_amount": 2468 - 246,
            "currency": "USD",
        }
        assert ok(await http.post(url, json={"code": fixed}, headers=h))["discount_amount"] == 500

        problem(
            await http.post(url, json={"code": "NOPE-" + percent}, headers=h),
            404,
            "/problems/coupon-not-found",
        )
        problem(await http.post(url, json={"code": expired}, headers=h), 422, "/problems/coupon-expired")
        problem(
            await http.post(url, json={"code": minimum}, headers=h), 422, "/problems/coupon-minimum-not-met"
        )
        problem(await http.post(url, json={"code": exhausted}, headers=h), 409, "/problems/coupon-exhausted")
        problem(await http.post(url, json={"code": ""}, headers=h), 422, "/problems/validation-error")
        problem(
            await http.post(url, json={"code": percent, "discount_amount": 2468}, headers=h),
            422,
            "/problems/validation-error",
        )

        # a guest previews against the cart of its token
        created = await add(http, variant, 1)
        guest = ok(await http.post(url, json={"code": percent}, headers={TOKEN: created.headers[TOKEN]}))
        assert (guest["subtotal_amount"], guest["discount_amount"]) == (1234, 123)
        problem(await http.post(url, json={"code": percent}), 409, "/problems/cart-empty")
    # a preview holds nothing
    assert await usage_count(sessions, [percent, fixed, expired, minimum]) == 0
