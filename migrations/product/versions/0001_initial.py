"""product_db: initial schema (catalog, variants, inventory and reservations, reviews, tags, ledger)

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
    op.create_table('categories',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('parent_id', sa.UUID(), nullable=True),
        sa.Column('slug', sa.String(length=120), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('position', sa.Integer(), server_default='0', nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['parent_id'], ['categories.id'], ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('slug', name='uq_categories_slug')
    )
    op.create_index('ix_categories_parent_position', 'categories', ['parent_id', 'position'], unique=False)
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
    op.create_table('products',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('sku', sa.String(length=64), nullable=False),
        sa.Column('slug', sa.String(length=200), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.Text(), server_default='', nullable=False),
        sa.Column('brand', sa.String(length=120), nullable=True),
        sa.Column('status', sa.String(length=20), server_default='draft', nullable=False),
        sa.Column('price_amount', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.CHAR(length=3), nullable=False),
        sa.Column('weight_grams', sa.Integer(), server_default='0', nullable=False),
        sa.Column('rating_avg', sa.Numeric(precision=3, scale=2), server_default='0', nullable=False),
        sa.Column('rating_count', sa.Integer(), server_default='0', nullable=False),
        sa.Column('search_vector', postgresql.TSVECTOR(), sa.Computed("setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A') || setweight(to_tsvector('english'::regconfig, coalesce(brand, '')), 'B') || setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')", persisted=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("status IN ('draft', 'active', 'archived')", name='ck_products_status'),
        sa.CheckConstraint('price_amount >= 0', name='ck_products_price_amount'),
        sa.CheckConstraint('rating_avg >= 0 AND rating_avg <= 5', name='ck_products_rating_avg'),
        sa.CheckConstraint('rating_count >= 0', name='ck_products_rating_count'),
        sa.CheckConstraint('weight_grams >= 0', name='ck_products_weight_grams'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('sku', name='uq_products_sku'),
        sa.UniqueConstraint('slug', name='uq_products_slug')
    )
    op.create_index('ix_products_brand', 'products', ['brand'], unique=False)
    op.create_index('ix_products_search_vector', 'products', ['search_vector'], unique=False, postgresql_using='gin')
    op.create_index('ix_products_status_created', 'products', ['status', 'created_at', 'id'], unique=False)
    op.create_index('ix_products_status_price', 'products', ['status', 'price_amount', 'id'], unique=False)
    op.create_index('ix_products_status_rating', 'products', ['status', 'rating_avg', 'id'], unique=False)
    op.create_table('product_categories',
        sa.Column('product_id', sa.UUID(), nullable=False),
        sa.Column('category_id', sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(['category_id'], ['categories.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['product_id'], ['products.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('product_id', 'category_id', name='pk_product_categories')
    )
    op.create_index('ix_product_categories_category', 'product_categories', ['category_id', 'product_id'], unique=False)
    op.create_table('product_tags',
        sa.Column('product_id', sa.UUID(), nullable=False),
        sa.Column('tag', sa.String(length=50), nullable=False),
        sa.ForeignKeyConstraint(['product_id'], ['products.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('product_id', 'tag', name='pk_product_tags')
    )
    op.create_index('ix_product_tags_tag', 'product_tags', ['tag', 'product_id'], unique=False)
    op.create_table('product_variants',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('product_id', sa.UUID(), nullable=False),
        sa.Column('sku', sa.String(length=64), nullable=False),
        sa.Column('options', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column('price_amount', sa.BigInteger(), nullable=True),
        sa.Column('currency', sa.CHAR(length=3), nullable=True),
        sa.Column('weight_grams', sa.Integer(), nullable=True),
        sa.Column('is_active', sa.Boolean(), server_default='true', nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint('(price_amount IS NULL) = (currency IS NULL)', name='ck_product_variants_price_currency'),
        sa.CheckConstraint('price_amount IS NULL OR price_amount >= 0', name='ck_product_variants_price_amount'),
        sa.CheckConstraint('weight_grams IS NULL OR weight_grams >= 0', name='ck_product_variants_weight_grams'),
        sa.ForeignKeyConstraint(['product_id'], ['products.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('sku', name='uq_product_variants_sku')
    )
    op.create_index('ix_product_variants_product', 'product_variants', ['product_id'], unique=False)
    op.create_table('reviews',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('product_id', sa.UUID(), nullable=False),
        sa.Column('user_id', sa.UUID(), nullable=False),
        sa.Column('order_id', sa.UUID(), nullable=True),
        sa.Column('rating', sa.SmallInteger(), nullable=False),
        sa.Column('title', sa.String(length=200), server_default='', nullable=False),
        sa.Column('body', sa.Text(), server_default='', nullable=False),
        sa.Column('status', sa.String(length=20), server_default='published', nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("status IN ('published', 'hidden')", name='ck_reviews_status'),
        sa.CheckConstraint('rating BETWEEN 1 AND 5', name='ck_reviews_rating'),
        sa.ForeignKeyConstraint(['product_id'], ['products.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('product_id', 'user_id', name='uq_reviews_product_user')
    )
    op.create_index('ix_reviews_product_status_created', 'reviews', ['product_id', 'status', 'created_at', 'id'], unique=False)
    op.create_index('ix_reviews_user', 'reviews', ['user_id'], unique=False)
    op.create_table('inventory',
        sa.Column('variant_id', sa.UUID(), nullable=False),
        sa.Column('on_hand', sa.Integer(), server_default='0', nullable=False),
        sa.Column('reserved', sa.Integer(), server_default='0', nullable=False),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint('on_hand >= 0', name='ck_inventory_on_hand'),
        sa.CheckConstraint('reserved >= 0 AND reserved <= on_hand', name='ck_inventory_reserved'),
        sa.ForeignKeyConstraint(['variant_id'], ['product_variants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('variant_id')
    )
    op.create_table('inventory_reservations',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('order_id', sa.UUID(), nullable=False),
        sa.Column('variant_id', sa.UUID(), nullable=False),
        sa.Column('quantity', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=20), server_default='active', nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("status IN ('active', 'committed', 'released', 'expired')", name='ck_inventory_reservations_status'),
        sa.CheckConstraint('quantity > 0', name='ck_inventory_reservations_quantity'),
        sa.ForeignKeyConstraint(['variant_id'], ['product_variants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('order_id', 'variant_id', name='uq_inventory_reservations_order_variant')
    )
    op.create_index('ix_inventory_reservations_active_expiry', 'inventory_reservations', ['expires_at'], unique=False, postgresql_where=sa.text("status = 'active'"))
    op.create_index('ix_inventory_reservations_variant', 'inventory_reservations', ['variant_id'], unique=False)
    op.create_table('product_images',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('product_id', sa.UUID(), nullable=False),
        sa.Column('variant_id', sa.UUID(), nullable=True),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('alt', sa.String(length=255), server_default='', nullable=False),
        sa.Column('position', sa.Integer(), server_default='0', nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['product_id'], ['products.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['variant_id'], ['product_variants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_product_images_product_position', 'product_images', ['product_id', 'position'], unique=False)
    op.create_index('ix_product_images_variant', 'product_images', ['variant_id'], unique=False)


def downgrade() -> None:
    op.drop_table("inventory_reservations")
    op.drop_table("inventory")
    op.drop_table("product_images")
    op.drop_table("reviews")
    op.drop_table("product_tags")
    op.drop_table("product_categories")
    op.drop_table("product_variants")
    op.drop_table("products")
    op.drop_table("categories")
    op.drop_table("idempotency_keys")

