"""Inputs, provider outcomes and views of the payment service's operations (no tables here)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.payment.models import PaymentStatus, RefundStatus

MAX_AMOUNT = 99_999_999  # the provider's limit, in minor units
CURRENCY = r"^[A-Z]{3}$"

AuthorizeStatus = Literal["authorized", "requires_action", "declined"]


class AuthorizationAttempt(BaseModel):
    """What the provider answered to an authorization (a decline is an answer, not an error)."""

    status: AuthorizeStatus
    authorization_id: str | None
    decline_code: str | None = None
    next_action_url: str | None = None
    expires_at: datetime | None = None


class AuthorizeResult(BaseModel):
    payment_id: uuid.UUID
    status: AuthorizeStatus
    provider_authorization_id: str | None
    decline_code: str | None = None
    next_action_url: str | None = None
    authorization_expires_at: datetime | None = None


class CaptureResult(BaseModel):
    payment_id: uuid.UUID
    status: PaymentStatus
    amount_captured: int


class VoidResult(BaseModel):
    """``voided`` false: there was no open authorization to void (failed, expired, or no such payment:
    ``found`` false)."""

    payment_id: uuid.UUID
    found: bool = True
    status: PaymentStatus | None
    voided: bool


class RefundResult(BaseModel):
    refund_id: uuid.UUID
    status: RefundStatus
    amount: int
    payment_status: PaymentStatus
    amount_refunded: int


class PaymentStatusResult(BaseModel):
    payment_id: uuid.UUID
    order_id: uuid.UUID
    status: PaymentStatus
    changed: bool


class WebhookRecorded(BaseModel):
    """``duplicate``: this provider event was received before and is ignored now."""

    duplicate: bool
    payment_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    event_type: str
    payment_status: PaymentStatus | None = None
    processed: bool
    processing_error: str | None = None


class TransactionView(BaseModel):
    id: uuid.UUID
    type: str
    amount: int
    currency: str
    status: str
    provider_reference: str | None
    error_code: str | None
    created_at: datetime


class RefundView(BaseModel):
    id: uuid.UUID
    amount: int
    currency: str
    reason: str
    status: RefundStatus
    provider_refund_id: str | None
    return_id: uuid.UUID | None
    created_at: datetime


class PaymentView(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    provider: str
    provider_authorization_id: str | None
    status: PaymentStatus
    amount_authorized: int
    amount_captured: int
    amount_refunded: int
    currency: str
    decline_code: str | None
    next_action_url: str | None
    authorization_expires_at: datetime | None
    version: int
    created_at: datetime
    transactions: list[TransactionView]
    refunds: list[RefundView]


class PaymentBalance(BaseModel):
    payment_id: uuid.UUID
    currency: str
    ledger_captured: int
    ledger_refunded: int
    amount_captured: int
    amount_refunded: int
    balanced: bool  # ledger_captured - ledger_refunded == amount_captured - amount_refunded


class OrderBalance(BaseModel):
    """Money per order: what the ledger says was captured and refunded, and whether every payment's
    ledger agrees with its running totals."""

    order_id: uuid.UUID
    payments: list[PaymentBalance]
    captured: int
    refunded: int
    net: int
    balanced: bool


class SavedPaymentMethod(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    provider: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool
    created_at: datetime


class ProviderEvent(BaseModel):
    """A provider webhook as stored: ``payload`` is the whole event (``{"id", "type", "data": {...}}``)."""

    provider_event_id: str = Field(min_length=1, max_length=100)
    event_type: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any]
    signature_valid: bool
