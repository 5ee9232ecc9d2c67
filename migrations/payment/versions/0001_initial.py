"""payment_db: initial schema (the whole schema; see services/payment/models.py for what each index serves)

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

from core import partitions

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


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
        "payment_methods",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False, comment="auth users.id"),
        sa.Column("provider", sa.String(length=32), server_default=sa.text("'psp_sandbox'"), nullable=False),
        sa.Column("token_encrypted", sa.Text(), nullable=False, comment="Fernet(settings.encryption_key)"),
        sa.Column("brand", sa.String(length=32), nullable=False),
        sa.Column("last4", sa.CHAR(length=4), nullable=False),
        sa.Column("exp_month", sa.SmallInteger(), nullable=False),
        sa.Column("exp_year", sa.SmallInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("last4 ~ '^[0-9]{4}$'", name="ck_payment_methods_last4"),
        sa.CheckConstraint("exp_month BETWEEN 1 AND 12", name="ck_payment_methods_exp_month"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("idx_payment_methods_user", "payment_methods", ["user_id", "created_at"], unique=False)
    op.create_index(
        "uq_payment_methods_user_fingerprint",
        "payment_methods",
        ["user_id", "provider", "fingerprint"],
        unique=True,
        postgresql_where=sa.text("fingerprint IS NOT NULL"),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False, comment="order_db orders.id"),
        sa.Column("user_id", sa.Uuid(), nullable=False, comment="auth users.id"),
        sa.Column("provider", sa.String(length=32), server_default=sa.text("'psp_sandbox'"), nullable=False),
        sa.Column("provider_authorization_id", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column(
            "amount_authorized", sa.BigInteger(), nullable=False, comment="the amount asked for authorization"
        ),
        sa.Column("amount_captured", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("decline_code", sa.String(length=64), nullable=True),
        sa.Column(
            "next_action_url", sa.Text(), nullable=True, comment="where the shopper finishes requires_action"
        ),
        sa.Column("authorization_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "idempotency_key",
            sa.String(length=255),
            nullable=False,
            comment="the authorize step's idempotency key",
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("authorized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_payments_currency"),
        sa.CheckConstraint(
            "status IN ('pending', 'requires_action', 'authorized', 'partially_captured', 'captured', 'voided', 'partially_refunded', 'refunded', 'failed', 'expired')",
            name="ck_payments_status",
        ),
        sa.CheckConstraint("amount_authorized > 0", name="ck_payments_amount_authorized"),
        sa.CheckConstraint(
            "amount_captured >= 0 AND amount_captured <= amount_authorized",
            name="ck_payments_amount_captured",
        ),
        sa.CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount_captured", name="ck_payments_amount_refunded"
        ),
        sa.PrimaryKeyConstraint("id", "order_id"),
        postgresql_partition_by="HASH (order_id)",
    )
    op.create_index("idx_payments_id", "payments", ["id"], unique=False)
    op.create_index(
        "idx_payments_open_expiry",
        "payments",
        ["authorization_expires_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('authorized', 'requires_action')"),
    )
    op.create_index(
        "idx_payments_provider_authorization", "payments", ["provider_authorization_id"], unique=False
    )
    op.create_index("idx_payments_user_created", "payments", ["user_id", "created_at"], unique=False)
    op.create_table(
        "payment_transactions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column(
            "provider_reference",
            sa.String(length=100),
            nullable=True,
            comment="authorization or refund id at the provider",
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('succeeded', 'failed')", name="ck_payment_transactions_status"),
        sa.CheckConstraint(
            "type IN ('authorize', 'capture', 'void', 'refund')", name="ck_payment_transactions_type"
        ),
        sa.CheckConstraint("amount >= 0", name="ck_payment_transactions_amount"),
        sa.ForeignKeyConstraint(
            ["payment_id", "order_id"],
            ["payments.id", "payments.order_id"],
            name="fk_payment_transactions_payment",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "payment_id", "type", "provider_reference", name="uq_payment_transactions_provider_reference"
        ),
    )
    op.create_index(
        "idx_payment_transactions_payment",
        "payment_transactions",
        ["payment_id", "order_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "payment_webhooks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), server_default=sa.text("'psp_sandbox'"), nullable=False),
        sa.Column("provider_event_id", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("signature_valid", sa.Boolean(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processing_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["payment_id", "order_id"],
            ["payments.id", "payments.order_id"],
            name="fk_payment_webhooks_payment",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_event_id", name="uq_payment_webhooks_event"),
    )
    op.create_index(
        "idx_payment_webhooks_payment",
        "payment_webhooks",
        ["payment_id", "order_id"],
        unique=False,
        postgresql_where=sa.text("payment_id IS NOT NULL"),
    )
    op.create_index(
        "idx_payment_webhooks_unprocessed",
        "payment_webhooks",
        ["received_at"],
        unique=False,
        postgresql_where=sa.text("processed_at IS NULL"),
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_refund_id", sa.String(length=100), nullable=True),
        sa.Column("return_id", sa.Uuid(), nullable=True, comment="return_db return_requests.id"),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="ck_refunds_status"),
        sa.CheckConstraint("amount > 0", name="ck_refunds_amount"),
        sa.ForeignKeyConstraint(
            ["payment_id", "order_id"], ["payments.id", "payments.order_id"], name="fk_refunds_payment"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("idx_refunds_payment", "refunds", ["payment_id", "order_id"], unique=False)
    op.create_index(
        "idx_refunds_return",
        "refunds",
        ["return_id"],
        unique=False,
        postgresql_where=sa.text("return_id IS NOT NULL"),
    )
    for ddl in partitions.hash_partitions_ddl("payments"):
        op.execute(ddl)


def downgrade() -> None:
    # Dropping a partitioned parent drops its partitions.
    for table in ("refunds", "payment_webhooks", "payment_transactions", "payments", "payment_methods"):
        op.drop_table(table)
    op.drop_table("idempotency_keys")
