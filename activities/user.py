"""Activities of the user service, served on task queue ``user`` by ``python worker.py user``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, EmailStr, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from core.activity_support import idempotent_write, read
from core.crypto import TokenCipher
from core.db import SessionFactory
from core.settings import Settings, get_settings
from services.user import service
from services.user.models import ledger
from services.user.schemas import AddressSnapshot, CheckoutPaymentMethod

TASK_QUEUE = "user"

# "<workflow id>:<step>"
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class CreateProfileInput(BaseModel):
    idempotency_key: IdempotencyKey
    user_id: uuid.UUID  # the auth user id
    email: EmailStr
    first_name: Name
    last_name: Name


class CreateProfileResult(BaseModel):
    user_id: uuid.UUID


class DeleteProfileInput(BaseModel):
    idempotency_key: IdempotencyKey
    user_id: uuid.UUID


class DeleteProfileResult(BaseModel):
    user_id: uuid.UUID
    deleted: bool  # False: there was no profile (already compensated, or never created)


class GetCheckoutDetailsInput(BaseModel):
    user_id: uuid.UUID
    address_id: uuid.UUID
    payment_method_id: uuid.UUID


class GetCheckoutDetailsResult(BaseModel):
    address: AddressSnapshot  # every field of the address, to be copied into the order
    payment_method: CheckoutPaymentMethod  # id, psp_token_encrypted, brand, last4


class UserActivities:
    """Adapts ``services.user`` to Temporal. Every writing activity is idempotent by key."""

    def __init__(self, sessions: SessionFactory, cipher: TokenCipher | None = None) -> None:
        self.sessions = sessions
        self.cipher = cipher or TokenCipher.from_settings(get_settings())

    @activity.defn(name="user.create_profile")
    async def create_profile(self, inp: CreateProfileInput) -> CreateProfileResult:
        """The profile (and default preferences) of a newly registered user."""

        async def effect(s: AsyncSession) -> CreateProfileResult:
            profile = await service.create_profile(
                s, user_id=inp.user_id, email=inp.email, first_name=inp.first_name, last_name=inp.last_name
            )
            return CreateProfileResult(user_id=profile.user_id)

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="user.create_profile",
            request=inp,
            result_type=CreateProfileResult,
            effect=effect,
        )

    @activity.defn(name="user.delete_profile")
    async def delete_profile(self, inp: DeleteProfileInput) -> DeleteProfileResult:
        """Compensation of ``user.create_profile``: the profile and everything of the user here."""

        async def effect(s: AsyncSession) -> DeleteProfileResult:
            return DeleteProfileResult(
                user_id=inp.user_id, deleted=await service.delete_profile(s, inp.user_id)
            )

        return await idempotent_write(
            self.sessions,
            ledger,
            key=inp.idempotency_key,
            operation="user.delete_profile",
            request=inp,
            result_type=DeleteProfileResult,
            effect=effect,
        )

    @activity.defn(name="user.get_checkout_details")
    async def get_checkout_details(self, inp: GetCheckoutDetailsInput) -> GetCheckoutDetailsResult:
        """Read-only. ``AddressNotFound`` / ``PaymentMethodNotFound`` for unknown ids and for ids of
        another user alike; ``PaymentMethodExpired`` for an expired card."""

        async def query(s: AsyncSession) -> GetCheckoutDetailsResult:
            details = await service.get_checkout_details(
                s,
                user_id=inp.user_id,
                address_id=inp.address_id,
                payment_method_id=inp.payment_method_id,
            )
            return GetCheckoutDetailsResult(address=details.address, payment_method=details.payment_method)

        return await read(self.sessions, query)


def build(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The activity callables ``worker.py user`` registers (besides ``user.ping``)."""
    acts = UserActivities(sessions, TokenCipher.from_settings(settings))
    return [
        getattr(acts, name)
        for name in dir(acts)
        if hasattr(getattr(acts, name), "__temporal_activity_definition")
    ]
