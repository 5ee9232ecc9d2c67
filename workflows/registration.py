"""``registration``: a new account, started by ``POST /v1/auth/register`` with update-with-start.

    auth.create_user -> user.create_profile (same id; the seed's ``user.created``) -> welcome email

The ``user_created`` update answers as soon as the account and its profile exist (or the saga has
failed and compensated); the verification email is sent after that, retried until the mail server
takes it. A refused or failing profile step deletes the auth user again (``auth.delete_user``), so
no account is ever left without its profile.

The workflow id is ``registration-<sha256 of the normalized email>`` (``registration_workflow_id``):
while one registration of an email runs, a second one is refused at the start (id conflict policy
FAIL). A later attempt starts a new run, which the auth service refuses (``EmailAlreadyRegistered``).
The API hashes the password: only its argon2id hash travels through the workflow.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.auth import AuthActivities, CreateUserInput, CreateUserResult, DeleteUserInput
    from activities.notification import NotificationActivities, SendInput
    from activities.user import CreateProfileInput, DeleteProfileInput, UserActivities
    from core.temporal import CUSTOMER_ID
    from workflows.saga import (
        Resolution,
        Saga,
        SagaTimings,
        compensation_retry,
        failure_message,
        failure_type,
        forever_retry,
        set_step,
        step_retry,
    )

RegistrationState = Literal["creating", "created", "completed", "compensating", "failed", "rejected"]
# The update answers once the state is one of these (or the saga is parked).
SETTLED: tuple[RegistrationState, ...] = ("created", "completed", "failed", "rejected")


def registration_workflow_id(normalized_email: str) -> str:
    return f"registration-{hashlib.sha256(normalized_email.encode()).hexdigest()}"


class RegistrationInput(BaseModel):
    user_id: uuid.UUID  # chosen by the API (uuid4)
    email: str  # normalized
    first_name: str
    last_name: str
    password_hash: str = Field(repr=False)  # argon2id (services.auth.passwords.hash_password)
    verification_url: str  # the link, without the token: "<web>/verify-email?token="
    verification_ttl_hours: int = 48
    ip: str | None = None
    user_agent: str | None = None
    timings: SagaTimings = SagaTimings()


class RegistrationResult(BaseModel):
    """The ``user_created`` update's answer."""

    user_id: uuid.UUID
    email: str


class RegistrationStatus(BaseModel):
    user_id: uuid.UUID
    email: str
    status: RegistrationState
    step: str
    email_sent: bool
    failure_reason: str | None
    failure_type: str | None
    needs_attention: str | None
    log: list[str]


@workflow.defn(name="registration")
class RegistrationWorkflow:
    @workflow.init
    def __init__(self, inp: RegistrationInput) -> None:
        self.inp = inp
        self.status: RegistrationState = "creating"
        self.step = "start"
        self.email_sent = False
        self.failure_reason: str | None = None
        self.failure_type: str | None = None
        self.saga = Saga(inp.timings)

    @workflow.run
    async def run(self, inp: RegistrationInput) -> RegistrationStatus:
        workflow.upsert_search_attributes([CUSTOMER_ID.value_set(str(inp.user_id))])
        self._details()
        try:
            created = await self._create(inp)
        except ActivityError as exc:
            await self._fail(exc)
        else:
            self._set("created")
            await self._welcome(inp, created)
            self._set("completed")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.query_status()

    async def _create(self, inp: RegistrationInput) -> CreateUserResult:
        key = self._key()
        self.saga.add(
            "auth.delete_user",
            lambda: self._compensate(
                AuthActivities.delete_user,
                DeleteUserInput(idempotency_key=f"{key}:auth.delete_user", user_id=inp.user_id),
                "auth",
            ),
        )
        created = await self._step(
            "create user",
            "auth.delete_user",
            AuthActivities.create_user,
            CreateUserInput(
                idempotency_key=f"{key}:auth.create_user",
                user_id=inp.user_id,
                email=inp.email,
                password_hash=inp.password_hash,
                first_name=inp.first_name,
                last_name=inp.last_name,
                ip=inp.ip,
                user_agent=inp.user_agent,
                link_prefix=inp.verification_url,
            ),
            "auth",
        )
        self.saga.add(
            "user.delete_profile",
            lambda: self._compensate(
                UserActivities.delete_profile,
                DeleteProfileInput(idempotency_key=f"{key}:user.delete_profile", user_id=inp.user_id),
                "user",
            ),
        )
        await self._step(
            "create profile",
            "user.delete_profile",
            UserActivities.create_profile,
            CreateProfileInput(
                idempotency_key=f"{key}:user.create_profile",
                user_id=inp.user_id,
                email=inp.email,
                first_name=inp.first_name,
                last_name=inp.last_name,
            ),
            "user",
        )
        result: CreateUserResult = created
        return result

    async def _welcome(self, inp: RegistrationInput, created: CreateUserResult) -> None:
        """The verification email: retried until the mail server takes it; a permanent refusal is
        logged (the account exists either way). The link comes encrypted from the auth service and
        only the notification service decrypts it; users created before that got the raw token."""
        context: dict[str, Any] = {"first_name": inp.first_name, "expires_hours": inp.verification_ttl_hours}
        secrets: dict[str, str] = {}
        if created.verification_link_encrypted is not None:
            secrets["verification_url"] = created.verification_link_encrypted
        else:
            context["verification_url"] = inp.verification_url + str(created.verification_token)
        self.step = "send verification email"
        set_step(self.step)
        try:
            await workflow.execute_activity_method(
                NotificationActivities.send,
                SendInput(
                    idempotency_key=f"{self._key()}:notify:welcome_verify_email",
                    user_id=inp.user_id,
                    recipient=inp.email,
                    event_type="user.registered",
                    template_key="welcome_verify_email",
                    context=context,
                    secret_context=secrets,
                ),
                task_queue="notification",
                start_to_close_timeout=timedelta(seconds=inp.timings.activity_timeout_s),
                retry_policy=forever_retry(),
                summary="email: welcome and verify",
            )
            self.email_sent = True
            self.saga.log.append("done: send verification email")
        except ActivityError as exc:
            self.saga.log.append(f"verification email not sent: {failure_message(exc)}")
            workflow.logger.warning("verification email not sent: %s", failure_message(exc))

    async def _fail(self, exc: ActivityError) -> None:
        self.failure_reason = failure_message(exc)
        self.failure_type = failure_type(exc) or "RegistrationFailed"
        if not self.saga.compensations:  # the first step was refused (taken email): nothing to undo
            self._set("rejected")
            return
        self._set("compensating")
        await self.saga.compensate()
        self._set("failed")

    # -- plumbing ---------------------------------------------------------------------------------
    def _key(self) -> str:
        """Idempotency keys: the workflow id is reused by later attempts of the same email, so the
        user id (one per attempt) is part of every key; a reset of this run keeps the same keys."""
        return f"{workflow.info().workflow_id}:{self.inp.user_id}"

    async def _step(
        self,
        name: str,
        compensation: str,
        method: Callable[..., Awaitable[Any]],
        arg: BaseModel,
        queue: str,
    ) -> Any:
        self.step = name
        set_step(name)
        try:
            result = await workflow.execute_activity_method(
                method,
                arg,
                task_queue=queue,
                start_to_close_timeout=timedelta(seconds=self.inp.timings.activity_timeout_s),
                retry_policy=step_retry(self.inp.timings),
                summary=name,
            )
        except ActivityError as exc:
            if _refused(exc):  # a business refusal wrote nothing: its compensation has nothing to undo
                self.saga.discard(compensation)
            raise
        self.saga.log.append(f"done: {name}")
        return result

    async def _compensate(self, method: Callable[..., Awaitable[Any]], arg: BaseModel, queue: str) -> None:
        await workflow.execute_activity_method(
            method,
            arg,
            task_queue=queue,
            start_to_close_timeout=timedelta(seconds=self.inp.timings.activity_timeout_s),
            retry_policy=compensation_retry(self.inp.timings),
            summary=f"compensate: {queue}",
        )

    def _set(self, status: RegistrationState) -> None:
        self.status = status
        self._details()

    def _details(self) -> None:
        lines = [f"**Registration of user `{self.inp.user_id}`**: {self.status}"]
        if self.failure_reason:
            lines.append(f"\nReason: {self.failure_reason}")
        if self.saga.log:
            lines.append("\nSteps: " + ", ".join(self.saga.log[-12:]))
        workflow.set_current_details("\n".join(lines))

    # -- messages ---------------------------------------------------------------------------------
    @workflow.update
    async def user_created(self) -> RegistrationResult:
        """Answers when the account and its profile exist; fails with the saga's refusal otherwise."""
        await workflow.wait_condition(lambda: self.status in SETTLED or self.saga.parked is not None)
        if self.status in ("created", "completed"):
            return RegistrationResult(user_id=self.inp.user_id, email=self.inp.email)
        if self.saga.parked is not None:
            raise ApplicationError(
                "the registration could not be completed and is waiting for support",
                type="RegistrationFailed",
            )
        raise ApplicationError(
            self.failure_reason or "registration failed",
            {"step": self.step},
            type=self.failure_type or "RegistrationFailed",
        )

    @workflow.update
    def resolve(self, decision: Resolution) -> str:
        """Support's decision for a compensation that keeps failing (``retry`` or ``skip``)."""
        self.saga.resolve(decision)
        return "resolved"

    @workflow.query
    def query_status(self) -> RegistrationStatus:
        return RegistrationStatus(
            user_id=self.inp.user_id,
            email=self.inp.email,
            status=self.status,
            step=self.step,
            email_sent=self.email_sent,
            failure_reason=self.failure_reason,
            failure_type=self.failure_type,
            needs_attention=self.saga.parked,
            log=self.saga.log,
        )


def _refused(exc: ActivityError) -> bool:
    cause = exc.cause
    return isinstance(cause, ApplicationError) and cause.non_retryable
