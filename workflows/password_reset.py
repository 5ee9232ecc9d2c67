"""``password-reset``: a reset link for whoever owns an email, started by ``POST /v1/auth/password-reset``.

    auth.request_password_reset (a one-time token, or nothing for an unknown email)
    -> notification.send password_reset (the link) -> cool-down

The API answers 202 whatever happens here, so the response never says which emails have accounts.
The workflow id is ``password-reset-<sha256 of the normalized email>`` and the API starts it with
the id conflict policy USE_EXISTING: while a run (including its cool-down) is open, more requests
for the same email join it and send nothing - at most one reset mail per email per cool-down.
Setting the new password (``/password-reset/confirm``) is a single-service write in the API.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.auth import AuthActivities, RequestPasswordResetInput
    from activities.notification import NotificationActivities, SendInput
    from core.temporal import CUSTOMER_ID
    from workflows.saga import SagaTimings, failure_message, forever_retry, set_step

PasswordResetState = Literal["requested", "sent", "no_account", "not_sent"]


def password_reset_workflow_id(normalized_email: str) -> str:
    return f"password-reset-{hashlib.sha256(normalized_email.encode()).hexdigest()}"


class PasswordResetInput(BaseModel):
    request_id: uuid.UUID  # one per accepted request: part of the idempotency keys
    email: str  # normalized
    reset_url: str  # the link without the token: "<web>/reset-password?token="
    expires_minutes: int = 60
    cooldown_s: float = 60  # the run stays open this long after the mail: repeats join it
    ip: str | None = None
    user_agent: str | None = None
    timings: SagaTimings = SagaTimings()


class PasswordResetStatus(BaseModel):
    status: PasswordResetState
    user_id: uuid.UUID | None
    message: str | None


@workflow.defn(name="password-reset")
class PasswordResetWorkflow:
    def __init__(self) -> None:
        self.status: PasswordResetState = "requested"
        self.user_id: uuid.UUID | None = None
        self.message: str | None = None

    @workflow.run
    async def run(self, inp: PasswordResetInput) -> PasswordResetStatus:
        key = f"{workflow.info().workflow_id}:{inp.request_id}"
        set_step("issue reset token")
        issued = await workflow.execute_activity_method(
            AuthActivities.request_password_reset,
            RequestPasswordResetInput(
                idempotency_key=f"{key}:auth.request_password_reset",
                email=inp.email,
                ip=inp.ip,
                user_agent=inp.user_agent,
                link_prefix=inp.reset_url,
            ),
            task_queue="auth",
            start_to_close_timeout=timedelta(seconds=inp.timings.activity_timeout_s),
            retry_policy=forever_retry(),
            summary="issue a reset token",
        )
        if issued.user_id is None or (issued.token is None and issued.link_encrypted is None):
            self.status = "no_account"
        else:
            self.user_id = issued.user_id
            workflow.upsert_search_attributes([CUSTOMER_ID.value_set(str(issued.user_id))])
            set_step("send reset email")
            context: dict[str, Any] = {
                "first_name": issued.first_name or "there",
                "expires_minutes": inp.expires_minutes,
            }
            secrets: dict[str, str] = {}
            if issued.link_encrypted is not None:  # only the notification service decrypts it
                secrets["reset_url"] = issued.link_encrypted
            else:  # issued before the encrypted link (recorded histories)
                context["reset_url"] = inp.reset_url + str(issued.token)
            try:
                await workflow.execute_activity_method(
                    NotificationActivities.send,
                    SendInput(
                        idempotency_key=f"{key}:notify:password_reset",
                        user_id=issued.user_id,
                        recipient=inp.email,
                        event_type="user.password_reset_requested",
                        template_key="password_reset",
                        context=context,
                        secret_context=secrets,
                    ),
                    task_queue="notification",
                    start_to_close_timeout=timedelta(seconds=inp.timings.activity_timeout_s),
                    retry_policy=forever_retry(),
                    summary="email: password reset link",
                )
                self.status = "sent"
            except ActivityError as exc:  # a permanent SMTP refusal: the token simply expires unused
                self.status = "not_sent"
                self.message = failure_message(exc)
                workflow.logger.warning("password reset email not sent: %s", self.message)
        set_step(f"cool-down ({self.status})")
        workflow.set_current_details(f"Password reset: **{self.status}**; open for the cool-down.")
        await workflow.sleep(timedelta(seconds=inp.cooldown_s), summary="cool-down: repeats join this run")
        return self.query_status()

    @workflow.query
    def query_status(self) -> PasswordResetStatus:
        return PasswordResetStatus(status=self.status, user_id=self.user_id, message=self.message)
