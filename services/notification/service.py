"""Rules of the notification service: templates, preferences, the notification record. Never commits.

Sending (orchestrated by ``activities.notification``, which talks to SMTP):

1. ``prepare``: under a lock on the idempotency key, find the template (locale, then its language,
   then ``en``), render it (a missing variable is ``TemplateRenderError``, nothing written), check
   the user's preference for the template's category, and find or create the notification row (its
   id is ``uuid5(key)``). A disabled category records the notification as ``suppressed``.
2. the mail is sent with a Message-ID derived from the key (the mailer does this);
3. ``record_attempt`` logs the attempt in ``notification_logs`` and updates the notification: a
   success is written with the ledger row in one transaction, so a retried activity after it sends
   nothing; a failure is committed on its own before the error is raised, so its log survives.

Preferences: one row per (user, category, channel); without a row a category has its default
(transactional and order_updates on, marketing off). ``security`` mails (verification, password
reset) are always sent and cannot be switched off.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core import partitions
from services.notification import repository as repo
from services.notification.errors import (
    DuplicateTemplate,
    PreferenceNotEditable,
    TemplateNotFound,
)
from services.notification.models import (
    EDITABLE_CATEGORIES,
    PARTITIONED_TABLE,
    AttemptStatus,
    Category,
    Channel,
    EmailTemplate,
    Notification,
    NotificationStatus,
)
from services.notification.rendering import RenderedEmail, check_compiles, render
from services.notification.schemas import (
    PartitionsEnsured,
    PreferenceUpdate,
    PreferenceView,
    RenderedView,
    TemplateIn,
    TemplateUpdate,
    TemplateView,
)

DEFAULT_LOCALE = "en"
DEFAULTS: dict[str, bool] = {
    Category.TRANSACTIONAL: True,
    Category.ORDER_UPDATES: True,
    Category.MARKETING: False,
}
# Notification ids are derived from the idempotency key: a retry finds the row it created.
NOTIFICATION_NAMESPACE = uuid.UUID("5d1c0f7e-2b8a-4c55-9d6e-6f0a3b7c9e21")

# The context each seeded template needs (filters: money(currency), date).
TEMPLATE_VARIABLES: dict[str, tuple[str, ...]] = {
    "welcome_verify_email": ("first_name", "verification_url", "expires_hours"),
    "password_reset": ("first_name", "reset_url", "expires_minutes"),
    "order_confirmed": (
        "first_name",
        "order_number",
        "items[{name, quantity, line_amount}]",
        "total_amount",
        "currency",
    ),
    "payment_failed": ("first_name", "order_number", "reason"),
    "order_shipped": (
        "first_name",
        "order_number",
        "carrier_name",
        "tracking_number",
        "tracking_url (may be null)",
    ),
    "order_delivered": ("first_name", "order_number", "return_window_days"),
    "return_approved": ("first_name", "order_number", "rma_number", "label_url", "expires_at (ISO datetime)"),
    "refund_issued": ("first_name", "order_number", "rma_number", "refund_amount", "currency"),
    "support_alert": ("workflow_id", "workflow_type", "reason", "step", "ui_url", "todo"),
}


SECRET_PLACEHOLDER = "[secret: in the mail only]"


def notification_id_for(idempotency_key: str) -> uuid.UUID:
    return uuid.uuid5(NOTIFICATION_NAMESPACE, idempotency_key)


# --------------------------------------------------------------------------------------------
# Templates and preferences


def _locales(locale: str) -> list[str]:
    candidates = [locale, locale.split("-")[0], DEFAULT_LOCALE]
    return list(dict.fromkeys(candidates))


async def resolve_template(session: AsyncSession, key: str, locale: str) -> EmailTemplate:
    for candidate in _locales(locale):
        found = await repo.template(session, key, candidate)
        if found is not None:
            return found
    raise TemplateNotFound(
        f"no active email template {key!r} for locale {locale!r}", template_key=key, locale=locale
    )


def render_template(template: EmailTemplate, context: dict[str, Any]) -> RenderedEmail:
    return render(
        name=f"{template.key} ({template.locale})",
        subject=template.subject_template,
        text=template.text_template,
        html=template.html_template,
        context=context,
    )


async def category_enabled(session: AsyncSession, user_id: uuid.UUID | None, category: str) -> bool:
    if category == Category.SECURITY:
        return True
    if user_id is None:  # no account to hold a preference: the default
        return DEFAULTS.get(category, False)
    chosen = await repo.preferences(session, user_id)
    return chosen.get((category, Channel.EMAIL), DEFAULTS.get(category, False))


async def get_preferences(session: AsyncSession, user_id: uuid.UUID) -> list[PreferenceView]:
    chosen = await repo.preferences(session, user_id)
    views = [PreferenceView(category="security", channel="email", enabled=True, editable=False)]
    for category in EDITABLE_CATEGORIES:
        enabled = chosen.get((category, Channel.EMAIL), DEFAULTS[category])
        views.append(PreferenceView(category=category.value, channel="email", enabled=enabled, editable=True))
    return views


async def update_preferences(
    session: AsyncSession, user_id: uuid.UUID, changes: list[PreferenceUpdate]
) -> list[PreferenceView]:
    for change in changes:
        if change.category == Category.SECURITY:
            raise PreferenceNotEditable("security emails (verification, password reset) are always sent")
    for change in changes:
        await repo.upsert_preference(session, user_id, change.category, change.channel, change.enabled)
    return await get_preferences(session, user_id)


# --------------------------------------------------------------------------------------------
# Sending


@dataclass(frozen=True)
class Prepared:
    notification: Notification
    rendered: RenderedEmail


async def prepare(
    session: AsyncSession,
    *,
    idempotency_key: str,
    user_id: uuid.UUID | None,
    recipient: str,
    event_type: str,
    template_key: str,
    locale: str,
    context: dict[str, Any],
    secret_context: dict[str, str] | None = None,
) -> Prepared:
    """Render and find-or-create the notification of ``idempotency_key`` (see module doc).
    ``secret_context`` (one-time links) is rendered into the mail but never stored: the row keeps
    ``SECRET_PLACEHOLDER`` under those names."""
    await repo.lock_key(session, idempotency_key)
    template = await resolve_template(session, template_key, locale)
    secrets = secret_context or {}
    rendered = render_template(template, {**context, **secrets})
    notification_id = notification_id_for(idempotency_key)
    existing = await repo.get_notification(session, notification_id, for_update=True)
    if existing is not None:
        return Prepared(existing, rendered)
    enabled = await category_enabled(session, user_id, template.category)
    created = await repo.insert_notification(
        session,
        {
            "id": notification_id,
            "user_id": user_id,
            "channel": Channel.EMAIL,
            "event_type": event_type,
            "category": template.category,
            "recipient": recipient,
            "subject": rendered.subject[:500],
            "status": NotificationStatus.PENDING if enabled else NotificationStatus.SUPPRESSED,
            "idempotency_key": idempotency_key,
            "template_key": template.key,
            "locale": template.locale,
            "template_version": template.version,
            "context": {**context, **dict.fromkeys(secrets, SECRET_PLACEHOLDER)},
        },
    )
    return Prepared(created, rendered)


async def record_attempt(
    session: AsyncSession,
    notification_id: uuid.UUID,
    *,
    status: AttemptStatus,
    smtp_response: str | None = None,
    error: str | None = None,
    message_id: str | None = None,
) -> Notification:
    """Log one delivery attempt and update the notification accordingly."""
    notification = await repo.get_notification(session, notification_id, for_update=True)
    assert notification is not None and notification.created_at is not None
    attempt = notification.attempts + 1
    await repo.add_log(
        session,
        notification_id=notification.id,
        notification_created_at=notification.created_at,
        attempt=attempt,
        status=status,
        smtp_response=smtp_response,
        error=error,
    )
    values: dict[str, Any] = {"attempts": attempt, "error": error}
    if status == AttemptStatus.SENT:
        values.update(status=NotificationStatus.SENT, message_id=message_id, error=None, sent_at=func.now())
    elif status == AttemptStatus.PERMFAIL:
        values["status"] = NotificationStatus.FAILED
    await repo.update_notification(session, notification.id, notification.created_at, values)
    found = await repo.get_notification(session, notification_id)
    assert found is not None
    return found


async def ensure_partitions(
    session: AsyncSession, today: date, months_ahead: int, keep_months: int = 0
) -> PartitionsEnsured:
    """Create the monthly partitions of ``notifications`` up to ``months_ahead`` and drop those older
    than the ``keep_months`` whole months before this one (0: keep all), with their delivery logs."""
    created = await repo.create_monthly_partitions(session, today, months_ahead)
    expired = partitions.expired_monthly_partitions(
        await repo.existing_partitions(session), PARTITIONED_TABLE, today, keep_months
    )
    await repo.drop_monthly_partitions(session, expired)
    return PartitionsEnsured(
        created=created, existing=sorted(await repo.existing_partitions(session)), dropped=expired
    )


# --------------------------------------------------------------------------------------------
# Template administration


def _validate(subject: str, text: str, html: str | None) -> None:
    check_compiles("subject_template", subject)
    check_compiles("text_template", text)
    if html is not None:
        check_compiles("html_template", html, html=True)


async def list_templates(session: AsyncSession, key: str | None = None) -> list[TemplateView]:
    return [TemplateView.model_validate(t) for t in await repo.templates(session, key)]


async def get_template(session: AsyncSession, key: str, locale: str = DEFAULT_LOCALE) -> TemplateView:
    found = await repo.template(session, key, locale, active_only=False)
    if found is None:
        raise TemplateNotFound(
            f"no email template {key!r} for locale {locale!r}", template_key=key, locale=locale
        )
    return TemplateView.model_validate(found)


async def create_template(session: AsyncSession, data: TemplateIn) -> TemplateView:
    _validate(data.subject_template, data.text_template, data.html_template)
    template = EmailTemplate(**data.model_dump())
    try:
        async with session.begin_nested():
            session.add(template)
            await session.flush()
    except IntegrityError as exc:
        raise DuplicateTemplate(f"template {data.key!r} ({data.locale}) already exists") from exc
    return TemplateView.model_validate(template)


async def update_template(session: AsyncSession, key: str, locale: str, data: TemplateUpdate) -> TemplateView:
    """Change a template (validated before it is stored); every change bumps its version."""
    template = await repo.template(session, key, locale, active_only=False)
    if template is None:
        raise TemplateNotFound(
            f"no email template {key!r} for locale {locale!r}", template_key=key, locale=locale
        )
    changes = data.model_dump(exclude_unset=True, exclude={"clear_html"})
    if data.clear_html:
        changes["html_template"] = None
    subject = changes.get("subject_template", template.subject_template)
    text = changes.get("text_template", template.text_template)
    html = changes["html_template"] if "html_template" in changes else template.html_template
    _validate(subject, text, html)
    for name, value in changes.items():
        setattr(template, name, value)
    template.version += 1
    template.updated_at = func.now()  # type: ignore[assignment]  # SQL expression, evaluated on flush
    await session.flush()
    await session.refresh(template)
    return TemplateView.model_validate(template)


async def preview_template(
    session: AsyncSession, key: str, locale: str, context: dict[str, Any]
) -> RenderedView:
    found = await repo.template(session, key, locale, active_only=False)
    if found is None:
        raise TemplateNotFound(
            f"no email template {key!r} for locale {locale!r}", template_key=key, locale=locale
        )
    rendered = render_template(found, context)
    return RenderedView(subject=rendered.subject, text=rendered.text, html=rendered.html)
