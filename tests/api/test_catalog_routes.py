"""The public catalog over HTTP against the running stack: search with every filter and sort, cursor
pagination, product detail, the category tree, reviews (only after a confirmed order, one per
shopper) and the search rate limit.

The demo catalog is loaded once (idempotent, shared with other modules); exact expectations use a
handful of products of this module's own, marked with a tag and a search word nobody else uses.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.ratelimit import TokenBucket
from core.db import SessionFactory
from services.auth.tokens import issue_access_token
from services.product import service as product_service
from services.product.demo import NAMESPACE as DEMO_NAMESPACE
from services.product.demo import load_demo_catalog
from services.product.schemas import ProductCreate, ReviewCreate
from tests.conftest import Stack
from tests.factories import make_shopper, shipping_methods, stocked_variant

pytestmark = pytest.mark.timeout(300)
PROBLEM = "application/problem+json"
SORTS = ("relevance", "price_asc", "price_desc", "newest", "rating")


@dataclass
class Catalog:
    tag: str  # on every product of this module
    word: str  # a search word only this module's products carry
    brand_a: str
    brand_b: str
    ids: dict[str, str]  # A, B, C, E active; D draft


def _word() -> str:
    return "".join(random.choices(string.ascii_lowercase, k=12))


async def _create(sessions: dict[str, SessionFactory], spec: dict[str, Any]) -> str:
    async with sessions["product"]() as s, s.begin():  # one transaction each: distinct created_at
        return str((await product_service.create_product(s, ProductCreate.model_validate(spec))).id)


@pytest.fixture(scope="module")
async def catalog(stack: Stack, sessions: dict[str, SessionFactory]) -> Catalog:
    async with sessions["product"]() as s, s.begin():
        await load_demo_catalog(s, products=60)
    word, tag = _word(), f"t-{uuid.uuid4().hex[:10]}"
    brand_a, brand_b = f"Alpha {tag}", f"Beta {tag}"  # not the search word: brands are searched too

    def spec(key: str, **fields: Any) -> dict[str, Any]:
        sku = f"CAT-{key}-{uuid.uuid4().hex[:8].upper()}"
        return {
            "sku": sku,
            "slug": sku.lower(),
            "currency": "USD",
            "status": "active",
            "tags": [tag],
            **fields,
        }

    ids = {
        "A": await _create(
            sessions,
            spec(
                "A",
                name=f"{word.capitalize()} Lantern",
                brand=brand_a,
                price_amount=1500,
                categories=["mens-t-shirts"],
                variants=[{"sku": f"A-{word}-1", "on_hand": 5, "options": {"color": "red"}}],
                images=[{"url": f"https://example.com/{word}/a.jpg", "alt": "front", "position": 0}],
            ),
        ),
        "B": await _create(
            sessions,
            spec(
                "B",
                name="Camp Kettle",
                description=f"Pairs well with the {word} lantern.",
                brand=brand_a,
                price_amount=2500,
                categories=["cookware"],
                variants=[{"sku": f"B-{word}-1", "on_hand": 3}],
            ),
        ),
        "C": await _create(
            sessions,
            spec(
                "C",
                name="Wool Socks",
                brand=brand_b,
                price_amount=3000,
                categories=["mens-jeans"],
                variants=[{"sku": f"C-{word}-1", "on_hand": 0}],
            ),
        ),
        "D": await _create(
            sessions,
            spec("D", name=f"{word.capitalize()} Draft", brand=brand_a, price_amount=2000, status="draft"),
        ),
        "E": await _create(  # stock only on an inactive variant: not in stock
            sessions,
            spec(
                "E",
                name="Ceramic Mug",
                brand=brand_b,
                price_amount=900,
                categories=["cookware"],
                variants=[
                    {"sku": f"E-{word}-1", "on_hand": 0},
                    {"sku": f"E-{word}-2", "on_hand": 10, "is_active": False},
                ],
            ),
        ),
    }
    async with sessions["product"]() as s, s.begin():  # ratings: A 5.0, B 3.0, C and E none
        for key, rating in (("A", 5), ("B", 3)):
            await product_service.create_review(
                s,
                ReviewCreate(
                    product_id=uuid.UUID(ids[key]), user_id=uuid.uuid4(), rating=rating, has_purchased=True
                ),
            )
    return Catalog(tag, word, brand_a, brand_b, ids)


def browser(stack: Stack) -> dict[str, str]:
    """Headers of a signed-in browser of its own: its own search rate-limit bucket."""
    token = issue_access_token(stack.settings, uuid.uuid4(), ["customer"]).token
    return {"Authorization": f"Bearer {token}"}


async def search(http: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await http.get("/v1/products", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def all_pages(
    http: httpx.AsyncClient, headers: dict[str, str], limit: int, **params: Any
) -> tuple[list[dict[str, Any]], int]:
    """Every item over every page, and how many pages it took."""
    items: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        page = await search(http, headers, limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        pages += 1
        items += page["items"]
        assert len(page["items"]) <= limit
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
        assert len(page["items"]) == limit
        assert pages < 100, "pagination does not end"


async def ids_of(http: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[str]:
    return [p["id"] for p in (await search(http, headers, limit=100, **params))["items"]]


def problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == type_ and body["status"] == status, body
    return body


# -- filters -------------------------------------------------------------------------------------------
async def test_filters(stack: Stack, catalog: Catalog) -> None:
    c, h = catalog, browser(stack)
    i = c.ids
    async with stack.http() as http:
        everything = await ids_of(http, h, tag=c.tag, sort="price_asc")
        assert everything == [i["E"], i["A"], i["B"], i["C"]]  # the draft D is never listed
        assert set(await ids_of(http, h, q=c.word)) == {i["A"], i["B"]}
        # category includes descendants: clothing > mens-clothing > mens-t-shirts / mens-jeans
        assert set(await ids_of(http, h, tag=c.tag, category="clothing")) == {i["A"], i["C"]}
        assert set(await ids_of(http, h, tag=c.tag, category="mens-clothing")) == {i["A"], i["C"]}
        assert await ids_of(http, h, tag=c.tag, category="mens-jeans") == [i["C"]]
        assert set(await ids_of(http, h, tag=c.tag, category="home-kitchen")) == {i["B"], i["E"]}
        assert set(await ids_of(http, h, brand=c.brand_a)) == {i["A"], i["B"]}
        assert set(await ids_of(http, h, brand=c.brand_b, tag=c.tag)) == {i["C"], i["E"]}
        assert set(await ids_of(http, h, tag=c.tag, price_min=1000, price_max=2600)) == {i["A"], i["B"]}
        assert await ids_of(http, h, tag=c.tag, price_min=3000) == [i["C"]]
        assert await ids_of(http, h, tag=c.tag, price_max=900) == [i["E"]]
        assert set(await ids_of(http, h, tag=c.tag, in_stock="true")) == {i["A"], i["B"]}
        assert await ids_of(http, h, q=c.word, brand=c.brand_a, category="cookware", in_stock="true") == [
            i["B"]
        ]
        summary = (await search(http, h, q=c.word, category="clothing"))["items"]
        assert len(summary) == 1 and summary[0]["id"] == i["A"]
        a = summary[0]
        assert (a["price_amount"], a["currency"], a["in_stock"], a["brand"]) == (1500, "USD", True, c.brand_a)
        assert (a["rating_avg"], a["rating_count"]) == (5.0, 1)
        assert a["thumbnail_url"] == f"https://example.com/{c.word}/a.jpg"

        # the demo catalog: every in_stock result has stock, every price filter holds
        demo = await search(http, h, category="clothing", in_stock="true", price_min=2000, limit=100)
        assert demo["items"]
        assert all(p["in_stock"] and p["price_amount"] >= 2000 for p in demo["items"])
        detail = (await http.get(f"/v1/products/{demo['items'][0]['id']}")).json()
        assert {x["slug"] for x in detail["categories"]} <= {
            "clothing",
            "mens-clothing",
            "mens-t-shirts",
            "mens-jeans",
            "mens-jackets",
            "womens-clothing",
            "womens-dresses",
            "womens-tops",
            "womens-jackets",
            "kids-clothing",
        }


async def test_sorts(stack: Stack, catalog: Catalog) -> None:
    c, h = catalog, browser(stack)
    i = c.ids
    async with stack.http() as http:
        assert await ids_of(http, h, tag=c.tag, sort="price_desc") == [i["C"], i["B"], i["A"], i["E"]]
        assert await ids_of(http, h, tag=c.tag, sort="newest") == [i["E"], i["C"], i["B"], i["A"]]
        assert await ids_of(http, h, tag=c.tag, sort="relevance") == [i["E"], i["C"], i["B"], i["A"]]
        by_rating = await ids_of(http, h, tag=c.tag, sort="rating")
        assert by_rating[:2] == [i["A"], i["B"]] and set(by_rating[2:]) == {i["C"], i["E"]}
        # relevance with a query: the word in the name (A) outranks the word in the description (B)
        assert await ids_of(http, h, q=c.word, sort="relevance") == [i["A"], i["B"]]
        assert await ids_of(http, h, q=c.word, sort="price_desc") == [i["B"], i["A"]]


@pytest.mark.parametrize("sort", SORTS)
async def test_pagination_across_pages_without_duplicates(stack: Stack, catalog: Catalog, sort: str) -> None:
    h = browser(stack)
    params: dict[str, Any] = {"category": "clothing", "sort": sort}
    if sort == "relevance":
        params = {"q": "cotton OR jeans OR jacket OR dress", "sort": sort}
    async with stack.http() as http:
        whole, _ = await all_pages(http, h, 100, **params)
        assert len(whole) > 7
        limit = max(3, -(-len(whole) // 6))  # about six pages, however big the shared catalog is
        paged, pages = await all_pages(http, h, limit, **params)
    ids = [p["id"] for p in paged]
    assert len(ids) == len(set(ids)), "a product appeared on two pages"
    assert ids == [p["id"] for p in whole]  # same order, nothing skipped
    assert pages == -(-len(ids) // limit)
    if sort == "price_asc":
        prices = [p["price_amount"] for p in paged]
        assert prices == sorted(prices)
    elif sort == "price_desc":
        prices = [p["price_amount"] for p in paged]
        assert prices == sorted(prices, reverse=True)
    elif sort == "newest":
        created = [p["created_at"] for p in paged]
        assert created == sorted(created, reverse=True)
    elif sort == "rating":
        ratings = [p["rating_avg"] for p in paged]
        assert ratings == sorted(ratings, reverse=True)


async def test_bad_queries_are_problems(stack: Stack, catalog: Catalog) -> None:
    h = browser(stack)
    async with stack.http() as http:
        first = await search(http, h, tag=catalog.tag, sort="price_asc", limit=1)
        cursor = first["next_cursor"]
        assert cursor
        other_sort = await http.get(
            "/v1/products", params={"tag": catalog.tag, "sort": "price_desc", "cursor": cursor}, headers=h
        )
        problem(other_sort, 422, "/problems/invalid-cursor")
        tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
        problem(
            await http.get(
                "/v1/products", params={"tag": catalog.tag, "sort": "price_asc", "cursor": tampered}
            ),
            422,
            "/problems/invalid-cursor",
        )
        problem(
            await http.get("/v1/products", params={"cursor": "bm90LWEtY3Vyc29y"}),
            422,
            "/problems/invalid-cursor",
        )
        body = problem(
            await http.get("/v1/products", params={"cursor": "not a cursor!"}),
            422,
            "/problems/validation-error",
        )
        assert any(e["loc"][-1] == "cursor" for e in body["errors"])
        problem(
            await http.get("/v1/products", params={"category": "no-such-category"}),
            404,
            "/problems/category-not-found",
        )
        problem(
            await http.get("/v1/products", params={"price_min": 10, "price_max": 5}),
            422,
            "/problems/validation-error",
        )
        problem(
            await http.get("/v1/products", params={"sort": "cheapest"}), 422, "/problems/validation-error"
        )
        problem(await http.get("/v1/products", params={"limit": 101}), 422, "/problems/validation-error")
        problem(await http.get("/v1/products", params={"q": "   "}), 422, "/problems/validation-error")
        problem(await http.get("/v1/products", params={"q": "a\x00b"}), 422, "/problems/validation-error")
        # no mass assignment through the query: shoppers never list unpublished products
        problem(
            await http.get("/v1/products", params={"include_unpublished": "true"}),
            422,
            "/problems/validation-error",
        )


# -- detail and categories -----------------------------------------------------------------------------
async def test_product_detail(stack: Stack, catalog: Catalog) -> None:
    i = catalog.ids
    async with stack.http() as http:
        response = await http.get(f"/v1/products/{i['A']}")
        assert response.status_code == 200, response.text
        a = response.json()
        assert a["id"] == i["A"] and a["price_amount"] == 1500 and a["brand"] == catalog.brand_a
        assert (a["available"], a["in_stock"], a["rating_avg"], a["rating_count"]) == (5, True, 5.0, 1)
        assert [x["slug"] for x in a["categories"]] == ["mens-t-shirts"] and a["tags"] == [catalog.tag]
        (variant,) = a["variants"]
        assert variant["options"] == {"color": "red"} and variant["price_amount"] == 1500
        assert (variant["available"], variant["in_stock"]) == (5, True)
        assert "on_hand" not in variant and "reserved" not in variant
        assert [img["url"] for img in a["images"]] == [f"https://example.com/{catalog.word}/a.jpg"]

        e = (await http.get(f"/v1/products/{i['E']}")).json()
        assert (e["available"], e["in_stock"]) == (0, False)
        assert [v["sku"] for v in e["variants"]] == [f"E-{catalog.word}-1"]  # the inactive one is hidden

        demo_id = uuid.uuid5(DEMO_NAMESPACE, "product:DEMO-00001")
        demo = (await http.get(f"/v1/products/{demo_id}")).json()
        assert demo["variants"] and demo["images"] and demo["rating_count"] >= 1

        problem(await http.get(f"/v1/products/{i['D']}"), 404, "/problems/product-not-found")  # draft
        problem(await http.get(f"/v1/products/{uuid.uuid4()}"), 404, "/problems/product-not-found")
        problem(await http.get("/v1/products/not-a-uuid"), 422, "/problems/validation-error")


async def test_category_tree(stack: Stack, catalog: Catalog) -> None:
    async with stack.http() as http:
        response = await http.get("/v1/categories")
    assert response.status_code == 200
    roots = {c["slug"]: c for c in response.json()}
    assert {"clothing", "footwear", "home-kitchen", "electronics", "sports-outdoors"} <= set(roots)
    clothing = roots["clothing"]
    men = next(c for c in clothing["children"] if c["slug"] == "mens-clothing")
    assert {c["slug"] for c in men["children"]} == {"mens-t-shirts", "mens-jeans", "mens-jackets"}
    audio = next(c for c in roots["electronics"]["children"] if c["slug"] == "audio")
    assert [c["slug"] for c in audio["children"]] == ["headphones", "speakers"]
    positions = [c["position"] for c in clothing["children"]]
    assert positions == sorted(positions)


# -- reviews ---------------------------------------------------------------------------------------------
async def test_review_pages(stack: Stack, catalog: Catalog) -> None:
    demo_id = uuid.uuid5(DEMO_NAMESPACE, "product:DEMO-00001")
    async with stack.http() as http:
        detail = (await http.get(f"/v1/products/{demo_id}")).json()
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = (await http.get(f"/v1/products/{demo_id}/reviews", params=params)).json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        problem(
            await http.get(f"/v1/products/{demo_id}/reviews", params={"cursor": "bm9wZQ"}),
            422,
            "/problems/invalid-cursor",
        )
        problem(await http.get(f"/v1/products/{uuid.uuid4()}/reviews"), 404, "/problems/product-not-found")
    assert len(seen) == detail["rating_count"] >= 1
    assert len({r["id"] for r in seen}) == len(seen)
    assert [r["created_at"] for r in seen] == sorted((r["created_at"] for r in seen), reverse=True)
    assert all("user_id" not in r for r in seen)  # reviewers stay anonymous


async def review_rows(sessions: dict[str, SessionFactory], product_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with sessions["product"]() as s:
        rows = await s.execute(
            text("SELECT user_id, order_id, rating FROM reviews WHERE product_id = :p"), {"p": product_id}
        )
        return [tuple(r) for r in rows]


async def wait_confirmed(http: httpx.AsyncClient, headers: dict[str, str], order_id: str) -> None:
    deadline = time.monotonic() + 60
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await http.get(f"/v1/orders/{order_id}", headers=headers)
        if response.status_code == 200:
            body = response.json()
            if body["order"] and body["order"]["status"] == "confirmed":
                return
            if (body.get("saga") or {}).get("status") in ("failed", "cancelled"):
                break
        await asyncio.sleep(0.3)
    raise AssertionError(f"order {order_id} was not confirmed: {body}")


async def test_reviews_only_after_a_confirmed_order(
    stack: Stack, sessions: dict[str, SessionFactory], catalog: Catalog
) -> None:
    methods = await shipping_methods(sessions)
    shopper = await make_shopper(sessions, stack.settings)
    stranger = await make_shopper(sessions, stack.settings)
    variant = await stocked_variant(sessions, on_hand=5, price_amount=1999)
    url = f"/v1/products/{variant.product_id}/reviews"
    review = {"rating": 4, "title": "Solid", "body": "Well made."}
    async with stack.http() as http:
        problem(await http.post(url, json=review), 401, "/problems/not-authenticated")
        problem(
            await http.post(url, json=review, headers=shopper.headers), 403, "/problems/review-not-allowed"
        )
        assert await review_rows(sessions, variant.product_id) == []

        added = await http.post(
            "/v1/cart/items",
            json={"variant_id": str(variant.variant_id), "quantity": 1},
            headers=shopper.headers,
        )
        assert added.status_code == 200, added.text
        started = await http.post(
            "/v1/checkout",
            json={
                "shipping_address_id": str(shopper.address_id),
                "shipping_method_id": str(methods["US:standard"]),
                "payment_method_id": str(shopper.payment_method_id),
            },
            headers={**shopper.headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert started.status_code == 202, started.text
        order_id = started.json()["order_id"]
        await wait_confirmed(http, shopper.headers, order_id)

        problem(
            await http.post(url, json={**review, "user_id": str(stranger.user_id)}, headers=shopper.headers),
            422,
            "/problems/validation-error",
        )
        problem(
            await http.post(url, json={**review, "rating": 6}, headers=shopper.headers),
            422,
            "/problems/validation-error",
        )
        created = await http.post(url, json=review, headers=shopper.headers)
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["rating"], body["title"], body["verified_purchase"]) == (4, "Solid", True)

        problem(
            await http.post(url, json={"rating": 1}, headers=shopper.headers),
            409,
            "/problems/duplicate-review",
        )
        problem(
            await http.post(url, json=review, headers=stranger.headers), 403, "/problems/review-not-allowed"
        )
        problem(
            await http.post(f"/v1/products/{uuid.uuid4()}/reviews", json=review, headers=shopper.headers),
            404,
            "/problems/product-not-found",
        )

        listed = (await http.get(url)).json()
        assert [r["id"] for r in listed["items"]] == [body["id"]] and listed["next_cursor"] is None
        detail = (await http.get(f"/v1/products/{variant.product_id}")).json()
        assert (detail["rating_avg"], detail["rating_count"]) == (4.0, 1)
    assert await review_rows(sessions, variant.product_id) == [(shopper.user_id, uuid.UUID(order_id), 4)]


# -- rate limit ------------------------------------------------------------------------------------------
async def test_search_rate_limit(stack: Stack, catalog: Catalog) -> None:
    h = browser(stack)
    burst = stack.settings.api_search_burst
    async with stack.http() as http:
        responses = await asyncio.gather(
            *(
                http.get("/v1/products", params={"tag": catalog.tag, "limit": 1}, headers=h)
                for _ in range(2 * burst + 40)
            )
        )
        limited = [r for r in responses if r.status_code == 429]
        assert limited, "the burst was never limited"
        assert {r.status_code for r in responses} == {200, 429}
        assert sum(r.status_code == 200 for r in responses) >= burst
        for r in limited:
            problem(r, 429, "/problems/too-many-requests")
            assert int(r.headers["Retry-After"]) >= 1
        # another client has a bucket of its own
        assert (
            await http.get("/v1/products", params={"tag": catalog.tag}, headers=browser(stack))
        ).status_code == 200
        await asyncio.sleep(max(int(r.headers["Retry-After"]) for r in limited))
        assert (await http.get("/v1/products", params={"tag": catalog.tag}, headers=h)).status_code == 200


def test_token_bucket_refills_and_forgets_the_least_recent_clients() -> None:
    now = [100.0]
    bucket = TokenBucket(rate_per_s=2, burst=3, max_clients=2, clock=lambda: now[0])
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == pytest.approx(0.5)  # empty: one token back in 1/rate s
    now[0] += 0.5
    assert bucket.take("a") == 0.0 and bucket.take("a") > 0
    assert bucket.take("b") == 0.0  # a bucket per client
    now[0] += 10
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # refilled, never above the burst
    assert bucket.take("a") > 0
    bucket.take("c")  # a third client: "b", the least recently used, is forgotten
    assert bucket.take("b") == 0.0
    assert bucket.take("c") == 0.0 and bucket.take("c") == 0.0 and bucket.take("c") > 0  # "c" is kept
