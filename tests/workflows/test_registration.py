"""The registration saga end to end: over HTTP against the API with every worker process, the real
Temporal dev server, the databases and the SMTP sink. Covers the created account (auth user and
profile with the same id, then the verification mail), a second registration while the first still
runs and after it finished, a mail server that refuses for a while (retried, never lost), and the
compensation when the profile step is refused. Each scenario stores its history for replay."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from api.routes.auth import registration_input, start_registration
from core.db import SessionFactory
from services.auth import service as auth_service
from services.auth.errors import UserNotFound
from services.auth.passwords import hash_password
from services.user import service as user_service
from tests.conftest import Stack, record_history
from tests.probes import history_text, mails
from workflows.registration import RegistrationStatus, RegistrationWorkflow, registration_workflow_id

pytestmark = pytest.mark.timeout(300)
PASSWORD = "correct horse Battery 9"
# This module's requests come from a loopback address of its own: its logins never depend on failed
# logins other tests made from 127.0.0.1 (the auth service limits them per client address).
MODULE_ADDRESS = f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


def own(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.api_url, timeout=30, transport=httpx.AsyncHTTPTransport(local_address=MODULE_ADDRESS)
    )


def new_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


async def register(http: httpx.AsyncClient, email: str) -> httpx.Response:
    return await http.post(
        "/v1/auth/register",
        json={"email": email, "password": PASSWORD, "first_name": "Grace", "last_name": "Hopper"},
    )


async def finished(stack: Stack, email: str) -> RegistrationStatus:
    handle = stack.client.get_workflow_handle_for(RegistrationWorkflow.run, registration_workflow_id(email))
    return await asyncio.wait_for(handle.result(), 60)


async def test_registration_creates_user_and_profile_then_sends_the_mail(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    email = new_email("Saga")
    async with own(stack) as http:
        response = await register(http, email.upper())
    assert response.status_code == 201, response.text
    body = response.json()
    user_id = uuid.UUID(body["user_id"])
    assert body["email"] == email.lower() and body["status"] == "created"

    # the answer came once both rows existed, with the same id
    async with sessions["auth"]() as s:
        account = await auth_service.get_user(s, user_id)
    async with sessions["user"]() as s:
        profile = await user_service.get_profile(s, user_id)
    assert account.email == profile.email == email.lower()
    assert (account.first_name, profile.first_name, account.roles) == ("Grace", "Grace", ["customer"])

    status = await finished(stack, email.lower())
    assert status.status == "completed" and status.email_sent
    sent = await mails(stack, email.lower())
    assert len(sent) == 1 and sent[0]["subject"].startswith("Welcome to sagashop, Grace")
    async with own(stack) as http:
        progress = (await http.get(body["status_url"])).json()
    assert progress["status"] == "completed" and progress["verification_email_sent"] is True

    # only the argon2id hash travelled through the workflow, never the password
    recorded = await history_text(stack, registration_workflow_id(email.lower()))
    assert PASSWORD not in recorded and "$argon2id$" in recorded
    await record_history(stack.client, registration_workflow_id(email.lower()), "registration", "created")


async def test_registering_a_taken_email_after_the_first_saga_finished(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    email = new_email("taken")
    async with own(stack) as http:
        assert (await register(http, email)).status_code == 201
        await finished(stack, email)
        again = await register(http, email)
    assert again.status_code == 409 and again.json()["type"] == "/problems/email-already-registered"
    status = await finished(stack, email)  # the second run, refused by the auth service
    assert status.status == "rejected" and status.failure_type == "EmailAlreadyRegistered"
    recorded = await history_text(stack, registration_workflow_id(email))
    assert "auth.delete_user" not in recorded and "user.create_profile" not in recorded
    async with sessions["auth"]() as s:
        count = (
            await s.execute(text("SELECT count(*) FROM users WHERE email = :e"), {"e": email})
        ).scalar_one()
    assert count == 1
    assert len(await mails(stack, email)) == 1
    await record_history(stack.client, registration_workflow_id(email), "registration", "duplicate_email")


async def test_a_refusing_mail_server_delays_the_mail_but_never_loses_it(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    email = new_email("smtp")
    async with httpx.AsyncClient(base_url=stack.settings.mail_sink_url, timeout=10) as sink:
        (await sink.post("/_control/faults", json={"mode": "tempfail", "count": 1000})).raise_for_status()
        try:
            async with own(stack) as http:
                created = await register(http, email)
                assert created.status_code == 201, created.text  # the account does not wait for the mail
                # a second registration while the first saga still runs is refused at the start
                concurrent = await register(http, email)
                assert concurrent.status_code == 409
                assert concurrent.json()["type"] == "/problems/email-already-registered"
                progress = (await http.get(created.json()["status_url"])).json()
                assert progress["status"] == "created" and progress["verification_email_sent"] is False
        finally:
            await sink.delete("/_control/faults")
    status = await finished(stack, email)
    assert status.status == "completed" and status.email_sent
    assert len(await mails(stack, email)) == 1
    async with sessions["notification"]() as s:
        attempts = (
            await s.execute(
                text(
                    "SELECT l.status FROM notification_logs l JOIN notifications n ON n.id = l.notification_id "
                    "WHERE n.recipient = :e ORDER BY l.attempt"
                ),
                {"e": email},
            )
        ).all()
    statuses = [a[0] for a in attempts]
    assert statuses[-1] == "sent" and "tempfail" in statuses and statuses.count("sent") == 1


async def test_a_refused_profile_step_deletes_the_auth_user_again(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    """The profile step is refused (a profile with this id but another email exists): the saga
    compensates by deleting the auth user it created, and leaves the foreign profile alone."""
    email, squatter = new_email("comp"), new_email("squatter")
    user_id = uuid.uuid4()
    async with sessions["user"]() as s, s.begin():
        await user_service.create_profile(
            s, user_id=user_id, email=squatter, first_name="Sq", last_name="Uatter"
        )
    inp = registration_input(
        stack.settings,
        user_id=user_id,
        email=email,
        first_name="Grace",
        last_name="Hopper",
        password_hash=await hash_password(PASSWORD),
    )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await stack.client.execute_update_with_start_workflow(
            RegistrationWorkflow.user_created, start_workflow_operation=start_registration(inp)
        )
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == "ProfileAlreadyExists"

    status = await finished(stack, email)
    assert status.status == "failed" and status.failure_type == "ProfileAlreadyExists"
    assert status.log == ["done: create user", "compensated: auth.delete_user"]
    async with sessions["auth"]() as s:
        with pytest.raises(UserNotFound):
            await auth_service.get_user(s, user_id)
        deleted = (
            await s.execute(
                text(
                    "SELECT count(*) FROM security_audit_logs WHERE user_id = :u AND event_type = 'user_deleted'"
                ),
                {"u": user_id},
            )
        ).scalar_one()
    assert deleted == 1
    async with sessions["user"]() as s:
        profile = await user_service.get_profile(s, user_id)
    assert profile.email == squatter  # the refused step's compensation did not run
    recorded = await history_text(stack, registration_workflow_id(email))
    assert "user.delete_profile" not in recorded
    assert await mails(stack, email) == []
    await record_history(stack.client, registration_workflow_id(email), "registration", "profile_refused")

    # the email is free again: a new attempt goes through
    async with own(stack) as http:
        again = await register(http, email)
    assert again.status_code == 201, again.text


async def test_a_slow_saga_answers_202_with_a_status_url(
    stack: Stack, sessions: dict[str, SessionFactory]
) -> None:
    """The API waits at most ``api_workflow_wait_s`` for the account: with the user service's worker
    down, the profile step waits in its task queue, the answer is 202 + status URL, and the saga
    finishes once the worker is back."""
    email = new_email("slow")
    stack.supervisor.kill("worker-user")
    try:
        async with own(stack) as http:
            started = time.monotonic()
            response = await register(http, email)
            waited = time.monotonic() - started
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["status"] == "pending" and response.headers["Location"] == body["status_url"]
            assert waited < stack.settings.api_workflow_wait_s + 5
            progress = (await http.get(body["status_url"])).json()
            assert progress["status"] == "creating"
    finally:
        stack.supervisor.restart("worker-user")
    status = await finished(stack, email)
    assert status.status == "completed" and str(status.user_id) == body["user_id"]
    async with sessions["user"]() as s:
        profile = await user_service.get_profile(s, uuid.UUID(body["user_id"]))
    assert profile.email == email
    async with own(stack) as http:
        assert (await http.get(body["status_url"])).json()["status"] == "completed"
        assert (await http.get(f"/v1/auth/registrations/{uuid.uuid4()}")).status_code == 404
