"""notification_db: the ``support_alert`` template (a saga that needs support mails SUPPORT_ALERT_EMAIL)

Revision ID: 0002
Revises: 0001
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Variables: services/notification/service.py TEMPLATE_VARIABLES["support_alert"].
SUBJECT = "[needs attention] {{ workflow_type }} {{ workflow_id }}"
TEXT = (
    "A {{ workflow_type }} saga needs support.\n\n"
    "Workflow: {{ workflow_id }}\n"
    "{% if step %}Step: {{ step }}\n{% endif %}"
    "Why: {{ reason }}\n\n"
    "{% if ui_url %}Open it in the Temporal Web UI: {{ ui_url }}\n{% endif %}"
    "{{ todo }}\n"
)
HTML = (
    "<p>A <strong>{{ workflow_type }}</strong> saga needs support.</p>\n"
    "<ul><li>Workflow: <code>{{ workflow_id }}</code></li>\n"
    "{% if step %}<li>Step: {{ step }}</li>{% endif %}\n"
    "<li>Why: {{ reason }}</li></ul>\n"
    '{% if ui_url %}<p><a href="{{ ui_url }}">Open it in the Temporal Web UI</a></p>{% endif %}\n'
    "<p>{{ todo }}</p>\n"
)

_templates = sa.table(
    "email_templates",
    sa.column("id", sa.Uuid()),
    sa.column("key", sa.String()),
    sa.column("locale", sa.String()),
    sa.column("category", sa.String()),
    sa.column("description", sa.Text()),
    sa.column("subject_template", sa.Text()),
    sa.column("text_template", sa.Text()),
    sa.column("html_template", sa.Text()),
)


def upgrade() -> None:
    op.bulk_insert(
        _templates,
        [
            {
                "id": uuid.uuid4(),
                "key": "support_alert",
                "locale": "en",
                "category": "transactional",
                "description": "To support: a saga needs attention (parked for a decision, stalled, escalated)",
                "subject_template": SUBJECT,
                "text_template": TEXT,
                "html_template": HTML,
            }
        ],
    )


def downgrade() -> None:
    op.execute(_templates.delete().where(_templates.c.key == "support_alert"))
