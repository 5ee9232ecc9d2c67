"""cart_db: initial schema (carts with semantic checkout lock, cart items, ledger)

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


def upgrade() -> None:
    op.create_table('carts',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('user_id', sa.UUID(), nullable=True),
        sa.Column('guest_token_hash', sa.CHAR(length=64), nullable=True),
        sa.Column('status', sa.String(length=20), server_default='active', nullable=False),
        sa.Column('currency', sa.CHAR(length=3), nullable=False),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        sa.Column('locked_by', sa.String(length=255), nullable=True),
        sa.Column('locked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('order_id', sa.UUID(), nullable=True),
        sa.Column('merged_into_cart_id', sa.UUID(), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("status <> 'locked' OR locked_by IS NOT NULL", name='ck_carts_locked_by'),
        sa.CheckConstraint("status IN ('active', 'locked', 'converted', 'abandoned', 'merged')", name='ck_carts_status'),
        sa.CheckConstraint('user_id IS NOT NULL OR guest_token_hash IS NOT NULL', name='ck_carts_owner'),
        sa.CheckConstraint('version >= 1', name='ck_carts_version'),
        sa.ForeignKeyConstraint(['merged_into_cart_id'], ['carts.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_carts_active_expiry', 'carts', ['expires_at'], unique=False, postgresql_where=sa.text("status = 'active'"))
    op.create_index('ix_carts_merged_into', 'carts', ['merged_into_cart_id'], unique=False)
    op.create_index('uq_carts_guest_token_hash', 'carts', ['guest_token_hash'], unique=True, postgresql_where=sa.text('guest_token_hash IS NOT NULL'))
    op.create_index('uq_carts_user_open', 'carts', ['user_id'], unique=True, postgresql_where=sa.text("status IN ('active', 'locked')"))
    op.create_table('idempotency_keys',
        sa.Column('key', sa.String(length=255), nullable=False, comment='<workflow id>:<step> or a client key'),
        sa.Column('operation', sa.String(length=100), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('key'),
        comment='Idempotency ledger: one row per writing operation key, written with its effect'
    )
    op.create_table('cart_items',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('cart_id', sa.UUID(), nullable=False),
        sa.Column('variant_id', sa.UUID(), nullable=False),
        sa.Column('product_id', sa.UUID(), nullable=False),
        sa.Column('quantity', sa.Integer(), nullable=False),
        sa.Column('unit_price_amount', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.CHAR(length=3), nullable=False),
        sa.Column('added_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint('quantity BETWEEN 1 AND 99', name='ck_cart_items_quantity'),
        sa.CheckConstraint('unit_price_amount >= 0', name='ck_cart_items_unit_price_amount'),
        sa.ForeignKeyConstraint(['cart_id'], ['carts.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('cart_id', 'variant_id', name='uq_cart_items_cart_variant')
    )


def downgrade() -> None:
    op.drop_table("cart_items")
    op.drop_table("carts")
    op.drop_table("idempotency_keys")

