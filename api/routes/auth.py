"""Accounts and sessions: register, verify the email, log in, refresh, log out, reset the password.

``POST /v1/auth/register`` spans two services (auth user, user profile) and a mail, so it runs the
``registration`` saga: update-with-start on ``registration-<sha256(email)>``. The password is hashed
here (argon2id) so the raw password never enters a workflow history; the answer comes once the user
exists (201), or 202 with a status URL when that takes longer than the API waits. A second
registration of an email is a 409 ``EmailAlreadyRegistered``: refused at the start while the first
one runs (id conflict policy FAIL), by the auth service afterwards.

``POST /v1/auth/password-reset`` starts the ``password-reset`` workflow and always answers 202 (no
account enumeration). Login, refresh, logout, email verification and the reset confirmation are
single-service writes on auth_db. Failed logins are counted per account and per client address by
the auth service (``rate_limits``, audit log); beyond the limit the answer is 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.deps import SessionsDep, SettingsDep, TemporalDep
from api.problems import problem_responses
from core.errors import BusinessError, NotFound
from core.registry import SAGAS_TASK_QUEUE
from core.settings import Settings
from core.temporal import CUSTOMER_ID
from services.auth import passwords
from services.auth import service as auth_service
from services.auth.errors import EmailAlreadyRegistered, InvalidEmail
from services.auth.schemas import TokenPair
from services.auth.tokens import TokenIssuer
from workflows.password_reset import PasswordResetInput, PasswordResetWorkflow, password_reset_workflow_id
from workflows.registration import (
    RegistrationInput,
    RegistrationState,
    RegistrationStatus,
    RegistrationWorkflow,
    registration_workflow_id,
)
from workflows.saga import SagaTimings

router = APIRouter(prefix="/v1/auth", tags=["auth"])

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Password = Annotated[str, Field(min_length=1, max_length=passwords.MAX_LENGTH, repr=False)]
OpaqueToken = Annotated[str, Field(min_length=16, max_length=128, repr=False)]


# --- models ------------------------------------------------------------------------------------


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class NulFree(BaseModel):
    """A request body without unknown fields and without NUL characters anywhere (PostgreSQL text and
    JSONB cannot hold them: refused as 422 here rather than failing in the database)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if _has_nul(data):
            raise ValueError("text must not contain NUL (\\u0000) characters")
        return data


class RegisterRequest(NulFree):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "correct horse battery staple",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                }
            ]
        },
    )

    email: EmailStr = Field(max_length=320)
    password: Password = Field(
        description=f"at least {passwords.MIN_LENGTH} characters mixing two kinds (letters, digits, symbols)"
    )
    first_name: Name
    last_name: Name


class Registration(BaseModel):
    user_id: uuid.UUID
    email: str
    status: Literal["created", "pending"] = Field(
        description="created: the account exists (201); pending: still being created (202)"
    )
    status_url: str


class RegistrationProgress(BaseModel):
    user_id: uuid.UUID
    status: RegistrationState
    verification_email_sent: bool
    failure_type: str | None
    failure_reason: str | None


class VerifyEmailRequest(NulFree):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"token": "Qm9vb3RzdHJhcC10b2tlbi1mcm9tLXRoZS1tYWls"}]},
    )
    token: OpaqueToken


class EmailVerified(BaseModel):
    user_id: uuid.UUID
    email_verified: bool = True


class LoginRequest(NulFree):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"email": "ada@example.com", "password": "correct horse battery staple"}]
        },
    )
    email: str = Field(min_length=3, max_length=320)
    password: Password


class RefreshRequest(NulFree):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"refresh_token": "bXktcmVmcmVzaC10b2tlbi1mcm9tLWxvZ2lu"}]},
    )
    refresh_token: OpaqueToken


class PasswordResetRequest(NulFree):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"email": "ada@example.com"}]})
    # A plain string, not format "email": the answer is 202 for any text (no account can use an address
    # the registration would refuse, such as one on a special-use domain), so nothing tells them apart.
    email: str = Field(min_length=1, max_length=320, description="the account's email address")


class PasswordResetAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: str = "if an account uses this email, a reset link is on its way"


class PasswordResetConfirm(NulFree):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"token": "cmVzZXQtdG9rZW4tZnJvbS10aGUtbWFpbA", "new_password": "a new Passphrase 2"}
            ]
        },
    )
    token: OpaqueToken
    new_password: Password


class RegistrationFailed(BusinessError):
    """The registration saga could not create the account (and undid what it had done)."""

    status = 503
    title = "Registration could not be completed"


class RegistrationUnavailable(BusinessError):
    status = 503
    title = "Registration is not available right now"


class PasswordResetUnavailable(BusinessError):
    status = 503
    title = "Password reset is not available right now"


# --- helpers -----------------------------------------------------------------------------------


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def user_agent(request: Request) -> str | None:
    return request.headers.get("user-agent")


def registration_input(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    email: str,
    first_name: str,
    last_name: str,
    password_hash: str,
    ip: str | None = None,
    agent: str | None = None,
) -> RegistrationInput:
    ttl = auth_service.DEFAULT_POLICY.verification_ttl
    return RegistrationInput(
        user_id=user_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        password_hash=password_hash,
        verification_url=f"{settings.web_base_url}/verify-email?token=",
        verification_ttl_hours=int(ttl.total_seconds() // 3600),
        ip=ip,
        user_agent=agent[:1024] if agent else None,
        timings=SagaTimings.from_settings(settings),
    )


def start_registration(
    inp: RegistrationInput,
) -> WithStartWorkflowOperation[RegistrationWorkflow, RegistrationStatus]:
    return WithStartWorkflowOperation(
        RegistrationWorkflow.run,
        inp,
        id=registration_workflow_id(inp.email),
        task_queue=SAGAS_TASK_QUEUE,
        # A registration of this email still running: refused (409). A finished one: a new run,
        # which the auth service refuses if the email is taken.
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, str(inp.user_id))]),
        static_summary=f"registration of user {inp.user_id}",
    )


def _refusal(exc: WorkflowUpdateFailedError) -> BusinessError:
    cause = exc.cause
    if not isinstance(cause, ApplicationError):
        return RegistrationFailed(str(exc))
    if cause.type == "EmailAlreadyRegistered":
        return EmailAlreadyRegistered(cause.message)
    if cause.type == "InvalidEmail":
        return InvalidEmail(cause.message)
    return RegistrationFailed(cause.message, reason=cause.type)


async def _is_ours(client: Client, workflow_id: str, user_id: uuid.UUID) -> bool:
    """Did the start reach Temporal? (after a timeout: the run with this id is this request's)"""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return False
    return description.typed_search_attributes.get(CUSTOMER_ID) == str(user_id)


# --- routes ------------------------------------------------------------------------------------


@router.post(
    "/register",
    status_code=201,
    response_model=Registration,
    summary="Create an account",
    description="Runs the registration saga (auth user, profile, verification email). Answers 201 once "
    "the account exists - the verification email follows - or 202 with `status_url` when that takes "
    "longer than the API waits. A taken email is 409 `EmailAlreadyRegistered`; a weak password is 422 "
    "and nothing is written.",
    responses={**problem_responses(409, 422, 503), 202: {"model": Registration}},
)
async def register(
    body: RegisterRequest, request: Request, response: Response, settings: SettingsDep, client: TemporalDep
) -> Registration:
    email = auth_service.validated_email(body.email)
    password_hash = await passwords.hash_password(body.password)  # WeakPassword (422) before any write
    user_id = uuid.uuid4()
    inp = registration_input(
        settings,
        user_id=user_id,
        email=email,
        first_name=body.first_name,
        last_name=body.last_name,
        password_hash=password_hash,
        ip=client_ip(request),
        agent=user_agent(request),
    )
    status_url = f"/v1/auth/registrations/{user_id}"
    try:
        async with asyncio.timeout(settings.api_workflow_wait_s):
            update = await client.start_update_with_start_workflow(
                RegistrationWorkflow.user_created,
                start_workflow_operation=start_registration(inp),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
            created = await update.result()
    except WorkflowAlreadyStartedError:
        raise EmailAlreadyRegistered(f"{email} is already registered") from None
    except WorkflowUpdateFailedError as exc:
        raise _refusal(exc) from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        if not await _is_ours(client, registration_workflow_id(email), user_id):
            raise RegistrationUnavailable("the registration could not be started; try again") from None
        response.status_code = 202
        response.headers["Location"] = status_url
        return Registration(user_id=user_id, email=email, status="pending", status_url=status_url)
    response.headers["Location"] = status_url
    return Registration(user_id=created.user_id, email=created.email, status="created", status_url=status_url)


@router.get(
    "/registrations/{user_id}",
    response_model=RegistrationProgress,
    summary="Progress of a registration (the status URL of a 202)",
    responses=problem_responses(404, 503),
)
async def registration_progress(user_id: uuid.UUID, client: TemporalDep) -> RegistrationProgress:
    query = f"WorkflowType = 'registration' AND CustomerId = '{user_id}'"
    async for execution in client.list_workflows(query, limit=1):
        try:
            async with asyncio.timeout(3):
                state = await client.get_workflow_handle(execution.id, run_id=execution.run_id).query(
                    RegistrationWorkflow.query_status
                )
        except (RPCError, TimeoutError):
            raise RegistrationUnavailable("the registration's status cannot be read right now") from None
        return RegistrationProgress(
            user_id=state.user_id,
            status=state.status,
            verification_email_sent=state.email_sent,
            failure_type=state.failure_type,
            failure_reason=state.failure_reason,
        )
    raise NotFound(f"no registration {user_id}")


@router.post(
    "/verify-email",
    response_model=EmailVerified,
    summary="Confirm the email address with the token from the welcome email",
    responses=problem_responses(400, 422),
)
async def verify_email(body: VerifyEmailRequest, request: Request, sessions: SessionsDep) -> EmailVerified:
    async with sessions["auth"]() as s, s.begin():
        user_id = await auth_service.verify_email(
            s, body.token, ip=client_ip(request), user_agent=user_agent(request)
        )
    return EmailVerified(user_id=user_id)


@router.post(
    "/login",
    response_model=TokenPair,
    summary="Log in: an access token and a refresh token",
    description="Failed logins are limited per account and per client address: beyond the limit, or "
    "while the account is locked, the answer is 429 with `Retry-After`.",
    responses=problem_responses(401, 422, 429),
)
async def login(
    body: LoginRequest, request: Request, sessions: SessionsDep, settings: SettingsDep
) -> TokenPair:
    issuer = TokenIssuer.from_settings(settings)
    async with sessions["auth"]() as s, s.begin():
        outcome = await auth_service.login(
            s,
            issuer,
            email=body.email,
            password=body.password,
            ip=client_ip(request),
            user_agent=user_agent(request),
        )
    return outcome.unwrap()  # after the commit: a refusal keeps its counters and audit rows


@router.post(
    "/refresh",
    response_model=TokenPair,
    summary="Exchange a refresh token for a new pair (rotation)",
    description="Each refresh token works once. Presenting a used one again revokes every token of "
    "its session (401 `RefreshTokenReused`).",
    responses=problem_responses(401, 422),
)
async def refresh(
    body: RefreshRequest, request: Request, sessions: SessionsDep, settings: SettingsDep
) -> TokenPair:
    issuer = TokenIssuer.from_settings(settings)
    async with sessions["auth"]() as s, s.begin():
        outcome = await auth_service.refresh(
            s, issuer, refresh_token=body.refresh_token, ip=client_ip(request), user_agent=user_agent(request)
        )
    return outcome.unwrap()  # after the commit: a reuse keeps its family revocation


@router.post(
    "/logout",
    status_code=204,
    summary="End the session of a refresh token",
    description="Revokes the refresh token and every token rotated from the same login. Always 204.",
    responses=problem_responses(422),
)
async def logout(body: RefreshRequest, request: Request, sessions: SessionsDep) -> Response:
    async with sessions["auth"]() as s, s.begin():
        await auth_service.logout(
            s, refresh_token=body.refresh_token, ip=client_ip(request), user_agent=user_agent(request)
        )
    return Response(status_code=204)


@router.post(
    "/password-reset",
    status_code=202,
    response_model=PasswordResetAccepted,
    summary="Ask for a password reset link by email",
    description="Always 202, whether or not an account uses the email. At most one mail per email per "
    "cool-down period.",
    responses=problem_responses(422, 503),
)
async def request_password_reset(
    body: PasswordResetRequest, request: Request, settings: SettingsDep, client: TemporalDep
) -> PasswordResetAccepted:
    try:
        email = auth_service.validated_email(body.email)
    except InvalidEmail:  # registration refuses such an address: no account uses it, nothing to send
        return PasswordResetAccepted()
    ttl = auth_service.DEFAULT_POLICY.reset_ttl
    agent = user_agent(request)
    try:
        async with asyncio.timeout(settings.api_workflow_wait_s):
            await client.start_workflow(
                PasswordResetWorkflow.run,
                PasswordResetInput(
                    request_id=uuid.uuid4(),
                    email=email,
                    reset_url=f"{settings.web_base_url}/reset-password?token=",
                    expires_minutes=int(ttl.total_seconds() // 60),
                    cooldown_s=settings.password_reset_cooldown_s,
                    ip=client_ip(request),
                    user_agent=agent[:1024] if agent else None,
                    timings=SagaTimings.from_settings(settings),
                ),
                id=password_reset_workflow_id(email),
                task_queue=SAGAS_TASK_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,  # repeats join the open run
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary="password reset",
            )
    except (TimeoutError, RPCError) as exc:
        raise PasswordResetUnavailable("password reset is not available right now; try again") from exc
    return PasswordResetAccepted()


@router.post(
    "/password-reset/confirm",
    status_code=204,
    summary="Set a new password with the token from the reset email",
    description="The token works once. Every session of the account is ended (refresh tokens revoked) "
    "and a login lock is lifted.",
    responses=problem_responses(400, 422),
)
async def confirm_password_reset(
    body: PasswordResetConfirm, request: Request, sessions: SessionsDep
) -> Response:
    async with sessions["auth"]() as s, s.begin():
        await auth_service.confirm_password_reset(
            s, body.token, body.new_password, ip=client_ip(request), user_agent=user_agent(request)
        )
    return Response(status_code=204)
