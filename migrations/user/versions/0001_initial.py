"""user_db: initial schema

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


def _now(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _user_fk() -> sa.Column:
    return sa.Column(
        "user_id", postgresql.UUID(as_uuid=True),
        sa.ForeignKey("user_profiles.user_id", ondelete="CASCADE"), nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "event_logs",
        sa.Column("key", sa.String(255), primary_key=True, comment="<workflow id>:<step> or a client key"),
        sa.Column("operation", sa.String(100), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        comment="Idempotency ledger: one row per writing operation key, written with its effect",
    )

    op.create_table(
        "user_profiles",
        sa.Column("user_id", postgresql.UUID(as_uuid=True), primary_key=True, comment="auth users.id (no FK across services)"),
        sa.Column("email", sa.String(320), nullable=False, comment="copy of the auth email"),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("locale", sa.String(35), nullable=True, comment="BCP 47"),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint("date_of_birth IS NULL OR date_of_birth >= DATE '1900-01-01'", name="ck_user_profiles_dob"),
    )

    op.create_table(
        "addresses",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        _user_fk(),
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("name", sa.String(200), nullable=False, comment="recipient"),
        sa.Column("line1", sa.String(200), nullable=False),
        sa.Column("line2", sa.String(200), nullable=True),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("region", sa.String(100), nullable=True),
        sa.Column("postal_code", sa.String(20), nullable=False),
        sa.Column("country", sa.CHAR(2), nullable=False, comment="ISO 3166-1 alpha-2"),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False, server_default="false"),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint("type IN ('shipping', 'billing')", name="ck_addresses_type"),
        sa.CheckConstraint("country ~ '^[A-Z]{2}$'", name="ck_addresses_country"),
    )
    op.create_index(
        "uq_addresses_default_per_user_type", "addresses", ["user_id", "type"],
        unique=True, postgresql_where=sa.text("is_default"),
    )
    op.create_index("ix_addresses_user_id_created_at", "addresses", ["user_id", "created_at"])

    op.create_table(
        "payment_methods",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        _user_fk(),
        sa.Column(
            "psp_token_encrypted", sa.Text(), nullable=False,
            comment="Fernet ciphertext of the PSP token (ENCRYPTION_KEY)",
        ),
        sa.Column("brand", sa.String(30), nullable=False),
        sa.Column("last4", sa.CHAR(4), nullable=False),
        sa.Column("exp_month", sa.SmallInteger(), nullable=False),
        sa.Column("exp_year", sa.SmallInteger(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False, server_default="false"),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint("last4 ~ '^[0-9]{4}$'", name="ck_payment_methods_last4"),
        sa.CheckConstraint("exp_month BETWEEN 1 AND 12", name="ck_payment_methods_exp_month"),
        sa.CheckConstraint("exp_year BETWEEN 2000 AND 2199", name="ck_payment_methods_exp_year"),
    )
    op.create_index(
        "uq_payment_methods_default_per_user", "payment_methods", ["user_id"],
        unique=True, postgresql_where=sa.text("is_default"),
    )
    op.create_index("ix_payment_methods_user_id_created_at", "payment_methods", ["user_id", "created_at"])

    op.create_table(
        "user_preferences",
        sa.Column(
            "user_id", postgresql.UUID(as_uuid=True),
            sa.ForeignKey("user_profiles.user_id", ondelete="CASCADE"), primary_key=True,
        ),
        sa.Column("language", sa.String(35), nullable=False, server_default="en"),
        sa.Column("currency", sa.CHAR(3), nullable=False, server_default="USD"),
        sa.Column("marketing_opt_in", sa.Boolean(), nullable=False, server_default="false"),
        sa.Column("extras", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_user_preferences_currency"),
    )

    op.create_table(
        "wishlist_items",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        _user_fk(),
        sa.Column("product_id", postgresql.UUID(as_uuid=True), nullable=False, comment="product service id (no FK)"),
        _now("created_at"),
        sa.UniqueConstraint("user_id", "product_id", name="uq_wishlist_items_user_product"),
    )
    op.create_index(
        "ix_wishlist_items_user_id_created_at_id", "wishlist_items", ["user_id", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_table("wishlist_items")
    op.drop_table("user_preferences")
    op.drop_table("payment_methods")
    op.drop_table("addresses")
    op.drop_table("user_profiles")
    op.drop_table("event_logs")
