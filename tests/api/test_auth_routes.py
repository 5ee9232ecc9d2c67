"""Accounts and sessions over HTTP against the running stack: registration refusals, email
verification with the token from the mail, login, failed-login limits per account and per client
address (429 with Retry-After, counters and audit rows), refresh rotation with reuse detection,
logout, and the password reset journey from the mail to the new password.

Requests come from loopback addresses of this module's own (127.x.y.z), and each failed-login test
from another one: the per-address login counters of other tests never move, nor do theirs here.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.service import RPCError

from core.db import SessionFactory
from services.auth import service as auth_service
from tests.conftest import Stack, record_history
from tests.probes import history_text, mail_with, mails
from workflows.password_reset import PasswordResetStatus, PasswordResetWorkflow, password_reset_workflow_id
from workflows.registration import registration_workflow_id

pytestmark = pytest.mark.timeout(300)
PROBLEM = "application/problem+json"
PASSWORD = "correct horse Battery 9"


def new_email(prefix: str = "auth") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def other_address() -> str:
    """A loopback address of this test's own (the per-address login counter is keyed by it)."""
    return f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


def from_address(stack: Stack, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.api_url, timeout=30, transport=httpx.AsyncHTTPTransport(local_address=ip)
    )


MODULE_ADDRESS = other_address()


def own(stack: Stack) -> httpx.AsyncClient:
    """This module's client: its logins never depend on failures others made from 127.0.0.1."""
    return from_address(stack, MODULE_ADDRESS)


async def stored_context(sessions: dict[str, SessionFactory], email: str, template: str) -> str:
    """The template variables notification_db kept for the mail (the link's place holds a marker)."""
    async with sessions["notification"]() as s:
        context = (
            await s.execute(
                text("SELECT context FROM notifications WHERE recipient = :r AND template_key = :t"),
                {"r": email.lower(), "t": template},
            )
        ).scalar_one()
    assert "[secret" in str(context), context
    return str(context)


def link_token(mail: dict[str, Any], path: str) -> str:
    found = re.search(rf"/{path}\?token=([A-Za-z0-9_\-]+)", mail["text"])
    assert found, mail["text"]
    return found.group(1)


async def register(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await http.post(
        "/v1/auth/register",
        json={"email": email, "password": password, "first_name": "Ada", "last_name": "Lovelace"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await http.post("/v1/auth/login", json={"email": email, "password": password})


async def user_exists(sessions: dict[str, SessionFactory], email: str) -> int:
    async with sessions["auth"]() as s:
        return int(
            (
                await s.execute(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email.lower()})
            ).scalar_one()
        )


async def token_state(sessions: dict[str, SessionFactory], refresh_token: str) -> tuple[str, str | None]:
    async with sessions["auth"]() as s:
        row = (
            await s.execute(
                text("SELECT status, revoked_reason FROM refresh_tokens WHERE token_hash = :h"),
                {"h": hashlib.sha256(refresh_token.encode()).hexdigest()},
            )
        ).one()
    return row[0], row[1]


async def audit_events(sessions: dict[str, SessionFactory], user_id: str) -> list[str]:
    async with sessions["auth"]() as s:
        rows = await s.execute(
            text("SELECT event_type FROM security_audit_logs WHERE user_id = :u ORDER BY created_at"),
            {"u": uuid.UUID(user_id)},
        )
        return [r[0] for r in rows]


# --- registration refusals and email verification -----------------------------------------------


async def test_duplicate_email_is_409_and_nothing_more_is_written(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    email = new_email("dup")
    async with own(stack) as http:
        first = await register(http, email)
        again = await http.post(
            "/v1/auth/register",
            json={"email": email.upper(), "password": PASSWORD, "first_name": "Eve", "last_name": "Copy"},
        )
    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == PROBLEM
    assert again.json()["type"] == "/problems/email-already-registered"
    assert await user_exists(sessions, email) == 1
    async with sessions["user"]() as s:
        profiles = (
            await s.execute(text("SELECT user_id FROM user_profiles WHERE email = :e"), {"e": email})
        ).all()
    assert [str(p[0]) for p in profiles] == [first["user_id"]]


@pytest.mark.parametrize(
    ("password", "problem"),
    [("Short1", "/problems/weak-password"), ("onlylowercaseletters", "/problems/weak-password")],
)
async def test_weak_password_is_422_and_nothing_is_written(
    stack: Stack, sessions: dict[str, SessionFactory], password: str, problem: str
) -> None:
    email = new_email("weak")
    async with own(stack) as http:
        response = await http.post(
            "/v1/auth/register",
            json={"email": email, "password": password, "first_name": "Ada", "last_name": "Lovelace"},
        )
    assert response.status_code == 422, response.text
    assert response.json()["type"] == problem
    assert password not in response.text
    assert await user_exists(sessions, email) == 0
    with pytest.raises(RPCError):  # no registration workflow was started
        await stack.client.get_workflow_handle(registration_workflow_id(email)).describe()


@pytest.mark.parametrize(
    "body",
    [
        {"role": "admin"},
        {"roles": ["admin"]},
        {"user_id": "00000000-0000-0000-0000-000000000001"},
        {"email_verified": True},
    ],
    ids=["role", "roles", "user_id", "email_verified"],
)
async def test_register_refuses_unknown_fields(
    stack: Stack, sessions: dict[str, SessionFactory], body: dict[str, Any]
) -> None:
    email = new_email("mass")
    async with own(stack) as http:
        response = await http.post(
            "/v1/auth/register",
            json={"email": email, "password": PASSWORD, "first_name": "A", "last_name": "B", **body},
        )
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "extra_forbidden"
    assert await user_exists(sessions, email) == 0


async def test_register_refuses_an_invalid_email(stack: Stack) -> None:
    async with own(stack) as http:
        response = await http.post(
            "/v1/auth/register",
            json={"email": "not-an-email", "password": PASSWORD, "first_name": "A", "last_name": "B"},
        )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "email"]


async def test_verify_email_with_the_token_from_the_mail(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    email = new_email("verify")
    async with own(stack) as http:
        registered = await register(http, email)
        mail = await mail_with(stack, email, "Welcome to sagashop")
        token = link_token(mail, "verify-email")
        assert mail["text"].count(f"{stack.settings.web_base_url}/verify-email?token={token}") == 1
        # the one-time link is in the mail only: not in the saga's history, not in the stored row
        assert token not in await history_text(stack, registration_workflow_id(email))
        assert token not in await stored_context(sessions, email, "welcome_verify_email")

        bad = await http.post("/v1/auth/verify-email", json={"token": "x" * 43})
        assert bad.status_code == 400 and bad.json()["type"] == "/problems/invalid-verification-token"

        verified = await http.post("/v1/auth/verify-email", json={"token": token})
        assert verified.status_code == 200, verified.text
        assert verified.json() == {"user_id": registered["user_id"], "email_verified": True}
        again = await http.post("/v1/auth/verify-email", json={"token": token})
        assert again.status_code == 400  # single use

        tokens = (await login(http, email)).json()
        me = await http.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["email_verified"] is True
    async with sessions["auth"]() as s:
        user = await auth_service.get_user(s, uuid.UUID(registered["user_id"]))
    assert user.email_verified_at is not None
    assert "email_verified" in await audit_events(sessions, registered["user_id"])


# --- login and its limits ------------------------------------------------------------------------


async def test_login_wrong_password_then_account_lockout(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    email = new_email("lock")
    async with own(stack) as http:
        user_id = (await register(http, email))["user_id"]
    async with from_address(stack, other_address()) as http:
        ok = await login(http, email)
        assert ok.status_code == 200, ok.text
        pair = ok.json()
        assert pair["token_type"] == "bearer" and pair["expires_in"] > 0
        assert pair["access_token"] and pair["refresh_token"]

        wrong = await login(http, email, "wrong password 1")
        assert wrong.status_code == 401 and wrong.json()["type"] == "/problems/invalid-credentials"
        unknown = await login(http, new_email("nobody"), "wrong password 1")
        assert unknown.status_code == 401 and unknown.json()["detail"] == wrong.json()["detail"]

        limit = auth_service.DEFAULT_POLICY.max_failed_per_account
        for _ in range(limit - 1):  # the limit-th consecutive failure locks the account
            assert (await login(http, email, "wrong password 1")).status_code == 401
        blocked = await login(http, email)  # even the right password
    assert blocked.status_code == 429, blocked.text
    assert blocked.headers["content-type"] == PROBLEM
    assert blocked.json()["type"] == "/problems/rate-limited"
    retry_after = int(blocked.headers["Retry-After"])
    assert 0 < retry_after <= int(auth_service.DEFAULT_POLICY.lockout.total_seconds())

    async with sessions["auth"]() as s:
        counter = (
            await s.execute(
                text("SELECT count FROM rate_limits WHERE scope = 'login_failed_account' AND key = :k"),
                {"k": email},
            )
        ).scalar_one()
        locked_until = (
            await s.execute(text("SELECT locked_until FROM users WHERE email = :e"), {"e": email})
        ).scalar_one()
    assert counter == limit and locked_until is not None
    events = await audit_events(sessions, user_id)
    assert events.count("login_failed") == limit
    assert "account_locked" in events and events[-1] == "login_blocked"


async def test_failed_logins_are_limited_per_client_address(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    email = new_email("perip")
    async with own(stack) as http:
        await register(http, email)
    address = other_address()
    limit = auth_service.DEFAULT_POLICY.max_failed_per_ip
    async with from_address(stack, address) as http:
        # many accounts, one failure each: no account reaches its own limit
        for _ in range(limit):
            assert (await login(http, new_email("spray"), "guessed Password 1")).status_code == 401
        blocked = await login(http, email)  # a valid account and password, from the same address
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    async with sessions["auth"]() as s:
        counter = (
            await s.execute(
                text("SELECT count FROM rate_limits WHERE scope = 'login_failed_ip' AND key = :k"),
                {"k": address},
            )
        ).scalar_one()
        blocked_rows = (
            await s.execute(
                text(
                    "SELECT details->>'scope' FROM security_audit_logs "
                    "WHERE event_type = 'login_blocked' AND ip = CAST(:ip AS inet)"
                ),
                {"ip": address},
            )
        ).all()
    assert counter == limit
    assert [r[0] for r in blocked_rows] == ["login_failed_ip"]
    async with from_address(stack, other_address()) as http:  # the account itself is fine elsewhere
        assert (await login(http, email)).status_code == 200


async def test_login_refuses_unknown_fields(stack: Stack) -> None:
    async with own(stack) as http:
        response = await http.post(
            "/v1/auth/login", json={"email": "a@example.com", "password": PASSWORD, "roles": ["admin"]}
        )
    assert response.status_code == 422


# --- sessions ------------------------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    email = new_email("refresh")
    async with own(stack) as http:
        user_id = (await register(http, email))["user_id"]
        first = (await login(http, email)).json()
        rotated = await http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()
        assert second["refresh_token"] != first["refresh_token"]
        me = await http.get("/v1/me", headers={"Authorization": f"Bearer {second['access_token']}"})
        assert me.status_code == 200

        reused = await http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert reused.status_code == 401 and reused.json()["type"] == "/problems/refresh-token-reused"
        # the thief's copy and the rightful successor are both dead now
        successor = await http.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert successor.status_code == 401 and successor.json()["type"] == "/problems/invalid-refresh-token"

        other_session = (await login(http, email)).json()  # another login is another family
        assert (
            await http.post("/v1/auth/refresh", json={"refresh_token": other_session["refresh_token"]})
        ).status_code == 200
    assert await token_state(sessions, first["refresh_token"]) == ("rotated", None)
    assert await token_state(sessions, second["refresh_token"]) == ("revoked", "reuse_detected")
    assert await token_state(sessions, other_session["refresh_token"]) == ("rotated", None)
    assert "refresh_token_reused" in await audit_events(sessions, user_id)


async def test_logout_ends_the_session(stack: Stack) -> None:
    email = new_email("logout")
    async with own(stack) as http:
        await register(http, email)
        pair = (await login(http, email)).json()
        out = await http.post("/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
        assert out.status_code == 204
        after = await http.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert after.status_code == 401
        assert (
            await http.post("/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
        ).status_code == 204


# --- password reset ------------------------------------------------------------------------------


async def _reset_finished(stack: Stack, email: str) -> PasswordResetStatus:
    handle = stack.client.get_workflow_handle_for(
        PasswordResetWorkflow.run, password_reset_workflow_id(email)
    )
    return await handle.result()


async def test_password_reset_end_to_end(stack: Stack, sessions: dict[str, SessionFactory]) -> None:
    email = new_email("reset")
    new_password = "a brand new Passphrase 7"
    async with own(stack) as http:
        user_id = (await register(http, email))["user_id"]
        old_session = (await login(http, email)).json()

        asked = await http.post("/v1/auth/password-reset", json={"email": email.upper()})
        assert asked.status_code == 202, asked.text
        again = await http.post("/v1/auth/password-reset", json={"email": email})  # joins the open run
        assert again.status_code == 202
        mail = await mail_with(stack, email, "Reset your sagashop password")
        token = link_token(mail, "reset-password")
        assert mail["text"].startswith("Hi Ada,"), mail["text"][:40]  # greeted by the account's name
        # whoever reads the Web UI or notification_db cannot reset this password
        assert token not in await history_text(stack, password_reset_workflow_id(email))
        assert token not in await stored_context(sessions, email, "password_reset")

        weak = await http.post(
            "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "weak"}
        )
        assert weak.status_code == 422 and weak.json()["type"] == "/problems/weak-password"

        done = await http.post(
            "/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password}
        )
        assert done.status_code == 204, done.text
        assert (await login(http, email)).status_code == 401
        assert (await login(http, email, new_password)).status_code == 200
        stale = await http.post("/v1/auth/refresh", json={"refresh_token": old_session["refresh_token"]})
        assert stale.status_code == 401  # every session from before the reset is gone
        twice = await http.post(
            "/v1/auth/password-reset/confirm", json={"token": token, "new_password": "yet another Pass 8"}
        )
        assert twice.status_code == 400 and twice.json()["type"] == "/problems/invalid-reset-token"

    status = await _reset_finished(stack, email)
    assert status.status == "sent" and str(status.user_id) == user_id
    resets = [m for m in await mails(stack, email) if "Reset your" in (m.get("subject") or "")]
    assert len(resets) == 1  # the second request inside the cool-down sent nothing
    assert await token_state(sessions, old_session["refresh_token"]) == ("revoked", "password_reset")
    events = await audit_events(sessions, user_id)
    assert "password_reset_requested" in events and "password_reset_completed" in events
    await record_history(
        stack.client, password_reset_workflow_id(email), "password_reset", "existing_account"
    )


async def test_password_reset_for_an_unknown_email_answers_the_same(stack: Stack) -> None:
    email = new_email("ghost")
    async with own(stack) as http:
        response = await http.post("/v1/auth/password-reset", json={"email": email})
    assert response.status_code == 202
    assert response.json() == {
        "status": "accepted",
        "detail": "if an account uses this email, a reset link is on its way",
    }
    status = await _reset_finished(stack, email)
    assert status.status == "no_account" and status.user_id is None
    assert await mails(stack, email) == []
    await record_history(stack.client, password_reset_workflow_id(email), "password_reset", "unknown_email")
