"""notification_db: initial schema (monthly-partitioned notifications, templates with seeds,
preferences, delivery logs, ledger)

Revision ID: 0001
Revises:
"""

import uuid
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

CATEGORIES = "'security', 'transactional', 'order_updates', 'marketing'"

_SIGNATURE = "The sagashop team"
_HTML_SIGNATURE = "<p>The sagashop team</p>"

# (key, category, description, subject, text, html). Variables are documented in
# services/notification/service.py (TEMPLATE_VARIABLES); filters: money(currency), date.
SEED_TEMPLATES: list[tuple[str, str, str, str, str, str]] = [
    (
        "welcome_verify_email",
        "security",
        "After registration: welcome and confirm the email address",
        "Welcome to sagashop, {{ first_name }}! Please confirm your email",
        "Hi {{ first_name }},\n\n"
        "welcome to sagashop, we're glad you're here!\n\n"
        "Please confirm your email address so we know it's really you:\n\n"
        "{{ verification_url }}\n\n"
        "The link is valid for {{ expires_hours }} hours. If you didn't create an account, you can "
        "simply ignore this email.\n\n"
        f"Happy shopping,\n{_SIGNATURE}\n",
        "<p>Hi {{ first_name }},</p>\n"
        "<p>welcome to sagashop, we're glad you're here!</p>\n"
        "<p>Please confirm your email address so we know it's really you:</p>\n"
        '<p><a href="{{ verification_url }}">Confirm my email address</a></p>\n'
        "<p>The link is valid for {{ expires_hours }} hours. If you didn't create an account, you can "
        "simply ignore this email.</p>\n"
        f"<p>Happy shopping,</p>\n{_HTML_SIGNATURE}\n",
    ),
    (
        "password_reset",
        "security",
        "A password reset link",
        "Reset your sagashop password",
        "Hi {{ first_name }},\n\n"
        "someone (hopefully you) asked to reset the password of your sagashop account. "
        "Choose a new password here:\n\n"
        "{{ reset_url }}\n\n"
        "The link works once and expires in {{ expires_minutes }} minutes. If you didn't ask for this, "
        "just ignore this email: your password stays as it is.\n\n"
        f"{_SIGNATURE}\n",
        "<p>Hi {{ first_name }},</p>\n"
        "<p>someone (hopefully you) asked to reset the password of your sagashop account.</p>\n"
        '<p><a href="{{ reset_url }}">Choose a new password</a></p>\n'
        "<p>The link works once and expires in {{ expires_minutes }} minutes. If you didn't ask for "
        "this, just ignore this email: your password stays as it is.</p>\n"
        f"{_HTML_SIGNATURE}\n",
    ),
    (
        "order_confirmed",
        "transactional",
        "The order is placed and paid",
        "Order {{ order_number }} confirmed - thank you!",
        "Hi {{ first_name }},\n\n"
        "thank you for your order {{ order_number }}! Here is what we're getting ready for you:\n\n"
        "{% for item in items %}\n"
        "  {{ item.quantity }} x {{ item.name }}  {{ item.line_amount | money(currency) }}\n"
        "{% endfor %}\n\n"
        "Total: {{ total_amount | money(currency) }}\n\n"
        "We'll write again as soon as your parcel is on its way.\n\n"
        f"{_SIGNATURE}\n",
        "<p>Hi {{ first_name }},</p>\n"
        "<p>thank you for your order <strong>{{ order_number }}</strong>! Here is what we're getting "
        "ready for you:</p>\n"
        "<table>\n"
        "{% for item in items %}\n"
        "  <tr><td>{{ item.quantity }} &times;</td><td>{{ item.name }}</td>"
        "<td>{{ item.line_amount | money(currency) }}</td></tr>\n"
        "{% endfor %}\n"
        "</table>\n"
        "<p><strong>Total: {{ total_amount | money(currency) }}</strong></p>\n"
        "<p>We'll write again as soon as your parcel is on its way.</p>\n"
        f"{_HTML_SIGNATURE}\n",
    ),
    (
        "payment_failed",
        "transactional",
        "The payment of a checkout failed; nothing was charged",
        "We couldn't process the payment for order {{ order_number }}",
        "Hi {{ first_name }},\n\n"
        "unfortunately the payment for your order {{ order_number }} did not go through "
        "({{ reason }}). We have not charged you, and the order was not placed.\n\n"
        "Your cart is still waiting for you: you can try again with another card or payment method "
        "whenever you like.\n\n"
        f"{_SIGNATURE}\n",
        "<p>Hi {{ first_name }},</p>\n"
        "<p>unfortunately the payment for your order <strong>{{ order_number }}</strong> did not go "
        "through ({{ reason }}). We have not charged you, and the order was not placed.</p>\n"
        "<p>Your cart is still waiting for you: you can try again with another card or payment method "
        "whenever you like.</p>\n"
        f"{_HTML_SIGNATURE}\n",
    ),
    (
        "order_shipped",
        "order_updates",
        "The parcel was handed to the carrier",
        "Your order {{ order_number }} is on its way",
        "Hi {{ first_name }},\n\n"
        "good news: your order {{ order_number }} has left our warehouse with {{ carrier_name }}.\n\n"
        "Tracking number: {{ tracking_number }}\n"
        "{% if tracking_url %}\n"
        "Follow your parcel: {{ tracking_url }}\n"
        "{% endif %}\n\n"
        f"{_SIGNATURE}\n",
        "<p>Hi {{ first_name }},</p>\n"
        "<p>good news: your order <strong>{{ order_number }}</strong> has left our warehouse with "
        "{{ carrier_name }}.</p>\n"
        "<p>Tracking number: {{ tracking_number }}</p>\n"
        "{% if tracking_url %}\n"
        '<p><a href="{{ tracking_url }}">Follow your parcel</a></p>\n'
        "{% endif %}\n"
        f"{_HTML_SIGNATURE}\n",
    ),
    (
        "order_delivered",
        "order_updates",
        "The carrier delivered the parcel",
        "Your order {{ order_number }} has been delivered",
        "Hi {{ first_name }},\n\n"
        "your order {{ order_number }} has been delivered. We hope you love it!\n\n"
        "If something isn't right, you can return items within {{ return_window_days }} days from "
        "your order page.\n\n"
        f"{_SIGNATURE}\n",
        "<p>Hi {{ first_name }},</p>\n"
        "<p>your order <strong>{{ order_number }}</strong> has been delivered. We hope you love it!</p>\n"
        "<p>If something isn't right, you can return items within {{ return_window_days }} days from "
        "your order page.</p>\n"
        f"{_HTML_SIGNATURE}\n",
    ),
    (
        "return_approved",
        "transactional",
        "A return is approved; the RMA and its label",
        "Your return {{ rma_number }} is approved",
        "Hi {{ first_name }},\n\n"
        "we've approved your return for order {{ order_number }}. Your return number is "
        "{{ rma_number }}.\n\n"
        "Print your prepaid return label here: {{ label_url }}\n"
        "Please pack the items securely and hand the parcel to the carrier before "
        "{{ expires_at | date }}.\n\n"
        "As soon as we have received and checked your parcel, we'll refund you.\n\n"
        f"{_SIGNATURE}\n",
        "<p>Hi {{ first_name }},</p>\n"
        "<p>we've approved your return for order <strong>{{ order_number }}</strong>. Your return "
        "number is <strong>{{ rma_number }}</strong>.</p>\n"
        '<p><a href="{{ label_url }}">Print your prepaid return label</a> and hand the parcel to the '
        "carrier before {{ expires_at | date }}.</p>\n"
        "<p>As soon as we have received and checked your parcel, we'll refund you.</p>\n"
        f"{_HTML_SIGNATURE}\n",
    ),
    (
        "refund_issued",
        "transactional",
        "A refund was issued for a return",
        "Your refund of {{ refund_amount | money(currency) }} is on its way",
        "Hi {{ first_name }},\n\n"
        "we've received and checked your return {{ rma_number }} for order {{ order_number }} and "
        "refunded {{ refund_amount | money(currency) }} to your original payment method.\n\n"
        "Depending on your bank, it can take a few business days to show on your statement.\n\n"
        f"Thank you for shopping with us,\n{_SIGNATURE}\n",
        "<p>Hi {{ first_name }},</p>\n"
        "<p>we've received and checked your return <strong>{{ rma_number }}</strong> for order "
        "{{ order_number }} and refunded <strong>{{ refund_amount | money(currency) }}</strong> to your "
        "original payment method.</p>\n"
        "<p>Depending on your bank, it can take a few business days to show on your statement.</p>\n"
        f"<p>Thank you for shopping with us,</p>\n{_HTML_SIGNATURE}\n",
    ),
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
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True, comment="auth_db users.id"),
        sa.Column("channel", sa.String(20), server_default=sa.text("'email'"), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("category", sa.String(30), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(500), nullable=True),
        sa.Column("status", sa.String(20), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("template_key", sa.String(100), nullable=False),
        sa.Column("locale", sa.String(10), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=True),
        sa.Column("context", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", "created_at"),
        # the most uniqueness partitioning allows; the ledger is what dedupes keys
        sa.UniqueConstraint("idempotency_key", "created_at", name="uq_notifications_idempotency_key_created"),
        sa.CheckConstraint("channel IN ('email')", name="ck_notifications_channel"),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'suppressed')", name="ck_notifications_status"
        ),
        sa.CheckConstraint(f"category IN ({CATEGORIES})", name="ck_notifications_category"),
        sa.CheckConstraint("attempts >= 0", name="ck_notifications_attempts"),
        postgresql_partition_by="RANGE (created_at)",
    )
    # a user's notifications, newest first (support, "my notifications")
    op.create_index("ix_notifications_user_created", "notifications", ["user_id", "created_at"])
    # operations: undelivered mails (pending or failed) by age
    op.create_index(
        "ix_notifications_undelivered",
        "notifications",
        ["status", "created_at"],
        postgresql_where=sa.text("status IN ('pending', 'failed')"),
    )
    for ddl in partitions.monthly_partitions_ddl("notifications", date.today()):
        op.execute(ddl)

    templates = op.create_table(
        "email_templates",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("locale", sa.String(10), server_default=sa.text("'en'"), nullable=False),
        sa.Column("category", sa.String(30), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("subject_template", sa.Text(), nullable=False),
        sa.Column("text_template", sa.Text(), nullable=False),
        sa.Column("html_template", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        # template lookup by key and locale
        sa.UniqueConstraint("key", "locale", name="uq_email_templates_key_locale"),
        sa.CheckConstraint(f"category IN ({CATEGORIES})", name="ck_email_templates_category"),
        sa.CheckConstraint("version > 0", name="ck_email_templates_version"),
    )
    assert templates is not None
    op.bulk_insert(
        templates,
        [
            {
                "id": uuid.uuid4(),
                "key": key,
                "locale": "en",
                "category": category,
                "description": description,
                "subject_template": subject,
                "text_template": text,
                "html_template": html,
            }
            for key, category, description, subject, text, html in SEED_TEMPLATES
        ],
    )

    op.create_table(
        "notification_preferences",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), nullable=False, comment="auth_db users.id"),
        sa.Column("category", sa.String(30), nullable=False),
        sa.Column("channel", sa.String(20), server_default=sa.text("'email'"), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        # a user's preferences; the upsert target
        sa.UniqueConstraint(
            "user_id", "category", "channel", name="uq_notification_preferences_user_category_channel"
        ),
        sa.CheckConstraint(
            "category IN ('transactional', 'order_updates', 'marketing')",
            name="ck_notification_preferences_category",
        ),
        sa.CheckConstraint("channel IN ('email')", name="ck_notification_preferences_channel"),
    )

    op.create_table(
        "notification_logs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("notification_id", sa.Uuid(), nullable=False),
        sa.Column("notification_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("smtp_response", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["notification_id", "notification_created_at"],
            ["notifications.id", "notifications.created_at"],
            name="fk_notification_logs_notification",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("attempt > 0", name="ck_notification_logs_attempt"),
        sa.CheckConstraint("status IN ('sent', 'tempfail', 'permfail')", name="ck_notification_logs_status"),
    )
    # the attempts of one notification, in order (and the FK lookup)
    op.create_index(
        "ix_notification_logs_notification",
        "notification_logs",
        ["notification_id", "notification_created_at", "attempt"],
    )


def downgrade() -> None:
    op.drop_table("notification_logs")
    op.drop_table("notification_preferences")
    op.drop_table("email_templates")
    # Dropping the partitioned parent drops its monthly partitions.
    op.drop_table("notifications")
    op.drop_table("idempotency_keys")
