"""shipping_db: initial schema (carriers, zones, methods, rates, shipments, tracking, ledger)

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

SHIPMENT_STATUSES = (
    "'pending', 'label_purchased', 'picked_up', 'in_transit', 'out_for_delivery', 'delivered', "
    "'exception', 'returned_to_sender', 'cancelled'"
)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


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
        "carriers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("code", sa.String(50), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tracking_url_template", sa.String(500), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("settings", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("code", name="uq_carriers_code"),
    )

    op.create_table(
        "shipping_zones",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column(
            "countries",
            postgresql.ARRAY(postgresql.CHAR(2)),
            server_default=sa.text("'{}'::char(2)[]"),
            nullable=False,
        ),
        sa.Column("postal_code_patterns", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("name", name="uq_shipping_zones_name"),
    )
    # quote / available methods: zones whose countries contain the address country
    op.create_index("ix_shipping_zones_countries", "shipping_zones", ["countries"], postgresql_using="gin")

    op.create_table(
        "shipping_methods",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("carrier_id", sa.Uuid(), sa.ForeignKey("carriers.id"), nullable=False),
        sa.Column("zone_id", sa.Uuid(), sa.ForeignKey("shipping_zones.id"), nullable=False),
        sa.Column("code", sa.String(50), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("service_level", sa.String(20), nullable=False),
        sa.Column("min_delivery_days", sa.Integer(), nullable=False),
        sa.Column("max_delivery_days", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("zone_id", "code", name="uq_shipping_methods_zone_code"),
        sa.CheckConstraint(
            "service_level IN ('standard', 'express', 'overnight')", name="ck_shipping_methods_service_level"
        ),
        sa.CheckConstraint(
            "min_delivery_days >= 0 AND max_delivery_days >= min_delivery_days",
            name="ck_shipping_methods_delivery_days",
        ),
    )
    # admin listing / FK lookups: methods of a carrier
    op.create_index("ix_shipping_methods_carrier_id", "shipping_methods", ["carrier_id"])

    op.create_table(
        "shipping_rates",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("method_id", sa.Uuid(), sa.ForeignKey("shipping_methods.id"), nullable=False),
        sa.Column("min_weight_grams", sa.Integer(), nullable=False),
        sa.Column("max_weight_grams", sa.Integer(), nullable=False),
        sa.Column("min_subtotal_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", postgresql.CHAR(3), nullable=False),
        sa.Column("free_over_amount", sa.BigInteger(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "min_weight_grams >= 0 AND max_weight_grams > min_weight_grams",
            name="ck_shipping_rates_weight_range",
        ),
        sa.CheckConstraint(
            "min_subtotal_amount >= 0 AND amount >= 0 AND (free_over_amount IS NULL OR free_over_amount >= 0)",
            name="ck_shipping_rates_amounts",
        ),
    )
    # quote: the band of a method containing a weight
    op.create_index("ix_shipping_rates_method_weight", "shipping_rates", ["method_id", "min_weight_grams"])

    op.create_table(
        "shipments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("order_id", sa.Uuid(), nullable=False, comment="order_db orders.id"),
        sa.Column("user_id", sa.Uuid(), nullable=False, comment="auth_db users.id"),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("method_id", sa.Uuid(), sa.ForeignKey("shipping_methods.id"), nullable=False),
        sa.Column("carrier_id", sa.Uuid(), sa.ForeignKey("carriers.id"), nullable=False),
        sa.Column("status", sa.String(30), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("tracking_number", sa.String(100), nullable=True),
        sa.Column("label_id", sa.String(100), nullable=True),
        sa.Column("label_url", sa.String(1000), nullable=True),
        sa.Column("cost_amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", postgresql.CHAR(3), nullable=True),
        sa.Column("address", postgresql.JSONB(), nullable=False),
        sa.Column("items", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("weight_grams", sa.Integer(), nullable=False),
        sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("order_id", "direction", name="uq_shipments_order_direction"),
        sa.UniqueConstraint("tracking_number", name="uq_shipments_tracking_number"),
        sa.CheckConstraint("direction IN ('outbound', 'return')", name="ck_shipments_direction"),
        sa.CheckConstraint(f"status IN ({SHIPMENT_STATUSES})", name="ck_shipments_status"),
        sa.CheckConstraint("weight_grams > 0", name="ck_shipments_weight"),
        sa.CheckConstraint("cost_amount IS NULL OR cost_amount >= 0", name="ck_shipments_cost_amount"),
    )
    # "my shipments" and support lookups by shopper, newest first
    op.create_index("ix_shipments_user_created", "shipments", ["user_id", "created_at"])
    # stall detection / support dashboards: shipments in flight by status and age
    op.create_index(
        "ix_shipments_open_status_updated",
        "shipments",
        ["status", "updated_at"],
        postgresql_where=sa.text("status NOT IN ('delivered', 'cancelled', 'returned_to_sender')"),
    )
    # FK lookups
    op.create_index("ix_shipments_method_id", "shipments", ["method_id"])
    op.create_index("ix_shipments_carrier_id", "shipments", ["carrier_id"])

    op.create_table(
        "shipment_tracking",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("shipment_id", sa.Uuid(), sa.ForeignKey("shipments.id"), nullable=False),
        sa.Column("carrier_event_id", sa.String(200), nullable=False),
        sa.Column("status", sa.String(30), nullable=False, comment="carrier status as reported"),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("location", sa.String(300), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("first_scan", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("delivered", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.UniqueConstraint("carrier_event_id", name="uq_shipment_tracking_carrier_event_id"),
    )
    # tracking history of a shipment, in order
    op.create_index(
        "ix_shipment_tracking_shipment_occurred", "shipment_tracking", ["shipment_id", "occurred_at"]
    )


def downgrade() -> None:
    op.drop_table("shipment_tracking")
    op.drop_table("shipments")
    op.drop_table("shipping_rates")
    op.drop_table("shipping_methods")
    op.drop_table("shipping_zones")
    op.drop_table("carriers")
    op.drop_table("idempotency_keys")
