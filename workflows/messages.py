"""The messages of the checkout and payment sagas: their inputs, results, queries, signals and
updates, as plain pydantic models shared by the workflows, the API and the tests.

They live outside the workflow modules on purpose: the workflow sandbox re-imports a workflow's own
module for every workflow run, and building pydantic models is the costly part of that import. Imported
through ``workflow.unsafe.imports_passed_through()``, this module is loaded once per worker process
(README, Performance). Nothing here may touch the clock, randomness or I/O.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from activities.user import GetCheckoutDetailsResult
from workflows.saga import SagaTimings


# == shipping options (part of the checkout's input) =============================================
class ShippingOptions(BaseModel):
    """Durations and budgets; settings in production, seconds in tests."""

    no_pickup_s: float = Field(default=2 * 24 * 3600, gt=0)  # label bought, the carrier never came
    no_movement_s: float = Field(default=3 * 24 * 3600, gt=0)  # picked up, then silence
    label_attempts: int = Field(default=20, ge=1)  # then the label purchase has failed
    return_window_days: int = Field(default=30, ge=0)  # told to the shopper on delivery


# == payment =======================================================================================
PaymentStatus = Literal[
    "pending",
    "requires_action",
    "authorized",
    "declined",
    "failed",
    "captured",
    "voided",
    "expired",
    "refunded",
]


class PaymentInput(BaseModel):
    payment_id: uuid.UUID
    order_id: uuid.UUID
    user_id: uuid.UUID
    amount: int = Field(gt=0)
    currency: str
    # The card's provider token, encrypted (core/crypto.py): only the payment service decrypts it.
    psp_token_encrypted: str | None = None
    psp_token: str | None = None  # plaintext: payments started before the encrypted token (histories)
    webhook_url: str | None = None
    reply_to: str  # workflow id that receives payment_update signals (the checkout)
    capture_immediately: bool = False
    action_timeout_s: float = 900  # how long the shopper has for the extra authentication step
    authorization_ttl_s: float = 7 * 24 * 3600  # uncaptured authorizations are voided after this
    refund_window_s: float = 90 * 24 * 3600  # after capture, refunds are accepted this long
    timings: SagaTimings = SagaTimings()


class ProviderSignal(BaseModel):
    """A verified PSP webhook, relayed by the API (duplicates are ignored by event id)."""

    event_id: str
    type: str
    authorization_status: str | None = None
    decline_code: str | None = None


class PaymentCommand(BaseModel):
    kind: Literal["capture", "void", "refund"]
    request_id: str  # idempotency of the command itself (also the activity's key suffix)
    amount: int | None = Field(default=None, gt=0)
    reason: str = ""
    return_id: uuid.UUID | None = None
    reply_to: str | None = None


class PaymentUpdate(BaseModel):
    """Sent to ``reply_to`` on each outcome."""

    payment_id: uuid.UUID
    status: PaymentStatus
    request_id: str | None = None
    decline_code: str | None = None
    message: str | None = None
    refunded_amount: int = 0
    next_action_url: str | None = None


class PaymentState(BaseModel):
    payment_id: uuid.UUID
    status: PaymentStatus
    amount_authorized: int
    amount_captured: int
    amount_refunded: int
    decline_code: str | None
    next_action_url: str | None
    needs_attention: str | None
    history: list[str]


# == checkout ======================================================================================
CheckoutState = Literal[
    "started",
    "pending_payment",
    "awaiting_authentication",
    "compensating",
    "confirmed",
    "shipped",
    "failed",
    "cancelled",
]
TERMINAL: tuple[CheckoutState, ...] = ("shipped", "failed", "cancelled")


class PaymentTimings(BaseModel):
    action_timeout_s: float = 900
    authorization_ttl_s: float = 7 * 24 * 3600
    refund_window_s: float = 90 * 24 * 3600


class CheckoutInput(BaseModel):
    order_id: uuid.UUID
    user_id: uuid.UUID
    email: str
    first_name: str = ""
    shipping_address_id: uuid.UUID
    shipping_method_id: uuid.UUID
    payment_method_id: uuid.UUID
    coupon_code: str | None = Field(default=None, max_length=64)
    reservation_ttl_s: int = 1800
    payment_timeout_s: float = 1800  # safety net; the payment saga has its own timers
    capture_immediately: bool = False
    start_shipping: bool = True
    psp_webhook_url: str | None = None
    carrier_webhook_url: str | None = None
    payment: PaymentTimings = PaymentTimings()
    timings: SagaTimings = SagaTimings()
    shipping: ShippingOptions = ShippingOptions()
    # The address snapshot and the card, read by the API when it accepts the checkout (a read of the
    # user service through its module): an unknown address or an expired card is refused with 422
    # before any saga starts, and the saga saves a step. Checkouts started without them (older API
    # versions, the histories under tests/histories) load them with the user.get_checkout_details step.
    details: GetCheckoutDetailsResult | None = None


class Totals(BaseModel):
    currency: str
    subtotal_amount: int
    discount_amount: int
    shipping_amount: int
    tax_amount: int
    total_amount: int


class CheckoutStatus(BaseModel):
    workflow_id: str
    order_id: uuid.UUID
    order_number: str | None
    status: CheckoutState
    step: str
    failure_reason: str | None
    failure_type: str | None
    totals: Totals | None
    payment_id: uuid.UUID | None
    payment_status: str | None
    next_action_url: str | None
    needs_attention: str | None
    log: list[str]


class CancelRequest(BaseModel):
    reason: str = Field(default="cancelled by the shopper", max_length=500)
    actor: str = "shopper"


class CancelOutcome(BaseModel):
    accepted: bool
    status: CheckoutState
    message: str


class ShipmentUpdate(BaseModel):
    """From the shipping saga: the carrier's first scan happened (``shipped``), or it gave up, or
    it voided the label because this checkout asked (``cancelled``)."""

    status: Literal["shipped", "label_failed", "cancelled"]
    shipment_id: uuid.UUID | None = None
    message: str = ""
