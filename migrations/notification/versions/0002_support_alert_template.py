"""notification_db: the ``support_alert`` template (a saga parked for support mails SUPPORT_ALERT_EMAIL)

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
    "A {{ workflow_type }} saga is waiting for a decision from support.\n\n"
    "Workflow: {{ workflow_id }}\n"
    "{% if step %}Step: {{ step }}\n{% endif %}"
    "Why: {{ reason }}\n\n"
    "{% if ui_url %}Open it in the Temporal Web UI: {{ ui_url }}\n{% endif %}"
    "Decide with the workflow's `resolve` update (action retry or skip, with a note), from the Web UI "
    "or with POST {{ resolve_path }}.\n\n"
    "Nothing moves until someone decides; this mail is sent each time the saga parks.\n"
)
HTML = (
    "<p>A <strong>{{ workflow_type }}</strong> saga is waiting for a decision from support.</p>\n"
    "<ul><li>Workflow: <code>{{ workflow_id }}</code></li>\n"
    "{% if step %}<li>Step: {{ step }}</li>{% endif %}\n"
    "<li>Why: {{ reason }}</li></ul>\n"
    '{% if ui_url %}<p><a href="{{ ui_url }}">Open it in the Temporal Web UI</a></p>{% endif %}\n'
    "<p>Decide with the workflow's <code>resolve</code> update (action retry or skip, with a note), "
    "from the Web UI or with <code>POST {{ resolve_path }}</code>.</p>\n"
    "<p>Nothing moves until someone decides; this mail is sent each time the saga parks.</p>\n"
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
                "description": "To support: a saga is parked and waits for a decision",
                "subject_template": SUBJECT,
                "text_template": TEXT,
                "html_template": HTML,
            }
        ],
    )


def downgrade() -> None:
    op.execute(_templates.delete().where(_templates.c.key == "support_alert"))
