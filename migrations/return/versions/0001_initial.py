"""return_db: initial schema (return requests, items, RMAs, status history, tracking, refunds, ledger)

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = (
    "'requested', 'approved', 'rejected', 'awaiting_parcel', 'received', 'inspected', 'refunded', "
    "'closed', 'expired', 'cancelled'"
)
REASONS = "'defective', 'damaged', 'wrong_item', 'not_as_described', 'no_longer_needed', 'changed_mind', 'other'"


def _request_fk() -> sa.Column:
    return sa.Column(
        "return_request_id", sa.Uuid(), sa.ForeignKey("return_requests.id", ondelete="CASCADE"), nullable=False
    )


def _now(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(255), primary_key=True, comment="<workflow id>:<step> or a client key"),
        sa.Column("operation", sa.String(100), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        comment="Idempotency ledger: one row per writing operation key, written with its effect",
    )

    op.create_table(
        "return_requests",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("order_id", sa.Uuid(), nullable=False, comment="order_db orders.id"),
        sa.Column("user_id", sa.Uuid(), nullable=False, comment="auth_db users.id"),
        sa.Column("rma_number", sa.String(32), nullable=False),
        sa.Column("status", sa.String(20), server_default=sa.text("'requested'"), nullable=False),
        sa.Column("reason", sa.String(30), nullable=False),
        sa.Column("resolution", sa.String(20), server_default=sa.text("'refund'"), nullable=False),
        sa.Column("currency", postgresql.CHAR(3), nullable=False),
        sa.Column("requested_amount", sa.BigInteger(), nullable=False),
        sa.Column("refund_amount", sa.BigInteger(), nullable=True),
        sa.Column("refund_breakdown", postgresql.JSONB(), nullable=True),
        sa.Column("order_snapshot", postgresql.JSONB(), nullable=False),
        sa.Column("auto_approved", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _now("requested_at"),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("inspected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("workflow_id", sa.String(255), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.UniqueConstraint("rma_number", name="uq_return_requests_rma_number"),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_return_requests_status"),
        sa.CheckConstraint(f"reason IN ({REASONS}, 'multiple')", name="ck_return_requests_reason"),
        sa.CheckConstraint("resolution IN ('refund')", name="ck_return_requests_resolution"),
        sa.CheckConstraint(
            "requested_amount >= 0 AND (refund_amount IS NULL OR refund_amount >= 0)",
            name="ck_return_requests_amounts",
        ),
    )
    # quantity accounting (returns of one order) and support lookup by order
    op.create_index("ix_return_requests_order_id", "return_requests", ["order_id"])
    # "my returns", newest first
    op.create_index("ix_return_requests_user_requested", "return_requests", ["user_id", "requested_at"])
    # support queue: open returns by status and age
    op.create_index(
        "ix_return_requests_open_status",
        "return_requests",
        ["status", "requested_at"],
        postgresql_where=sa.text("status NOT IN ('rejected', 'closed', 'expired', 'cancelled')"),
    )

    op.create_table(
        "return_items",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _request_fk(),
        sa.Column("order_item_id", sa.Uuid(), nullable=False, comment="order_db order_items.id"),
        sa.Column("variant_id", sa.Uuid(), nullable=True, comment="product_db product_variants.id"),
        sa.Column("reason", sa.String(30), nullable=False),
        sa.Column("quantity_requested", sa.Integer(), nullable=False),
        sa.Column("quantity_accepted", sa.Integer(), nullable=True),
        sa.Column("condition", sa.String(10), nullable=True),
        sa.Column("unit_price_amount", sa.BigInteger(), nullable=False),
        sa.Column("discount_share_amount", sa.BigInteger(), nullable=True),
        sa.Column("refund_amount", sa.BigInteger(), nullable=True),
        _now("created_at"),
        # one row per order line in a return; also serves the FK lookup by return_request_id
        sa.UniqueConstraint("return_request_id", "order_item_id", name="uq_return_items_request_order_item"),
        sa.CheckConstraint("quantity_requested > 0", name="ck_return_items_quantity_requested"),
        sa.CheckConstraint(
            "quantity_accepted IS NULL OR (quantity_accepted >= 0 AND quantity_accepted <= quantity_requested)",
            name="ck_return_items_quantity_accepted",
        ),
        sa.CheckConstraint(
            "condition IS NULL OR condition IN ('new', 'opened', 'damaged')", name="ck_return_items_condition"
        ),
        sa.CheckConstraint(f"reason IN ({REASONS})", name="ck_return_items_reason"),
        sa.CheckConstraint(
            "unit_price_amount >= 0 AND (refund_amount IS NULL OR refund_amount >= 0)"
            " AND (discount_share_amount IS NULL OR discount_share_amount >= 0)",
            name="ck_return_items_amounts",
        ),
    )

    op.create_table(
        "return_authorizations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _request_fk(),
        sa.Column("rma_code", sa.String(32), nullable=False),
        sa.Column("label_tracking_number", sa.String(100), nullable=True),
        sa.Column("label_url", sa.String(1000), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), server_default=sa.text("'active'"), nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.UniqueConstraint("return_request_id", name="uq_return_authorizations_return_request_id"),
        # carrier webhooks for a return parcel: find the return by its label's tracking number
        sa.UniqueConstraint("label_tracking_number", name="uq_return_authorizations_label_tracking_number"),
        sa.CheckConstraint(
            "status IN ('active', 'used', 'expired', 'cancelled')", name="ck_return_authorizations_status"
        ),
    )

    op.create_table(
        "return_status_history",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _request_fk(),
        sa.Column("from_status", sa.String(20), nullable=True),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.clock_timestamp(), nullable=False
        ),
    )
    # a return's history in order
    op.create_index(
        "ix_return_status_history_request_created", "return_status_history", ["return_request_id", "created_at"]
    )

    op.create_table(
        "return_tracking",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _request_fk(),
        sa.Column("carrier_event_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("location", sa.String(300), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        _now("received_at"),
        sa.UniqueConstraint("carrier_event_id", name="uq_return_tracking_carrier_event_id"),
    )
    # tracking history of a return, in order
    op.create_index("ix_return_tracking_request_occurred", "return_tracking", ["return_request_id", "occurred_at"])

    op.create_table(
        "refunds",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _request_fk(),
        sa.Column("payment_id", sa.Uuid(), nullable=False, comment="payment_db payments.id"),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", postgresql.CHAR(3), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("provider_refund_id", sa.String(255), nullable=True),
        sa.Column("breakdown", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.UniqueConstraint("provider_refund_id", name="uq_refunds_provider_refund_id"),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="ck_refunds_status"),
        sa.CheckConstraint("amount > 0", name="ck_refunds_amount"),
    )
    # refunds of a return (sum of succeeded refunds)
    op.create_index("ix_refunds_return_request_id", "refunds", ["return_request_id"])


def downgrade() -> None:
    op.drop_table("refunds")
    op.drop_table("return_tracking")
    op.drop_table("return_status_history")
    op.drop_table("return_authorizations")
    op.drop_table("return_items")
    op.drop_table("return_requests")
    op.drop_table("idempotency_keys")
