"""Support and admin journeys over HTTP against the running stack: role checks (a shopper gets 403, a
support agent cannot use admin routes, no token is 401), order lookup with the live saga state and
notes, a parked checkout saga resolved by support (retry, then skip), and every admin area (catalog,
inventory, coupons, promotions, shipping, email templates), each write checked in its database,
including that a refused or invalid write leaves nothing behind."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.db import SessionFactory
from services.payment.provider import PspSandboxProvider
from services.product import service as product_service
from services.product.schemas import StockLine
from services.shipping import service as shipping_service
from services.shipping.schemas import QuoteRequest
from tests.conftest import Stack, record_history
from tests.factories import (
    THREE_DS_CARD,
    Shopper,
    fill_cart,
    make_shopper,
    stocked_variant,
)
from tests.probes import eventually

pytestmark = pytest.mark.timeout(300)
PROBLEM = "application/problem+json"
TERMINAL = {"confirmed", "failed", "cancelled", "shipped"}


@pytest.fixture(scope="module")
async def admin(stack: Stack, sessions: dict[str, SessionFactory]) -> Shopper:
    return await make_shopper(sessions, stack.settings, roles=("customer", "admin"))


@pytest.fixture(scope="module")
async def agent(stack: Stack, sessions: dict[str, SessionFactory]) -> Shopper:
    return await make_shopper(sessions, stack.settings, roles=("customer", "support"))


@pytest.fixture(scope="module")
async def shopper(stack: Stack, sessions: dict[str, SessionFactory]) -> Shopper:
    return await make_shopper(sessions, stack.settings)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("/problems/")
    return body


def field_errors(response: httpx.Response) -> set[str]:
    body = problem(response, 422)
    return {".".join(str(p) for p in e["loc"]) for e in body.get("errors") or []}


async def count(sessions: dict[str, SessionFactory], db: str, sql: str, **params: Any) -> int:
    async with sessions[db]() as s:
        return int((await s.execute(text(sql), params)).scalar_one())


async def place_order(
    http: httpx.AsyncClient,
    sessions: dict[str, SessionFactory],
    shopper: Shopper,
    method_id: uuid.UUID,
    wanted: set[str] = TERMINAL,
) -> dict[str, Any]:
    variant = await stocked_variant(sessions, on_hand=5)
    await fill_cart(sessions, shopper.user_id, variant)
    started = await http.post(
        "/v1/checkout",
        json={
            "shipping_address_id": str(shopper.address_id),
            "shipping_method_id": str(method_id),
            "payment_method_id": str(shopper.payment_method_id),
        },
        headers={**shopper.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert started.status_code == 202, started.text
    order_id = started.json()["order_id"]

    async def reached() -> dict[str, Any] | None:
        response = await http.get(f"/v1/orders/{order_id}", headers=shopper.headers)
        body: dict[str, Any] = response.json()
        saga = body.get("saga") or {}
        return body if response.status_code == 200 and saga.get("status") in wanted else None

    body: dict[str, Any] = await eventually(reached, f"order {order_id} in {wanted}", 60)
    body["variant"] = variant
    return body


# == roles =======================================================================================


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/support/orders?status=confirmed"),
        ("GET", "/v1/support/sagas"),
        ("POST", "/v1/support/sagas/checkout-x/resolve"),
        ("GET", "/v1/admin/products"),
        ("POST", "/v1/admin/coupons"),
        ("GET", "/v1/admin/shipping/zones"),
        ("PATCH", "/v1/admin/email-templates/order_confirmed/en"),
    ],
)
async def test_roles_guard_support_and_admin_routes(
    stack: Stack, shopper: Shopper, agent: Shopper, admin: Shopper, method: str, path: str
) -> None:
    body = {"action": "skip", "note": "x"} if method != "GET" else None
    async with stack.http() as http:
        problem(await http.request(method, path, json=body), 401)
        assert (await http.request(method, path, json=body)).headers["www-authenticate"] == "Bearer"
        problem(await http.request(method, path, json=body, headers={"Authorization": "Bearer nope"}), 401)
        forbidden = problem(await http.request(method, path, json=body, headers=shopper.headers), 403)
        assert forbidden["type"] == "/problems/forbidden"
        as_agent = await http.request(method, path, json=body, headers=agent.headers)
        if "/admin/" in path:
            problem(as_agent, 403)  # support is not admin
        else:
            assert as_agent.status_code != 403
        assert (await http.request(method, path, json=body, headers=admin.headers)).status_code not in (
            401,
            403,
        )


async def test_a_support_agent_cannot_write_admin_data(
    stack: Stack, sessions: dict[str, SessionFactory], agent: Shopper
) -> None:
    code = f"AGENT{uuid.uuid4().hex[:8].upper()}"
    async with stack.http() as http:
        problem(
            await http.post(
                "/v1/admin/coupons",
                json={"code": code, "type": "percentage", "value": 90},
                headers=agent.headers,
            ),
            403,
        )
    assert await count(sessions, "discount", "SELECT count(*) FROM coupons WHERE code = :c", c=code) == 0


# == support: orders ===========================================================================


async def test_support_finds_orders_with_their_saga_and_notes(
    stack: Stack,
    sessions: dict[str, SessionFactory],
    methods: dict[str, uuid.UUID],
    agent: Shopper,
    shopper: Shopper,
) -> None:
    customer = await make_shopper(sessions, stack.settings)
    async with stack.http() as http:
        placed = await place_order(http, sessions, customer, methods["US:standard"])
        order = placed["order"]
        order_id, number = order["id"], order["order_number"]
        assert placed["saga"]["status"] == "confirmed"

        # one order, any customer's, with the live saga, the payment saga and the status history
        detail = (await http.get(f"/v1/support/orders/{order_id}", headers=agent.headers)).json()
        assert detail["order"]["user_id"] == str(customer.user_id)
        assert detail["saga"]["status"] == "confirmed" and detail["saga"]["order_id"] == order_id
        assert detail["payment"]["status"] == "authorized"
        assert [h["to_status"] for h in detail["order"]["history"]] == ["pending_payment", "confirmed"]
        assert detail["notes"] == []
        problem(await http.get(f"/v1/support/orders/{uuid.uuid4()}", headers=agent.headers), 404)
        problem(await http.get(f"/v1/orders/{order_id}", headers=shopper.headers), 404)  # no leak

        # by number, by customer, by status: each row with the saga from the visibility store
        async def found(query: str) -> list[dict[str, Any]]:
            response = await http.get(f"/v1/support/orders?{query}", headers=agent.headers)
            assert response.status_code == 200, response.text
            rows: list[dict[str, Any]] = response.json()["items"]
            return rows

        (by_number,) = await found(f"order_number={number}")
        assert by_number["order"]["id"] == order_id
        assert await found("order_number=SO-1999-000001") == []
        by_customer = await found(f"customer_id={customer.user_id}")
        assert [r["order"]["id"] for r in by_customer] == [order_id]

        async def saga_visible() -> dict[str, Any] | None:
            (row,) = await found(f"customer_id={customer.user_id}&status=confirmed")
            saga: dict[str, Any] | None = row["saga"]
            return saga if saga and saga["order_status"] == "confirmed" else None

        saga = await eventually(saga_visible, "the saga's search attributes", 20)
        assert saga["workflow_id"] == order["workflow_id"] and saga["execution_status"] == "RUNNING"
        assert saga["needs_attention"] is False
        assert await found(f"customer_id={customer.user_id}&status=failed") == []
        by_status = await found("status=confirmed&limit=100")
        assert all(r["order"]["status"] == "confirmed" for r in by_status)
        assert "status" in str(problem(await http.get("/v1/support/orders", headers=agent.headers), 422))
        assert "query.order_number" in field_errors(
            await http.get("/v1/support/orders?order_number=DROP%20TABLE", headers=agent.headers)
        )

        # notes: internal by default, validated, stored with the author
        added = await http.post(
            f"/v1/support/orders/{order_id}/notes",
            json={"body": "Customer asked to leave the parcel at the door."},
            headers=agent.headers,
        )
        assert added.status_code == 201, added.text
        assert added.json()["visibility"] == "internal" and added.json()["author_id"] == str(agent.user_id)
        for bad in ({"body": ""}, {"body": "   "}, {"body": "x", "author_id": str(shopper.user_id)}):
            field_errors(
                await http.post(f"/v1/support/orders/{order_id}/notes", json=bad, headers=agent.headers)
            )
        problem(
            await http.post(
                f"/v1/support/orders/{uuid.uuid4()}/notes", json={"body": "x"}, headers=agent.headers
            ),
            404,
        )
        notes = (await http.get(f"/v1/support/orders/{order_id}/notes", headers=agent.headers)).json()
        assert [n["body"] for n in notes] == ["Customer asked to leave the parcel at the door."]
        detail = (await http.get(f"/v1/support/orders/{order_id}", headers=agent.headers)).json()
        assert [n["id"] for n in detail["notes"]] == [added.json()["id"]]
        problem(await http.get(f"/v1/support/orders/{uuid.uuid4()}/notes", headers=agent.headers), 404)

        # a saga that is not parked has nothing to resolve
        refused = await http.post(
            f"/v1/support/sagas/{order['workflow_id']}/resolve",
            json={"action": "skip", "note": "nothing is parked"},
            headers=agent.headers,
        )
        assert "nothing is waiting" in problem(refused, 409)["detail"]
    rows = await count(
        sessions, "order", "SELECT count(*) FROM order_notes WHERE order_id = :o", o=uuid.UUID(order_id)
    )
    assert rows == 1  # the refused notes left nothing behind


# == support: parked sagas ======================================================================


async def test_support_resolves_a_parked_compensation(
    stack: Stack, sessions: dict[str, SessionFactory], methods: dict[str, uuid.UUID], agent: Shopper
) -> None:
    """A checkout whose ``order.fail`` compensation is refused (the order row was cancelled by hand while
    the shopper authenticated) parks instead of dropping it. Support sees it, retries (refused again:
    parked again), then skips it; the remaining compensations run and the saga ends failed."""
    customer = await make_shopper(sessions, stack.settings, card=THREE_DS_CARD)
    async with stack.http() as http:
        waiting = await place_order(
            http, sessions, customer, methods["US:standard"], {"awaiting_authentication"}
        )
        order_id, workflow_id = waiting["order_id"], waiting["saga"]["workflow_id"]
        variant = waiting["variant"]
        async with sessions["order"]() as s, s.begin():
            await s.execute(
                text("UPDATE orders SET status = 'cancelled' WHERE id = :o"), {"o": uuid.UUID(order_id)}
            )
        async with PspSandboxProvider(stack.settings.psp_url) as psp:
            (auth,) = await psp.list_authorizations(reference=order_id)
            await psp.simulate_customer_action(auth.id, succeed=False)

        async def parked() -> dict[str, Any] | None:
            response = await http.get("/v1/support/sagas?workflow_type=checkout", headers=agent.headers)
            assert response.status_code == 200, response.text
            mine = [s for s in response.json()["items"] if s["workflow_id"] == workflow_id]
            return mine[0] if mine else None

        saga = await eventually(parked, "the parked saga in the visibility store", 40)
        assert saga["order_id"] == order_id and saga["customer_id"] == str(customer.user_id)
        assert saga["workflow_type"] == "checkout" and saga["order_status"] == "compensating"
        assert "Needs attention" in saga["details"] and "order.fail" in saga["details"]
        view = (await http.get(f"/v1/support/sagas/{workflow_id}", headers=agent.headers)).json()
        assert view["needs_attention"] is True and view["execution_status"] == "RUNNING"
        assert view["summary"].startswith("checkout of order")

        retried = await http.post(
            f"/v1/support/sagas/{workflow_id}/resolve",
            json={"action": "retry", "note": "try once more"},
            headers=agent.headers,
        )
        assert retried.status_code == 200, retried.text
        assert retried.json() == {
            "workflow_id": workflow_id,
            "action": "retry",
            "status": "resolved",
            "status_url": f"/v1/support/sagas/{workflow_id}",
        }

        async def parked_again() -> dict[str, Any] | None:
            state = (await http.get(f"/v1/support/orders/{order_id}", headers=agent.headers)).json()["saga"]
            return state if state and state["needs_attention"] else None

        again = await eventually(parked_again, "the retried compensation to park again", 20)
        assert "order.fail" in again["needs_attention"] and again["status"] == "compensating"

        # Support was mailed each time the saga parked, with the step, the reason and the way to decide.
        async def alerts() -> list[dict[str, Any]] | None:
            async with httpx.AsyncClient(base_url=stack.settings.mail_sink_url) as sink:
                found = (
                    await sink.get("/messages", params={"to": stack.settings.support_alert_email})
                ).json()
            mine = [m for m in found if workflow_id in m["subject"]]
            return mine if len(mine) == 2 else None

        for alert in await eventually(alerts, "two support alerts", 20):
            assert alert["subject"] == f"[needs attention] checkout {workflow_id}"
            assert "Step: order.fail" in alert["text"] and "keeps failing" in alert["text"]
            assert f"POST /v1/support/sagas/{workflow_id}/resolve" in alert["text"]
            assert f"/namespaces/default/workflows/{workflow_id}" in alert["text"]
        for bad in (
            {"action": "ignore", "note": "x"},
            {"action": "skip"},
            {"action": "skip", "note": "x", "actor": "me"},
        ):
            field_errors(
                await http.post(f"/v1/support/sagas/{workflow_id}/resolve", json=bad, headers=agent.headers)
            )
        skipped = await http.post(
            f"/v1/support/sagas/{workflow_id}/resolve",
            json={"action": "skip", "note": "cancelled by hand, ticket 4711"},
            headers=agent.headers,
        )
        assert skipped.status_code == 200 and skipped.json()["status"] == "resolved", skipped.text

        async def ended() -> dict[str, Any] | None:
            state = (await http.get(f"/v1/support/orders/{order_id}", headers=agent.headers)).json()["saga"]
            return state if state and state["status"] in TERMINAL else None

        final = await eventually(ended, "the saga to finish compensating", 30)
        assert final["status"] == "failed" and final["needs_attention"] is None
        assert (
            f"skipped by support:{agent.user_id}: order.fail (cancelled by hand, ticket 4711)" in final["log"]
        )
        assert "compensated: product.release_inventory" in final["log"]
        problem(
            await http.post(
                f"/v1/support/sagas/{workflow_id}/resolve",
                json={"action": "skip", "note": "again"},
                headers=agent.headers,
            ),
            409,
        )
        problem(
            await http.post(
                "/v1/support/sagas/checkout-does-not-exist/resolve",
                json={"action": "skip", "note": "x"},
                headers=agent.headers,
            ),
            404,
        )
        problem(await http.get("/v1/support/sagas/checkout-does-not-exist", headers=agent.headers), 404)
        field_errors(await http.get("/v1/support/sagas/a%20b'c", headers=agent.headers))
        field_errors(await http.get("/v1/support/sagas?workflow_type=x'%20OR%20'1", headers=agent.headers))
    async with sessions["product"]() as s:  # the skipped step did not stop the later compensations
        level = (await product_service.stock_of(s, [variant.variant_id]))[0]
    assert (level.on_hand, level.reserved) == (5, 0)
    assert (
        await count(
            sessions,
            "order",
            "SELECT count(*) FROM orders WHERE id = :o AND status = 'cancelled'",
            o=uuid.UUID(order_id),
        )
        == 1
    )
    await record_history(
        stack.client, workflow_id, "checkout", "support_retries_then_skips_parked_compensation"
    )


# == admin: catalog and inventory ===============================================================


async def test_admin_manages_products_variants_images_and_categories(
    stack: Stack, sessions: dict[str, SessionFactory], admin: Shopper
) -> None:
    tag = uuid.uuid4().hex[:8]
    sku = f"ADM-{tag}".upper()
    async with stack.http() as http:
        root = await http.post(
            "/v1/admin/categories", json={"slug": f"cat-{tag}", "name": "Shirts"}, headers=admin.headers
        )
        assert root.status_code == 201, root.text
        child = await http.post(
            "/v1/admin/categories",
            json={"slug": f"cat-{tag}-tees", "name": "Tees", "parent": f"cat-{tag}", "position": 2},
            headers=admin.headers,
        )
        assert child.status_code == 201, child.text
        problem(
            await http.post(
                "/v1/admin/categories", json={"slug": f"cat-{tag}", "name": "again"}, headers=admin.headers
            ),
            409,
        )
        problem(
            await http.post(
                "/v1/admin/categories",
                json={"slug": f"orphan-{tag}", "name": "x", "parent": f"none-{tag}"},
                headers=admin.headers,
            ),
            404,
        )
        tree = (await http.get("/v1/admin/categories", headers=admin.headers)).json()
        (mine,) = [c for c in tree if c["slug"] == f"cat-{tag}"]
        assert [c["slug"] for c in mine["children"]] == [f"cat-{tag}-tees"]

        body = {
            "sku": sku,
            "slug": f"adm-{tag}",
            "name": "Admin tee",
            "price_amount": 1900,
            "currency": "USD",
            "weight_grams": 200,
            "categories": [f"cat-{tag}-tees"],
            "tags": ["cotton"],
            "variants": [{"sku": f"{sku}-S", "options": {"size": "S"}, "on_hand": 4}],
            "images": [{"url": "https://img.example.com/a.jpg", "alt": "front", "variant_sku": f"{sku}-S"}],
        }
        created = await http.post("/v1/admin/products", json=body, headers=admin.headers)
        assert created.status_code == 201, created.text
        product = created.json()
        product_id, variant_id = product["id"], product["variants"][0]["id"]
        assert created.headers["location"] == f"/v1/admin/products/{product_id}"
        assert product["status"] == "draft" and product["variants"][0]["available"] == 4
        assert product["images"][0]["variant_id"] == variant_id
        assert product["categories"][0]["slug"] == f"cat-{tag}-tees"

        # refused writes leave nothing behind: taken SKU, unknown or forged fields, bad values
        problem(
            await http.post(
                "/v1/admin/products", json={**body, "slug": f"other-{tag}"}, headers=admin.headers
            ),
            409,
        )
        forged = await http.post(
            "/v1/admin/products",
            json={**body, "sku": f"{sku}-F", "slug": f"f-{tag}", "rating_avg": 5, "id": str(uuid.uuid4())},
            headers=admin.headers,
        )
        assert {"body.rating_avg", "body.id"} <= field_errors(forged)
        bad = await http.post(
            "/v1/admin/products",
            json={**body, "sku": f"{sku}-B", "slug": "Not A Slug", "price_amount": -1, "currency": "usd"},
            headers=admin.headers,
        )
        assert {"body.slug", "body.price_amount", "body.currency"} <= field_errors(bad)
        problem(
            await http.post(
                "/v1/admin/products",
                json={**body, "sku": f"{sku}-C", "slug": f"c-{tag}", "categories": [f"none-{tag}"]},
                headers=admin.headers,
            ),
            404,
        )
        assert (
            await count(sessions, "product", "SELECT count(*) FROM products WHERE sku LIKE :s", s=f"{sku}%")
            == 1
        )

        # the product is a draft: only admins see it, until it is published
        listed = (await http.get("/v1/admin/products?q=Admin%20tee&limit=100", headers=admin.headers)).json()
        assert product_id in [p["id"] for p in listed["items"]]
        async with sessions["product"]() as s:
            with pytest.raises(Exception, match="no such product"):
                await product_service.get_product(s, product_id=uuid.UUID(product_id))
        patched = await http.patch(
            f"/v1/admin/products/{product_id}",
            json={"name": "Admin tee, boxy", "price_amount": 2100, "tags": ["cotton", "sale"]},
            headers=admin.headers,
        )
        assert patched.status_code == 200 and patched.json()["price_amount"] == 2100, patched.text
        assert sorted(patched.json()["tags"]) == ["cotton", "sale"]
        assert "body.status" in field_errors(  # status may be left out, not nulled
            await http.patch(f"/v1/admin/products/{product_id}", json={"status": None}, headers=admin.headers)
        )
        field_errors(
            await http.patch(f"/v1/admin/products/{product_id}", json={"version": 9}, headers=admin.headers)
        )
        published = await http.put(
            f"/v1/admin/products/{product_id}/status", json={"status": "active"}, headers=admin.headers
        )
        assert published.json()["status"] == "active", published.text
        field_errors(
            await http.put(
                f"/v1/admin/products/{product_id}/status", json={"status": "gone"}, headers=admin.headers
            )
        )
        async with sessions["product"]() as s:
            public = await product_service.get_product(s, product_id=uuid.UUID(product_id))
        assert public.name == "Admin tee, boxy" and public.price_amount == 2100
        problem(await http.get(f"/v1/admin/products/{uuid.uuid4()}", headers=admin.headers), 404)

        # variants and images
        variant = await http.post(
            f"/v1/admin/products/{product_id}/variants",
            json={
                "sku": f"{sku}-M",
                "options": {"size": "M"},
                "price_amount": 2300,
                "currency": "USD",
                "on_hand": 2,
            },
            headers=admin.headers,
        )
        assert variant.status_code == 201 and variant.json()["price_amount"] == 2300, variant.text
        problem(
            await http.post(
                f"/v1/admin/products/{product_id}/variants",
                json={"sku": f"{sku}-L", "price_amount": 2300, "currency": "EUR"},
                headers=admin.headers,
            ),
            422,
        )
        off = await http.patch(
            f"/v1/admin/variants/{variant_id}", json={"is_active": False}, headers=admin.headers
        )
        assert off.json()["is_active"] is False, off.text
        assert "body" in field_errors(
            await http.patch(
                f"/v1/admin/variants/{variant_id}", json={"price_amount": 5}, headers=admin.headers
            )
        )
        problem(
            await http.patch(
                f"/v1/admin/variants/{uuid.uuid4()}", json={"is_active": True}, headers=admin.headers
            ),
            404,
        )
        image = await http.post(
            f"/v1/admin/products/{product_id}/images",
            json={"url": "https://img.example.com/b.jpg", "position": 1, "variant_id": variant.json()["id"]},
            headers=admin.headers,
        )
        assert image.status_code == 201, image.text
        other = await stocked_variant(sessions, on_hand=1)
        problem(
            await http.post(
                f"/v1/admin/products/{product_id}/images",
                json={"url": "https://img.example.com/c.jpg", "variant_id": str(other.variant_id)},
                headers=admin.headers,
            ),
            404,
        )
        assert "body.url" in field_errors(
            await http.post(
                f"/v1/admin/products/{product_id}/images",
                json={"url": "javascript:alert(1)"},
                headers=admin.headers,
            )
        )
        detail = (await http.get(f"/v1/admin/products/{product_id}", headers=admin.headers)).json()
        assert len(detail["images"]) == 2 and len(detail["variants"]) == 2
    assert (
        await count(
            sessions,
            "product",
            "SELECT count(*) FROM product_images WHERE product_id = :p",
            p=uuid.UUID(product_id),
        )
        == 2
    )


async def test_admin_sets_and_reads_stock(
    stack: Stack, sessions: dict[str, SessionFactory], admin: Shopper
) -> None:
    variant = await stocked_variant(sessions, on_hand=10)
    vid = variant.variant_id
    async with sessions["product"]() as s, s.begin():
        await product_service.reserve(
            s, uuid.uuid4(), [StockLine(variant_id=vid, quantity=3)], timedelta(minutes=10)
        )
    async with stack.http() as http:
        level = (await http.get(f"/v1/admin/inventory/{vid}", headers=admin.headers)).json()
        assert (level["on_hand"], level["reserved"], level["available"]) == (10, 3, 7)
        updated = await http.put(
            f"/v1/admin/inventory/{vid}",
            json={"on_hand": 25, "expected_version": level["version"]},
            headers=admin.headers,
        )
        assert updated.status_code == 200, updated.text
        assert (updated.json()["on_hand"], updated.json()["available"]) == (25, 22)
        stale = await http.put(
            f"/v1/admin/inventory/{vid}",
            json={"on_hand": 30, "expected_version": level["version"]},
            headers=admin.headers,
        )
        assert problem(stale, 409)["type"] == "/problems/concurrent-update"
        below = await http.put(f"/v1/admin/inventory/{vid}", json={"on_hand": 2}, headers=admin.headers)
        assert problem(below, 409)["type"] == "/problems/stock-below-reserved"
        assert {"body.on_hand", "body.reserved"} <= field_errors(
            await http.put(
                f"/v1/admin/inventory/{vid}", json={"on_hand": -1, "reserved": 0}, headers=admin.headers
            )
        )
        problem(
            await http.put(f"/v1/admin/inventory/{uuid.uuid4()}", json={"on_hand": 1}, headers=admin.headers),
            404,
        )
        problem(await http.get(f"/v1/admin/inventory/{uuid.uuid4()}", headers=admin.headers), 404)
        many = await http.get(
            f"/v1/admin/inventory?variant_id={vid}&variant_id={uuid.uuid4()}", headers=admin.headers
        )
        assert [x["variant_id"] for x in many.json()] == [str(vid)]
        field_errors(await http.get("/v1/admin/inventory", headers=admin.headers))
    async with sessions["product"]() as s:
        level_now = (await product_service.stock_of(s, [vid]))[0]
    assert (level_now.on_hand, level_now.reserved) == (25, 3)


# == admin: coupons and promotions ==============================================================


async def test_admin_manages_coupons_and_promotions(
    stack: Stack, sessions: dict[str, SessionFactory], admin: Shopper
) -> None:
    code = f"Adm{uuid.uuid4().hex[:8]}"
    async with stack.http() as http:
        created = await http.post(
            "/v1/admin/coupons",
            json={
                "code": code,
                "type": "fixed_amount",
                "value": 500,
                "currency": "USD",
                "usage_limit_total": 10,
            },
            headers=admin.headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["code"] == code.upper() and created.json()["times_used"] == 0
        assert created.headers["location"] == f"/v1/admin/coupons/{code.upper()}"
        problem(
            await http.post(
                "/v1/admin/coupons",
                json={"code": code.lower(), "type": "percentage", "value": 5},
                headers=admin.headers,
            ),
            409,
        )
        mass = await http.post(
            "/v1/admin/coupons",
            json={"code": f"{code}X", "type": "percentage", "value": 5, "times_used": -100},
            headers=admin.headers,
        )
        assert "body.times_used" in field_errors(mass)
        for bad in (
            {"code": f"{code}Y", "type": "percentage", "value": 150},
            {"code": f"{code}Y", "type": "fixed_amount", "value": 500},
            {"code": "no spaces", "type": "percentage", "value": 5},
            {"code": f"{code}Y", "type": "percentage", "value": 5, "usage_limit_total": 2**40},
        ):
            field_errors(await http.post("/v1/admin/coupons", json=bad, headers=admin.headers))
        assert (
            await count(
                sessions, "discount", "SELECT count(*) FROM coupons WHERE code LIKE :c", c=f"{code.upper()}%"
            )
            == 1
        )

        got = (await http.get(f"/v1/admin/coupons/{code.lower()}", headers=admin.headers)).json()
        assert got["id"] == created.json()["id"]
        page = (
            await http.get(f"/v1/admin/coupons?cursor={code.upper()[:-1]}&limit=200", headers=admin.headers)
        ).json()
        assert code.upper() in [c["code"] for c in page["items"]]
        off = await http.post(f"/v1/admin/coupons/{code}/deactivate", headers=admin.headers)
        assert off.json()["is_active"] is False, off.text
        inactive = (await http.get("/v1/admin/coupons?active=false&limit=200", headers=admin.headers)).json()
        assert code.upper() in [c["code"] for c in inactive["items"]] or inactive["next_cursor"]
        on = await http.post(f"/v1/admin/coupons/{code}/activate", headers=admin.headers)
        assert on.json()["is_active"] is True
        problem(await http.post("/v1/admin/coupons/NOSUCHCODE1/deactivate", headers=admin.headers), 404)
        problem(await http.get("/v1/admin/coupons/NOSUCHCODE1", headers=admin.headers), 404)

        product = uuid.uuid4()
        promo = await http.post(
            "/v1/admin/promotions",
            json={
                "name": f"admin test {code}",
                "type": "percentage",
                "value": 25,
                "priority": 3,
                "rules": [
                    {"rule_type": "product", "params": {"product_ids": [str(product)]}},
                    {"rule_type": "min_subtotal", "params": {"amount": 1000}},
                ],
            },
            headers=admin.headers,
        )
        assert promo.status_code == 201, promo.text
        promotion = promo.json()
        assert [r["rule_type"] for r in promotion["rules"]] == ["min_subtotal", "product"]  # by type
        for rules in (
            [{"rule_type": "min_subtotal", "params": {"amount": "lots"}}],
            [{"rule_type": "buy_x_get_y", "params": {"buy": 2}}],
            [{"rule_type": "product", "params": {"product_ids": [str(product)], "extra": 1}}],
            [{"rule_type": "birthday", "params": {}}],
        ):
            field_errors(
                await http.post(
                    "/v1/admin/promotions",
                    json={"name": f"bad {code}", "type": "percentage", "value": 5, "rules": rules},
                    headers=admin.headers,
                )
            )
        assert (
            await count(
                sessions, "discount", "SELECT count(*) FROM promotions WHERE name LIKE :n", n=f"%{code}"
            )
            == 1
        )
        assert (
            await http.get(f"/v1/admin/promotions/{promotion['id']}", headers=admin.headers)
        ).json() == promotion
        off = await http.post(f"/v1/admin/promotions/{promotion['id']}/deactivate", headers=admin.headers)
        assert off.json()["is_active"] is False
        listed = (await http.get("/v1/admin/promotions?active=false&limit=500", headers=admin.headers)).json()
        assert promotion["id"] in [p["id"] for p in listed]
        on = await http.post(f"/v1/admin/promotions/{promotion['id']}/activate", headers=admin.headers)
        assert on.json()["is_active"] is True
        off = await http.post(f"/v1/admin/promotions/{promotion['id']}/deactivate", headers=admin.headers)
        problem(await http.get(f"/v1/admin/promotions/{uuid.uuid4()}", headers=admin.headers), 404)
    async with sessions["discount"]() as s:
        active = (
            await s.execute(
                text("SELECT is_active FROM promotions WHERE id = :p"), {"p": uuid.UUID(promotion["id"])}
            )
        ).scalar_one()
    assert active is False


# == admin: shipping ===========================================================================


async def test_admin_configures_shipping_end_to_end(
    stack: Stack, sessions: dict[str, SessionFactory], admin: Shopper
) -> None:
    tag = uuid.uuid4().hex[:8]
    country = "XS"  # a user-assigned ISO code: no other test ships there
    async with stack.http() as http:
        carrier = await http.post(
            "/v1/admin/shipping/carriers",
            json={"code": f"c-{tag}", "name": "Test carrier"},
            headers=admin.headers,
        )
        assert carrier.status_code == 201, carrier.text
        problem(
            await http.post(
                "/v1/admin/shipping/carriers",
                json={"code": f"c-{tag}", "name": "again"},
                headers=admin.headers,
            ),
            409,
        )
        assert "body.id" in field_errors(
            await http.post(
                "/v1/admin/shipping/carriers",
                json={"code": f"d-{tag}", "name": "x", "id": str(uuid.uuid4())},
                headers=admin.headers,
            )
        )
        zone = await http.post(
            "/v1/admin/shipping/zones",
            json={"name": f"zone {tag}", "countries": [country], "postal_code_patterns": [r"9\d{4}"]},
            headers=admin.headers,
        )
        assert zone.status_code == 201, zone.text
        for bad in (
            {"name": f"z2 {tag}", "countries": ["xs"]},
            {"name": f"z2 {tag}", "countries": [country], "postal_code_patterns": ["(unclosed"]},
        ):
            field_errors(await http.post("/v1/admin/shipping/zones", json=bad, headers=admin.headers))
        method = await http.post(
            "/v1/admin/shipping/methods",
            json={
                "carrier_id": carrier.json()["id"],
                "zone_id": zone.json()["id"],
                "code": "standard",
                "name": "Standard",
                "service_level": "standard",
                "min_delivery_days": 2,
                "max_delivery_days": 4,
            },
            headers=admin.headers,
        )
        assert method.status_code == 201, method.text
        method_id = method.json()["id"]
        problem(
            await http.post(
                "/v1/admin/shipping/methods",
                json={**method.json(), "id": None, "zone_id": str(uuid.uuid4())} | {"code": "x"},
                headers=admin.headers,
            ),
            422,
        )
        missing_zone = {k: v for k, v in method.json().items() if k != "id"} | {
            "zone_id": str(uuid.uuid4()),
            "code": "x",
        }
        problem(await http.post("/v1/admin/shipping/methods", json=missing_zone, headers=admin.headers), 404)
        rate = await http.post(
            "/v1/admin/shipping/rates",
            json={
                "method_id": method_id,
                "min_weight_grams": 0,
                "max_weight_grams": 5000,
                "amount": 800,
                "currency": "USD",
                "free_over_amount": 10000,
            },
            headers=admin.headers,
        )
        assert rate.status_code == 201, rate.text
        overlap = await http.post(
            "/v1/admin/shipping/rates",
            json={
                "method_id": method_id,
                "min_weight_grams": 1000,
                "max_weight_grams": 2000,
                "amount": 1,
                "currency": "USD",
            },
            headers=admin.headers,
        )
        assert problem(overlap, 422)["type"] == "/problems/invalid-shipping-config"
        field_errors(
            await http.post(
                "/v1/admin/shipping/rates",
                json={
                    "method_id": method_id,
                    "min_weight_grams": 0,
                    "max_weight_grams": 1,
                    "amount": 10**15,
                    "currency": "USD",
                },
                headers=admin.headers,
            )
        )

        async def quote(weight: int = 1000, subtotal: int = 5000) -> int:
            async with sessions["shipping"]() as s:
                return (
                    await shipping_service.quote(
                        s,
                        QuoteRequest.model_validate(
                            {
                                "address": {"country": country, "postal_code": "90210"},
                                "shipping_method_id": method_id,
                                "weight_grams": weight,
                                "subtotal_amount": subtotal,
                                "currency": "USD",
                            }
                        ),
                    )
                ).amount

        assert await quote() == 800 and await quote(subtotal=20000) == 0
        updated = await http.patch(
            f"/v1/admin/shipping/rates/{rate.json()['id']}",
            json={"amount": 950, "clear_free_over": True},
            headers=admin.headers,
        )
        assert updated.json()["amount"] == 950 and updated.json()["free_over_amount"] is None, updated.text
        assert await quote(subtotal=20000) == 950
        rates = (
            await http.get(f"/v1/admin/shipping/methods/{method_id}/rates", headers=admin.headers)
        ).json()
        assert [r["id"] for r in rates] == [rate.json()["id"]]
        slower = await http.patch(
            f"/v1/admin/shipping/methods/{method_id}", json={"max_delivery_days": 6}, headers=admin.headers
        )
        assert slower.json()["max_delivery_days"] == 6
        problem(
            await http.patch(
                f"/v1/admin/shipping/methods/{method_id}",
                json={"max_delivery_days": 1},
                headers=admin.headers,
            ),
            422,
        )
        renamed = await http.patch(
            f"/v1/admin/shipping/zones/{zone.json()['id']}",
            json={"postal_code_patterns": None},
            headers=admin.headers,
        )
        assert renamed.json()["postal_code_patterns"] is None
        assert await quote() == 950
        carrier_off = await http.patch(
            f"/v1/admin/shipping/carriers/{carrier.json()['id']}",
            json={"is_active": False},
            headers=admin.headers,
        )
        assert carrier_off.json()["is_active"] is False
        with pytest.raises(Exception, match="not offered"):
            await quote()
        assert (
            await http.delete(f"/v1/admin/shipping/rates/{rate.json()['id']}", headers=admin.headers)
        ).status_code == 204
        problem(
            await http.delete(f"/v1/admin/shipping/rates/{rate.json()['id']}", headers=admin.headers), 404
        )
        assert (
            await http.get(f"/v1/admin/shipping/methods/{method_id}/rates", headers=admin.headers)
        ).json() == []
        zones = (await http.get("/v1/admin/shipping/zones", headers=admin.headers)).json()
        assert zone.json()["id"] in [z["id"] for z in zones]
        carriers = (await http.get("/v1/admin/shipping/carriers", headers=admin.headers)).json()
        assert carrier.json()["id"] in [c["id"] for c in carriers]
        listed = (
            await http.get(f"/v1/admin/shipping/methods?zone_id={zone.json()['id']}", headers=admin.headers)
        ).json()
        assert [m["id"] for m in listed] == [method_id]
        problem(
            await http.patch(
                f"/v1/admin/shipping/zones/{uuid.uuid4()}", json={"is_active": False}, headers=admin.headers
            ),
            404,
        )
    assert (
        await count(
            sessions, "shipping", "SELECT count(*) FROM shipping_zones WHERE name LIKE :n", n=f"%{tag}"
        )
        == 1
    )


# == admin: email templates =====================================================================


async def test_admin_edits_previews_and_versions_email_templates(
    stack: Stack, sessions: dict[str, SessionFactory], admin: Shopper
) -> None:
    key = f"admin_test_{uuid.uuid4().hex[:8]}"
    async with stack.http() as http:
        created = await http.post(
            "/v1/admin/email-templates",
            json={
                "key": key,
                "locale": "en",
                "category": "marketing",
                "subject_template": "Hello {{ name }}",
                "text_template": "Dear {{ name }}, {{ product }} is back.",
            },
            headers=admin.headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["version"] == 1
        problem(
            await http.post(
                "/v1/admin/email-templates",
                json={"key": key, "category": "marketing", "subject_template": "x", "text_template": "y"},
                headers=admin.headers,
            ),
            409,
        )
        broken = await http.post(
            "/v1/admin/email-templates",
            json={
                "key": f"{key}_b",
                "category": "marketing",
                "subject_template": "{% if %}",
                "text_template": "y",
            },
            headers=admin.headers,
        )
        assert problem(broken, 422)["type"] == "/problems/template-invalid"
        assert "body.version" in field_errors(
            await http.post(
                "/v1/admin/email-templates",
                json={
                    "key": f"{key}_c",
                    "category": "marketing",
                    "subject_template": "x",
                    "text_template": "y",
                    "version": 7,
                },
                headers=admin.headers,
            )
        )
        updated = await http.patch(
            f"/v1/admin/email-templates/{key}/en",
            json={"subject_template": "Hi {{ name }}", "html_template": "<p>{{ product }}</p>"},
            headers=admin.headers,
        )
        assert updated.status_code == 200 and updated.json()["version"] == 2, updated.text
        refused = await http.patch(
            f"/v1/admin/email-templates/{key}/en",
            json={"text_template": "{{ name | nosuchfilter }}"},
            headers=admin.headers,
        )
        problem(refused, 422)
        got = (await http.get(f"/v1/admin/email-templates/{key}/en", headers=admin.headers)).json()
        assert got["version"] == 2 and got["text_template"] == "Dear {{ name }}, {{ product }} is back."
        preview = await http.post(
            f"/v1/admin/email-templates/{key}/en/preview",
            json={"context": {"name": "Ada", "product": "<b>socks</b>"}},
            headers=admin.headers,
        )
        assert preview.json() == {
            "subject": "Hi Ada",
            "text": "Dear Ada, <b>socks</b> is back.",
            "html": "<p>&lt;b&gt;socks&lt;/b&gt;</p>",
        }, preview.text
        missing = await http.post(
            f"/v1/admin/email-templates/{key}/en/preview",
            json={"context": {"name": "Ada"}},
            headers=admin.headers,
        )
        assert problem(missing, 422)["type"] == "/problems/template-render-error"
        problem(await http.get(f"/v1/admin/email-templates/{key}/de", headers=admin.headers), 404)
        field_errors(await http.get(f"/v1/admin/email-templates/{key}/english", headers=admin.headers))
        listed = (await http.get(f"/v1/admin/email-templates?key={key}", headers=admin.headers)).json()
        assert [(t["key"], t["version"]) for t in listed] == [(key, 2)]
    assert (
        await count(sessions, "notification", "SELECT version FROM email_templates WHERE key = :k", k=key)
        == 2
    )
    assert (
        await count(
            sessions, "notification", "SELECT count(*) FROM email_templates WHERE key LIKE :k", k=f"{key}%"
        )
        == 1
    )


# == input the schema refuses is refused, input it allows is taken =================================


async def test_bodies_are_read_with_the_types_the_schema_states(
    stack: Stack, sessions: dict[str, SessionFactory], admin: Shopper
) -> None:
    code = f"STRICT{uuid.uuid4().hex[:8].upper()}"
    coupon = {"code": code, "type": "percentage", "value": 10}
    async with stack.http() as http:
        for field, value in (
            ("is_active", 0),  # 0 is not false
            ("value", "10"),  # "10" is not 10
            ("starts_at", 0),  # 0 is not 1970-01-01
            ("usage_limit_total", 1.5),
        ):
            assert f"body.{field}" in field_errors(
                await http.post("/v1/admin/coupons", json={**coupon, field: value}, headers=admin.headers)
            ), field
        for text_value in ("nul \u0000 inside", "lone \ud800 surrogate"):
            assert "body.description" in field_errors(
                await http.post(  # JSON escapes (\u0000, \ud800), as a client would send them
                    "/v1/admin/coupons",
                    content=json.dumps({**coupon, "description": text_value}),
                    headers={**admin.headers, "Content-Type": "application/json"},
                )
            )
        assert await count(sessions, "discount", "SELECT count(*) FROM coupons WHERE code = :c", c=code) == 0
        # an integral number is an integer (JSON Schema's view), strings still carry dates
        created = await http.post(
            "/v1/admin/coupons",
            json={**coupon, "value": 10.0, "starts_at": "2026-01-01T00:00:00Z"},
            headers=admin.headers,
        )
        assert created.status_code == 201, created.text
        # the role is checked before the body: an anonymous caller learns nothing about it
        problem(await http.post("/v1/admin/coupons", json={**coupon, "value": "x"}), 401)
        searched = await http.get("/v1/admin/products?q=%00", headers=admin.headers)
        assert searched.status_code in (200, 422), searched.text
        note = await http.post(
            f"/v1/support/orders/{uuid.uuid4()}/notes", json={"body": "a\u0000b"}, headers=admin.headers
        )
        assert "body.body" in field_errors(note)
