"""discount_db: initial schema (the whole schema; see services/discount/models.py for what each index serves)

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

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
        "coupons",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column(
            "value",
            sa.BigInteger(),
            nullable=False,
            comment="percent (1..100) or minor units; 0 for free shipping",
        ),
        sa.Column("currency", sa.CHAR(length=3), nullable=True),
        sa.Column("min_subtotal_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_discount_amount", sa.BigInteger(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("usage_limit_total", sa.Integer(), nullable=True),
        sa.Column("usage_limit_per_customer", sa.Integer(), nullable=True),
        sa.Column(
            "times_used",
            sa.Integer(),
            server_default=sa.text("0"),
            nullable=False,
            comment="reserved + committed",
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(type = 'percentage' AND value BETWEEN 1 AND 100) OR (type = 'fixed_amount' AND value > 0) OR (type = 'free_shipping' AND value = 0)",
            name="ck_coupons_value",
        ),
        sa.CheckConstraint("type <> 'fixed_amount' OR currency IS NOT NULL", name="ck_coupons_currency"),
        sa.CheckConstraint("type IN ('percentage', 'fixed_amount', 'free_shipping')", name="ck_coupons_type"),
        sa.CheckConstraint(
            "(usage_limit_total IS NULL OR usage_limit_total > 0) AND (usage_limit_per_customer IS NULL OR usage_limit_per_customer > 0)",
            name="ck_coupons_limits",
        ),
        sa.CheckConstraint("code = upper(code) AND length(code) > 0", name="ck_coupons_code_upper"),
        sa.CheckConstraint(
            "ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at", name="ck_coupons_window"
        ),
        sa.CheckConstraint(
            "max_discount_amount IS NULL OR max_discount_amount > 0", name="ck_coupons_max_discount"
        ),
        sa.CheckConstraint("min_subtotal_amount >= 0", name="ck_coupons_min_subtotal"),
        sa.CheckConstraint(
            "times_used >= 0 AND (usage_limit_total IS NULL OR times_used <= usage_limit_total)",
            name="ck_coupons_times_used",
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code", name="uq_coupons_code"),
    )
    op.create_table(
        "promotions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False, comment="percent (1..100) or minor units"),
        sa.Column("currency", sa.CHAR(length=3), nullable=True),
        sa.Column("max_discount_amount", sa.BigInteger(), nullable=True),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("stackable", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(type = 'percentage' AND value BETWEEN 1 AND 100) OR (type = 'fixed_amount' AND value > 0)",
            name="ck_promotions_value",
        ),
        sa.CheckConstraint("type <> 'fixed_amount' OR currency IS NOT NULL", name="ck_promotions_currency"),
        sa.CheckConstraint("type IN ('percentage', 'fixed_amount')", name="ck_promotions_type"),
        sa.CheckConstraint(
            "ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at", name="ck_promotions_window"
        ),
        sa.CheckConstraint(
            "max_discount_amount IS NULL OR max_discount_amount > 0", name="ck_promotions_max_discount"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "idx_promotions_active_priority",
        "promotions",
        ["priority"],
        unique=False,
        postgresql_where=sa.text("is_active"),
    )
    op.create_table(
        "coupon_usage",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("coupon_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False, comment="auth users.id"),
        sa.Column("order_id", sa.Uuid(), nullable=False, comment="order_db orders.id"),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("discount_amount", sa.BigInteger(), nullable=False),
        sa.Column("reserved_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('reserved', 'committed', 'released')", name="ck_coupon_usage_status"),
        sa.CheckConstraint("discount_amount >= 0", name="ck_coupon_usage_discount"),
        sa.ForeignKeyConstraint(
            ["coupon_id"],
            ["coupons.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("coupon_id", "order_id", name="uq_coupon_usage_coupon_order"),
    )
    op.create_index(
        "idx_coupon_usage_coupon_user",
        "coupon_usage",
        ["coupon_id", "user_id"],
        unique=False,
        postgresql_where=sa.text("status IN ('reserved', 'committed')"),
    )
    op.create_index(
        "idx_coupon_usage_expiry",
        "coupon_usage",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'reserved'"),
    )
    op.create_index("idx_coupon_usage_order", "coupon_usage", ["order_id"], unique=False)
    op.create_table(
        "promotion_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("promotion_id", sa.Uuid(), nullable=False),
        sa.Column("rule_type", sa.String(length=32), nullable=False),
        sa.Column(
            "params",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "rule_type IN ('min_subtotal', 'category', 'product', 'buy_x_get_y')",
            name="ck_promotion_rules_rule_type",
        ),
        sa.ForeignKeyConstraint(["promotion_id"], ["promotions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("idx_promotion_rules_promotion", "promotion_rules", ["promotion_id"], unique=False)
    op.create_table(
        "promotion_usage",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("promotion_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False, comment="order_db orders.id"),
        sa.Column("user_id", sa.Uuid(), nullable=False, comment="auth users.id"),
        sa.Column("discount_amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("discount_amount >= 0", name="ck_promotion_usage_discount"),
        sa.ForeignKeyConstraint(
            ["promotion_id"],
            ["promotions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("promotion_id", "order_id", name="uq_promotion_usage_promotion_order"),
    )
    op.create_index("idx_promotion_usage_order", "promotion_usage", ["order_id"], unique=False)


def downgrade() -> None:
    for table in ("promotion_usage", "promotion_rules", "promotions", "coupon_usage", "coupons"):
        op.drop_table(table)
    op.drop_table("idempotency_keys")
