"""The shopper's own data over HTTP against the running stack: profile, addresses, payment methods
(tokenized at the PSP sandbox; only token, brand and last4 stored), preferences, notification
preferences and wishlist. Another user's objects are 404; unknown fields are 422 and write nothing.

Two shoppers, Alice and Bob, are registered through the API (the registration saga) and logged in.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.crypto import TokenCipher
from core.db import SessionFactory
from tests.conftest import Stack
from tests.factories import stocked_variant

pytestmark = pytest.mark.timeout(300)
PASSWORD = "correct horse Battery 9"
CARD = "4242424242424242"
MASTERCARD = "5555555555554444"
# This module's requests come from a loopback address of its own: its logins never depend on failed
# logins other tests made from 127.0.0.1 (the auth service limits them per client address).
MODULE_ADDRESS = f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


def own(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.api_url, timeout=30, transport=httpx.AsyncHTTPTransport(local_address=MODULE_ADDRESS)
    )


@dataclass
class Shopper:
    user_id: str
    email: str
    headers: dict[str, str]


async def _shopper(http: httpx.AsyncClient, name: str) -> Shopper:
    email = f"{name.lower()}-{uuid.uuid4().hex[:10]}@example.com"
    registered = await http.post(
        "/v1/auth/register",
        json={"email": email, "password": PASSWORD, "first_name": name, "last_name": "Tester"},
    )
    assert registered.status_code == 201, registered.text
    tokens = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return Shopper(
        registered.json()["user_id"], email, {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    )


@pytest.fixture(scope="module")
async def alice(stack: Stack) -> Shopper:
    async with own(stack) as http:
        return await _shopper(http, "Alice")


@pytest.fixture(scope="module")
async def bob(stack: Stack) -> Shopper:
    async with own(stack) as http:
        return await _shopper(http, "Bob")


ADDRESS: dict[str, Any] = {
    "type": "shipping",
    "name": "Alice Tester",
    "line1": "1 Main St",
    "city": "New York",
    "postal_code": "10001",
    "country": "us",
}


# --- profile -------------------------------------------------------------------------------------


async def test_me_needs_a_token(stack: Stack) -> None:
    async with own(stack) as http:
        response = await http.get("/v1/me")
        forged = await http.get("/v1/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401 and response.headers["content-type"] == "application/problem+json"
    assert forged.status_code == 401


async def test_profile_read_and_update(
    stack: Stack, sessions: dict[str, SessionFactory], alice: Shopper
) -> None:
    async with own(stack) as http:
        me = await http.get("/v1/me", headers=alice.headers)
        assert me.status_code == 200, me.text
        body = me.json()
        assert body["user_id"] == alice.user_id and body["email"] == alice.email
        assert body["first_name"] == "Alice" and body["roles"] == ["customer"]
        assert body["email_verified"] is False

        changed = await http.patch(
            "/v1/me",
            headers=alice.headers,
            json={"first_name": "Alicia", "phone": "+1 555 0100", "locale": "en-US"},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["first_name"] == "Alicia" and changed.json()["last_name"] == "Tester"

        for smuggled in (
            {"role": "admin"},
            {"roles": ["admin"]},
            {"user_id": str(uuid.uuid4())},
            {"email": "x@y.z"},
        ):
            refused = await http.patch(
                "/v1/me", headers=alice.headers, json={"last_name": "Hacker", **smuggled}
            )
            assert refused.status_code == 422, smuggled
            assert refused.json()["errors"][0]["type"] == "extra_forbidden"
        null_name = await http.patch("/v1/me", headers=alice.headers, json={"first_name": None})
        assert null_name.status_code == 422
        after = (await http.get("/v1/me", headers=alice.headers)).json()
    assert after["last_name"] == "Tester" and after["roles"] == ["customer"]
    async with sessions["user"]() as s:
        row = (
            await s.execute(
                text("SELECT first_name, last_name, phone FROM user_profiles WHERE user_id = :u"),
                {"u": uuid.UUID(alice.user_id)},
            )
        ).one()
    assert tuple(row) == ("Alicia", "Tester", "+1 555 0100")
    async with sessions["auth"]() as s:
        roles = (
            await s.execute(
                text(
                    "SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = :u"
                ),
                {"u": uuid.UUID(alice.user_id)},
            )
        ).all()
    assert [r[0] for r in roles] == ["customer"]


# --- addresses -----------------------------------------------------------------------------------


async def test_address_book_and_another_users_address_is_404(
    stack: Stack, sessions: dict[str, SessionFactory], alice: Shopper, bob: Shopper
) -> None:
    async with own(stack) as http:
        first = await http.post("/v1/me/addresses", headers=alice.headers, json=ADDRESS)
        assert first.status_code == 201, first.text
        home = first.json()
        assert home["is_default"] is True and home["country"] == "US"
        assert first.headers["Location"] == f"/v1/me/addresses/{home['id']}"
        second = await http.post(
            "/v1/me/addresses", headers=alice.headers, json={**ADDRESS, "line1": "2 Side St"}
        )
        work = second.json()
        assert work["is_default"] is False

        moved = await http.patch(
            f"/v1/me/addresses/{work['id']}",
            headers=alice.headers,
            json={"is_default": True, "line2": "Floor 3"},
        )
        assert (
            moved.status_code == 200
            and moved.json()["is_default"] is True
            and moved.json()["line2"] == "Floor 3"
        )
        listed = await http.get("/v1/me/addresses", headers=alice.headers, params={"type": "shipping"})
        defaults = {a["id"]: a["is_default"] for a in listed.json()}
        assert defaults[home["id"]] is False and defaults[work["id"]] is True
        assert (
            await http.get("/v1/me/addresses", headers=alice.headers, params={"type": "billing"})
        ).json() == []

        for smuggled in ({"user_id": bob.user_id}, {"id": str(uuid.uuid4())}):
            refused = await http.post("/v1/me/addresses", headers=alice.headers, json={**ADDRESS, **smuggled})
            assert refused.status_code == 422
        assert (
            await http.patch(
                f"/v1/me/addresses/{home['id']}", headers=alice.headers, json={"type": "billing"}
            )
        ).status_code == 422
        invalid = await http.post(
            "/v1/me/addresses", headers=alice.headers, json={**ADDRESS, "country": "USA"}
        )
        assert invalid.status_code == 422

        # Bob sees nothing of Alice's: 404 exactly like an unknown id
        path = f"/v1/me/addresses/{home['id']}"
        assert (await http.get(path, headers=bob.headers)).status_code == 404
        assert (await http.patch(path, headers=bob.headers, json={"city": "Gotham"})).status_code == 404
        assert (await http.delete(path, headers=bob.headers)).status_code == 404
        assert (await http.get("/v1/me/addresses", headers=bob.headers)).json() == []
        unknown = await http.get(f"/v1/me/addresses/{uuid.uuid4()}", headers=bob.headers)
        assert unknown.status_code == 404 and unknown.json()["type"] == "/problems/address-not-found"

        assert (await http.delete(f"/v1/me/addresses/{work['id']}", headers=alice.headers)).status_code == 204
        assert (await http.get(f"/v1/me/addresses/{work['id']}", headers=alice.headers)).status_code == 404
        promoted = (await http.get(path, headers=alice.headers)).json()
    assert promoted["is_default"] is True and promoted["city"] == "New York"
    async with sessions["user"]() as s:
        count = (
            await s.execute(
                text("SELECT count(*) FROM addresses WHERE user_id = :u"), {"u": uuid.UUID(alice.user_id)}
            )
        ).scalar_one()
    assert count == 1


# --- payment methods -----------------------------------------------------------------------------


async def _payment_rows(sessions: dict[str, SessionFactory], user_id: str) -> list[dict[str, Any]]:
    async with sessions["user"]() as s:
        rows = await s.execute(
            text("SELECT * FROM payment_methods WHERE user_id = :u ORDER BY created_at"),
            {"u": uuid.UUID(user_id)},
        )
        return [dict(r._mapping) for r in rows]


async def test_payment_methods_store_only_the_psp_token_brand_and_last4(
    stack: Stack, sessions: dict[str, SessionFactory], alice: Shopper, bob: Shopper
) -> None:
    card = {"number": CARD, "exp_month": 12, "exp_year": 2031, "cvc": "123"}
    async with own(stack) as http:
        added = await http.post("/v1/me/payment-methods", headers=alice.headers, json=card)
        assert added.status_code == 201, added.text
        visa = added.json()
        assert (visa["brand"], visa["last4"], visa["is_default"]) == ("visa", "4242", True)
        assert CARD not in added.text and "token" not in added.text

        master = (
            await http.post(
                "/v1/me/payment-methods",
                headers=alice.headers,
                json={"number": "5555 5555 5555 4444", "exp_month": 1, "exp_year": 2032, "cvc": "999"},
            )
        ).json()
        assert (master["brand"], master["last4"], master["is_default"]) == ("mastercard", "4444", False)

        # refusals write nothing
        luhn = await http.post(
            "/v1/me/payment-methods", headers=alice.headers, json={**card, "number": "4242424242424241"}
        )
        assert luhn.status_code == 422 and luhn.json()["type"] == "/problems/invalid-card"
        expired = await http.post(
            "/v1/me/payment-methods", headers=alice.headers, json={**card, "exp_year": 2020}
        )
        assert expired.status_code == 422
        letters = await http.post(
            "/v1/me/payment-methods", headers=alice.headers, json={**card, "number": "4242abcd42424242"}
        )
        assert letters.status_code == 422 and "4242abcd42424242" not in letters.text
        for smuggled in ({"last4": "0000"}, {"brand": "amex"}, {"psp_token": "tok_x"}):
            assert (
                await http.post("/v1/me/payment-methods", headers=alice.headers, json={**card, **smuggled})
            ).status_code == 422

        listed = (await http.get("/v1/me/payment-methods", headers=alice.headers)).json()
        assert [m["last4"] for m in listed] and {m["id"] for m in listed} == {visa["id"], master["id"]}
        assert all(
            set(m) == {"id", "brand", "last4", "exp_month", "exp_year", "is_default", "created_at"}
            for m in listed
        )

        # Bob can neither see, use nor delete Alice's cards
        assert (await http.get("/v1/me/payment-methods", headers=bob.headers)).json() == []
        other = f"/v1/me/payment-methods/{visa['id']}"
        assert (await http.post(f"{other}/default", headers=bob.headers)).status_code == 404
        assert (await http.delete(other, headers=bob.headers)).status_code == 404

        made_default = await http.post(
            f"/v1/me/payment-methods/{master['id']}/default", headers=alice.headers
        )
        assert made_default.status_code == 200 and made_default.json()["is_default"] is True
        assert (
            await http.delete(f"/v1/me/payment-methods/{master['id']}", headers=alice.headers)
        ).status_code == 204
        remaining = (await http.get("/v1/me/payment-methods", headers=alice.headers)).json()
    assert [(m["id"], m["is_default"]) for m in remaining] == [(visa["id"], True)]

    rows = await _payment_rows(sessions, alice.user_id)
    assert len(rows) == 1
    row = rows[0]
    assert (row["brand"], row["last4"]) == ("visa", "4242")
    stored = " ".join(str(v) for v in row.values())
    assert CARD not in stored and MASTERCARD not in stored and "123" != row["last4"]
    token = TokenCipher.from_settings(stack.settings).decrypt(row["psp_token_encrypted"])
    assert token.startswith("tok_") and token not in row["psp_token_encrypted"]
    api_log = (stack.settings.log_dir / "api.log").read_text(errors="replace")
    assert CARD not in api_log and "5555555555554444" not in api_log


# --- preferences ---------------------------------------------------------------------------------


async def test_preferences(stack: Stack, sessions: dict[str, SessionFactory], alice: Shopper) -> None:
    async with own(stack) as http:
        initial = await http.get("/v1/me/preferences", headers=alice.headers)
        assert initial.status_code == 200 and initial.json()["language"] == "en"
        changed = await http.patch(
            "/v1/me/preferences",
            headers=alice.headers,
            json={"language": "fr", "currency": "eur", "extras": {"size": "M"}},
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["language"], changed.json()["currency"]) == ("fr", "EUR")
        assert (
            await http.patch("/v1/me/preferences", headers=alice.headers, json={"marketing_opt_in": None})
        ).status_code == 422
        assert (
            await http.patch("/v1/me/preferences", headers=alice.headers, json={"user_id": alice.user_id})
        ).status_code == 422
        again = (await http.get("/v1/me/preferences", headers=alice.headers)).json()
    assert again["extras"] == {"size": "M"} and again["marketing_opt_in"] is False
    async with sessions["user"]() as s:
        row = (
            await s.execute(
                text("SELECT language, currency FROM user_preferences WHERE user_id = :u"),
                {"u": uuid.UUID(alice.user_id)},
            )
        ).one()
    assert tuple(row) == ("fr", "EUR")


async def test_notification_preferences(
    stack: Stack, sessions: dict[str, SessionFactory], bob: Shopper
) -> None:
    async with own(stack) as http:
        initial = (await http.get("/v1/me/notification-preferences", headers=bob.headers)).json()
        assert {p["category"]: (p["enabled"], p["editable"]) for p in initial} == {
            "security": (True, False),
            "transactional": (True, True),
            "order_updates": (True, True),
            "marketing": (False, True),
        }
        changed = await http.patch(
            "/v1/me/notification-preferences",
            headers=bob.headers,
            json={
                "preferences": [
                    {"category": "marketing", "enabled": True},
                    {"category": "order_updates", "enabled": False},
                ]
            },
        )
        assert changed.status_code == 200, changed.text
        assert {p["category"]: p["enabled"] for p in changed.json()}["marketing"] is True
        security = await http.patch(
            "/v1/me/notification-preferences",
            headers=bob.headers,
            json={"preferences": [{"category": "security", "enabled": False}]},
        )
        assert security.status_code == 422
        assert (
            await http.patch("/v1/me/notification-preferences", headers=bob.headers, json={"preferences": []})
        ).status_code == 422
    async with sessions["notification"]() as s:
        rows = (
            await s.execute(
                text("SELECT category, enabled FROM notification_preferences WHERE user_id = :u"),
                {"u": uuid.UUID(bob.user_id)},
            )
        ).all()
    assert dict((r[0], r[1]) for r in rows) == {"marketing": True, "order_updates": False}


# --- wishlist ------------------------------------------------------------------------------------


async def test_wishlist_with_cursor_pages(
    stack: Stack, sessions: dict[str, SessionFactory], bob: Shopper
) -> None:
    products = [str((await stocked_variant(sessions, on_hand=1)).product_id) for _ in range(3)]
    async with own(stack) as http:
        added = []
        for product_id in products:
            response = await http.post(
                "/v1/me/wishlist", headers=bob.headers, json={"product_id": product_id}
            )
            assert response.status_code == 201, response.text
            added.append(response.json())
        again = await http.post("/v1/me/wishlist", headers=bob.headers, json={"product_id": products[0]})
        assert again.status_code == 201 and again.json()["id"] == added[0]["id"]
        unknown = await http.post(
            "/v1/me/wishlist", headers=bob.headers, json={"product_id": str(uuid.uuid4())}
        )
        assert unknown.status_code == 404

        page1 = (await http.get("/v1/me/wishlist", headers=bob.headers, params={"limit": 2})).json()
        assert [i["product_id"] for i in page1["items"]] == [products[2], products[1]]
        assert page1["next_cursor"]
        page2 = (
            await http.get(
                "/v1/me/wishlist", headers=bob.headers, params={"limit": 2, "cursor": page1["next_cursor"]}
            )
        ).json()
        assert [i["product_id"] for i in page2["items"]] == [products[0]] and page2["next_cursor"] is None
        bad = await http.get("/v1/me/wishlist", headers=bob.headers, params={"cursor": "garbage!"})
        assert bad.status_code == 422

        assert (await http.delete(f"/v1/me/wishlist/{products[1]}", headers=bob.headers)).status_code == 204
        assert (await http.delete(f"/v1/me/wishlist/{products[1]}", headers=bob.headers)).status_code == 404
        remaining = (await http.get("/v1/me/wishlist", headers=bob.headers)).json()
    assert [i["product_id"] for i in remaining["items"]] == [products[2], products[0]]
    async with sessions["user"]() as s:
        count = (
            await s.execute(
                text("SELECT count(*) FROM wishlist_items WHERE user_id = :u"), {"u": uuid.UUID(bob.user_id)}
            )
        ).scalar_one()
    assert count == 2


async def test_nul_characters_are_refused_before_the_database(stack: Stack, bob: Shopper) -> None:
    """PostgreSQL text and JSONB cannot hold NUL: such input is a 422, never a server error."""
    async with own(stack) as http:
        for method, path, body in [
            ("PATCH", "/v1/me", {"first_name": "Bo\u0000b"}),
            ("POST", "/v1/me/addresses", {**ADDRESS, "line1": "1 Main\u0000St"}),
            ("PATCH", "/v1/me/preferences", {"extras": {"note": "a\u0000b"}}),
        ]:
            response = await http.request(method, path, json=body, headers=bob.headers)
            assert response.status_code == 422, (path, response.text)
        register = await http.post(
            "/v1/auth/register",
            json={
                "email": f"nul-{uuid.uuid4().hex[:8]}@example.com",
                "password": PASSWORD,
                "first_name": "A\u0000",
                "last_name": "B",
            },
        )
        login = await http.post("/v1/auth/login", json={"email": "a\u0000@example.com", "password": PASSWORD})
    assert register.status_code == 422 and login.status_code == 422
