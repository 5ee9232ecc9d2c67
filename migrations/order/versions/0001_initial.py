"""order_db: initial schema (the whole schema; see services/order/models.py for what each index serves)

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from alembic import op
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
    op.execute("CREATE SEQUENCE order_number_seq")
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False, comment="auth users.id (no FK)"),
        sa.Column("order_number", sa.String(length=32), nullable=False),
        sa.Column("cart_id", sa.Uuid(), nullable=True, comment="cart_db carts.id"),
        sa.Column("coupon_code", sa.String(length=64), nullable=True, comment="discount_db coupons.code"),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("subtotal_amount", sa.BigInteger(), nullable=False),
        sa.Column("discount_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("shipping_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True, comment="payment_db payments.id"),
        sa.Column("shipment_id", sa.Uuid(), nullable=True, comment="shipping_db shipments.id"),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_orders_currency"),
        sa.CheckConstraint(
            "status IN ('pending_payment', 'confirmed', 'shipped', 'delivered', 'cancelled', 'failed', 'returned', 'partially_returned', 'refunded')",
            name="ck_orders_status",
        ),
        sa.CheckConstraint("discount_amount <= subtotal_amount", name="ck_orders_discount_le_subtotal"),
        sa.CheckConstraint(
            "subtotal_amount >= 0 AND discount_amount >= 0 AND shipping_amount >= 0 AND tax_amount >= 0 AND total_amount >= 0",
            name="ck_orders_amounts_non_negative",
        ),
        sa.CheckConstraint(
            "total_amount = subtotal_amount - discount_amount + shipping_amount + tax_amount",
            name="ck_orders_total",
        ),
        sa.PrimaryKeyConstraint("id", "user_id"),
        postgresql_partition_by="HASH (user_id)",
    )
    op.create_index("idx_orders_id", "orders", ["id"], unique=False)
    op.create_index("idx_orders_order_number", "orders", ["order_number"], unique=False)
    op.create_index("idx_orders_status_placed", "orders", ["status", "placed_at"], unique=False)
    op.create_index("idx_orders_user_placed", "orders", ["user_id", "placed_at", "id"], unique=False)
    op.create_index("idx_orders_user_status", "orders", ["user_id", "status"], unique=False)
    op.create_table(
        "order_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("order_user_id", sa.Uuid(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False, comment="product_db products.id"),
        sa.Column("variant_id", sa.Uuid(), nullable=True, comment="product_db product_variants.id"),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False, comment="snapshot at order time"),
        sa.Column("unit_price_amount", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("line_amount", sa.BigInteger(), nullable=False),
        sa.Column(
            "discount_amount",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
            comment="allocated share",
        ),
        sa.Column("returned_quantity", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "discount_amount >= 0 AND discount_amount <= line_amount", name="ck_order_items_discount"
        ),
        sa.CheckConstraint("line_amount = unit_price_amount * quantity", name="ck_order_items_line_amount"),
        sa.CheckConstraint("quantity > 0", name="ck_order_items_quantity"),
        sa.CheckConstraint(
            "returned_quantity >= 0 AND returned_quantity <= quantity", name="ck_order_items_returned"
        ),
        sa.CheckConstraint("unit_price_amount >= 0", name="ck_order_items_unit_price"),
        sa.ForeignKeyConstraint(
            ["order_id", "order_user_id"],
            ["orders.id", "orders.user_id"],
            name="fk_order_items_order",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("idx_order_items_order", "order_items", ["order_id", "order_user_id"], unique=False)
    op.create_table(
        "order_notes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("order_user_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=True, comment="auth users.id"),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("visibility IN ('internal', 'customer')", name="ck_order_notes_visibility"),
        sa.ForeignKeyConstraint(
            ["order_id", "order_user_id"],
            ["orders.id", "orders.user_id"],
            name="fk_order_notes_order",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("idx_order_notes_order", "order_notes", ["order_id", "created_at"], unique=False)
    op.create_table(
        "order_status_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("order_user_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(length=32), nullable=True),
        sa.Column("to_status", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False, comment="system, workflow id, user"),
        sa.CheckConstraint(
            "to_status IN ('pending_payment', 'confirmed', 'shipped', 'delivered', 'cancelled', 'failed', 'returned', 'partially_returned', 'refunded')",
            name="ck_order_status_history_to_status",
        ),
        sa.ForeignKeyConstraint(
            ["order_id", "order_user_id"],
            ["orders.id", "orders.user_id"],
            name="fk_order_status_history_order",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", "created_at"),
        postgresql_partition_by="RANGE (created_at)",
    )
    op.create_index(
        "idx_order_status_history_order", "order_status_history", ["order_id", "created_at"], unique=False
    )
    op.create_table(
        "shipping_addresses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("recipient_name", sa.String(length=200), nullable=False),
        sa.Column("company", sa.String(length=200), nullable=True),
        sa.Column("line1", sa.String(length=255), nullable=False),
        sa.Column("line2", sa.String(length=255), nullable=True),
        sa.Column("city", sa.String(length=120), nullable=False),
        sa.Column("region", sa.String(length=120), nullable=True),
        sa.Column("postal_code", sa.String(length=20), nullable=False),
        sa.Column("country_code", sa.CHAR(length=2), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("country_code ~ '^[A-Z]{2}$'", name="ck_shipping_addresses_country"),
        sa.ForeignKeyConstraint(
            ["order_id", "user_id"],
            ["orders.id", "orders.user_id"],
            name="fk_shipping_addresses_order",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_shipping_addresses_order", "shipping_addresses", ["order_id", "user_id"], unique=True)
    for ddl in partitions.hash_partitions_ddl("orders"):
        op.execute(ddl)
    for ddl in partitions.monthly_partitions_ddl("order_status_history", date.today()):
        op.execute(ddl)


def downgrade() -> None:
    # Dropping a partitioned parent drops its partitions.
    for table in ("shipping_addresses", "order_status_history", "order_notes", "order_items", "orders"):
        op.drop_table(table)
    op.execute("DROP SEQUENCE order_number_seq")
    op.drop_table("idempotency_keys")
