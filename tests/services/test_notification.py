"""Notification service on the real notification_db; mail through the SMTP sink as a real subprocess."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import col
from temporalio.exceptions import ApplicationError

from activities.notification import SENDER, EnsurePartitionsInput, NotificationActivities, SendInput
from core.crypto import TokenCipher
from core.db import SessionFactory
from core.partitions import add_months, month_start, monthly_partition_ddl, monthly_partition_name
from services.notification import service
from services.notification.errors import (
    DuplicateTemplate,
    PreferenceNotEditable,
    TemplateInvalid,
    TemplateRenderError,
)
from services.notification.mailer import Mailer, message_id_for
from services.notification.models import Notification, NotificationLog, ledger
from services.notification.rendering import check_compiles, money, render
from services.notification.schemas import PreferenceUpdate, TemplateIn, TemplateUpdate
from tests.sandboxes import conftest as sandboxes
from tests.sandboxes.conftest import SmtpSink

# The SMTP sink fixture (a real subprocess), made visible to this module.
smtp_sink = sandboxes.smtp_sink

CONTEXTS: dict[str, dict[str, Any]] = {
    "welcome_verify_email": {
        "first_name": "Ada",
        "verification_url": "https://shop.test/v/abc",
        "expires_hours": 24,
    },
    "password_reset": {"first_name": "Ada", "reset_url": "https://shop.test/r/xyz", "expires_minutes": 30},
    "order_confirmed": {
        "first_name": "Ada",
        "order_number": "SO-2026-000001",
        "items": [{"name": "Blue mug", "quantity": 2, "line_amount": 2400}],
        "total_amount": 3099,
        "currency": "USD",
    },
    "payment_failed": {"first_name": "Ada", "order_number": "SO-2026-000002", "reason": "card declined"},
    "order_shipped": {
        "first_name": "Ada",
        "order_number": "SO-2026-000003",
        "carrier_name": "Sandbox Carrier",
        "tracking_number": "SB00000000000042",
        "tracking_url": None,
    },
    "order_delivered": {"first_name": "Ada", "order_number": "SO-2026-000004", "return_window_days": 30},
    "return_approved": {
        "first_name": "Ada",
        "order_number": "SO-2026-000005",
        "rma_number": "RMA-ABC",
        "label_url": "https://carrier.test/l/1",
        "expires_at": "2026-03-03T10:00:00+00:00",
    },
    "refund_issued": {
        "first_name": "Ada",
        "order_number": "SO-2026-000006",
        "rma_number": "RMA-ABC",
        "refund_amount": 123456,
        "currency": "USD",
    },
    "support_alert": {  # to support, not a shopper: the workflow stands where the first name does
        "workflow_id": "checkout-Ada",
        "workflow_type": "checkout",
        "reason": "compensation order.fail keeps failing: order service down",
        "step": "order.fail",
        "ui_url": "http://127.0.0.1:8233/namespaces/default/workflows/checkout-Ada",
        "todo": "Decide with the resolve update: POST /v1/support/sagas/checkout-Ada/resolve.",
    },
}


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["notification"]


@pytest.fixture
async def sink(smtp_sink: SmtpSink) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=smtp_sink.http_url) as http:
        (await http.delete("/_control/faults")).raise_for_status()
        yield http
        (await http.delete("/_control/faults")).raise_for_status()


@pytest.fixture
def acts(db: SessionFactory, smtp_sink: SmtpSink) -> NotificationActivities:
    return NotificationActivities(db, Mailer("127.0.0.1", smtp_sink.smtp_port, sender=SENDER, timeout=5.0))


def address() -> str:
    return f"shopper-{uuid.uuid4().hex[:10]}@example.test"


def send_input(template_key: str = "order_shipped", **overrides: Any) -> SendInput:
    values: dict[str, Any] = {
        "idempotency_key": f"wf-{uuid.uuid4().hex}:notify",
        "user_id": uuid.uuid4(),
        "recipient": address(),
        "event_type": template_key.replace("_", "."),
        "template_key": template_key,
        "context": CONTEXTS[template_key],
    }
    values.update(overrides)
    return SendInput.model_validate(values)


async def messages(sink: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    response = await sink.get("/messages", params=params)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


async def notification_row(db: SessionFactory, notification_id: uuid.UUID) -> Notification:
    async with db() as s:
        row = (await s.scalars(select(Notification).where(col(Notification.id) == notification_id))).one()
        return row


async def attempt_log(db: SessionFactory, notification_id: uuid.UUID) -> list[tuple[int, str]]:
    async with db() as s:
        rows = await s.scalars(
            select(NotificationLog)
            .where(col(NotificationLog.notification_id) == notification_id)
            .order_by(col(NotificationLog.attempt))
        )
        return [(r.attempt, r.status) for r in rows]


# --------------------------------------------------------------------------------------------
# Rendering and templates


async def test_seeded_templates_render_with_their_documented_context(db: SessionFactory) -> None:
    async with db() as s:
        keys = {t.key for t in await service.list_templates(s)}
        assert set(CONTEXTS) <= keys and set(service.TEMPLATE_VARIABLES) == set(CONTEXTS)
        for key, context in CONTEXTS.items():
            template = await service.resolve_template(s, key, "en")
            rendered = service.render_template(template, context)
            assert rendered.subject and "\n" not in rendered.subject
            assert "Ada" in rendered.text and rendered.html is not None and "Ada" in rendered.html
            missing = dict(context)
            required = "first_name" if "first_name" in context else "workflow_id"
            missing.pop(required)
            with pytest.raises(TemplateRenderError, match=required):
                service.render_template(template, missing)
        confirmed = service.render_template(
            await service.resolve_template(s, "order_confirmed", "en"), CONTEXTS["order_confirmed"]
        )
        assert "2 x Blue mug  $24.00" in confirmed.text and "Total: $30.99" in confirmed.text
        refund = service.render_template(
            await service.resolve_template(s, "refund_issued", "de-AT"), CONTEXTS["refund_issued"]
        )
        assert refund.subject == "Your refund of $1,234.56 is on its way"  # de-AT falls back to en
        rma = service.render_template(
            await service.resolve_template(s, "return_approved", "en"), CONTEXTS["return_approved"]
        )
        assert "before March 3, 2026" in rma.text


def test_strict_undefined_autoescape_and_sandbox() -> None:
    context = {"name": "<b>Bo</b>\nBcc: x@evil.test", "amount": 5}
    rendered = render(
        name="t", subject="Hi {{ name }}", text="Hi {{ name }}", html="<p>Hi {{ name }}</p>", context=context
    )
    assert rendered.html == "<p>Hi &lt;b&gt;Bo&lt;/b&gt;\nBcc: x@evil.test</p>"  # escaped in HTML
    assert rendered.text.startswith("Hi <b>Bo</b>")  # plain text is not HTML
    assert rendered.subject == "Hi <b>Bo</b> Bcc: x@evil.test"  # folded to one line: no header injection
    with pytest.raises(TemplateRenderError, match="'missing' is undefined"):
        render(name="t", subject="{{ missing }}", text="", html=None, context={})
    with pytest.raises(TemplateRenderError):
        render(name="t", subject="{{ ''.__class__.__mro__ }}", text="", html=None, context={})
    with pytest.raises(TemplateRenderError):
        render(name="t", subject="{{ amount | money('USD') }}", text="", html=None, context={"amount": "5"})
    assert money(5, "USD") == "$0.05" and money(1000, "JPY") == "¥1,000" and money(-250, "CHF") == "-2.50 CHF"


def test_a_template_is_compiled_once_and_an_edit_is_seen() -> None:
    from services.notification import rendering

    source = f"Order {{{{ n }}}} ({uuid.uuid4()})"
    before = rendering._compiled.cache_info()
    for n in range(3):
        assert render(name="t", subject=source, text=source, html=None, context={"n": n}).text.startswith(
            f"Order {n} ("
        )
    after = rendering._compiled.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 5
    edited = source.replace("Order", "Parcel")
    assert render(name="t", subject=edited, text=edited, html=None, context={"n": 7}).text.startswith(
        "Parcel 7"
    )
    # the same text as HTML is compiled apart: escaping is decided at compile time
    html = render(name="t", subject="s", text="x", html=source, context={"n": "<i>"})
    assert html.html is not None and "&lt;i&gt;" in html.html


@pytest.mark.timeout(10)
def test_sandbox_refuses_unbounded_powers_and_arithmetic_errors() -> None:
    """``**`` is intercepted (also at compile time, where Jinja would fold constants): small powers
    render, huge ones are a render error at once instead of tying up the worker."""
    check_compiles("text", "{{ 9**9**9**9 }} {{ 10**100000000 }}")  # nothing folded, nothing computed

    def text(source: str, **context: Any) -> str:
        return render(name="t", subject="s", text=source, html=None, context=context).text

    assert text("{{ 2**10 }} {{ n**2 }}", n=3) == "1024 9"
    for source in ("{{ 10**100000000 }}", "{{ 2**10**10**10 }}", "{{ n**n }}", "{{ 'a'**2 }}", "{{ 1/0 }}"):
        with pytest.raises(TemplateRenderError):
            text(source, n=10**6)


def test_template_update_refuses_null_for_required_columns() -> None:
    for name in ("category", "subject_template", "text_template", "is_active"):
        with pytest.raises(ValidationError, match="cannot be null"):
            TemplateUpdate.model_validate({name: None})
    cleared = TemplateUpdate.model_validate({"description": None, "html_template": None})
    assert cleared.model_fields_set == {"description", "html_template"}


async def test_template_admin_validates_and_versions(db: SessionFactory) -> None:
    key = f"promo_{uuid.uuid4().hex[:8]}"
    data = TemplateIn(
        key=key,
        category="marketing",
        subject_template="Hello {{ first_name }}",
        text_template="Deals for {{ first_name }}",
    )
    async with db() as s, s.begin():
        with pytest.raises(TemplateInvalid):
            await service.create_template(s, data.model_copy(update={"text_template": "{% if %}"}))
        with pytest.raises(TemplateInvalid, match="No filter named"):
            await service.create_template(s, data.model_copy(update={"subject_template": "{{ x | nope }}"}))
        created = await service.create_template(s, data)
        assert created.version == 1
        with pytest.raises(DuplicateTemplate):
            await service.create_template(s, data)
        with pytest.raises(TemplateInvalid):
            await service.update_template(s, key, "en", TemplateUpdate(html_template="<p>{{ first_name </p>"))
        updated = await service.update_template(
            s, key, "en", TemplateUpdate(html_template="<p>{{ first_name }}</p>")
        )
        assert updated.version == 2 and updated.html_template == "<p>{{ first_name }}</p>"
        preview = await service.preview_template(s, key, "en", {"first_name": "<i>Al</i>"})
        assert preview.html == "<p>&lt;i&gt;Al&lt;/i&gt;</p>"
    async with db() as s:
        assert (await service.get_template(s, key)).version == 2  # committed
    with pytest.raises(ValidationError):
        TemplateIn(key="Bad Key", category="marketing", subject_template="x", text_template="y")


# --------------------------------------------------------------------------------------------
# Preferences


async def test_preferences_defaults_updates_and_security(db: SessionFactory) -> None:
    user = uuid.uuid4()
    async with db() as s, s.begin():
        defaults = {p.category: (p.enabled, p.editable) for p in await service.get_preferences(s, user)}
        assert defaults == {
            "security": (True, False),
            "transactional": (True, True),
            "order_updates": (True, True),
            "marketing": (False, True),
        }
        await service.update_preferences(
            s,
            user,
            [
                PreferenceUpdate(category="marketing", enabled=True),
                PreferenceUpdate(category="order_updates", enabled=False),
            ],
        )
        after = {p.category: p.enabled for p in await service.update_preferences(s, user, [])}
        assert after == {"security": True, "transactional": True, "order_updates": False, "marketing": True}
        with pytest.raises(PreferenceNotEditable):
            await service.update_preferences(s, user, [PreferenceUpdate(category="security", enabled=False)])


async def test_disabled_category_is_suppressed_security_always_sent(
    db: SessionFactory, acts: NotificationActivities, sink: httpx.AsyncClient
) -> None:
    user = uuid.uuid4()
    async with db() as s, s.begin():
        await service.update_preferences(
            s,
            user,
            [
                PreferenceUpdate(category="order_updates", enabled=False),
                PreferenceUpdate(category="transactional", enabled=False),
            ],
        )
    shipped = send_input("order_shipped", user_id=user)
    result = await acts.send(shipped)
    assert result.status == "suppressed"
    row = await notification_row(db, result.notification_id)
    assert (row.status, row.category, row.attempts) == ("suppressed", "order_updates", 0)
    assert await messages(sink, to=shipped.recipient) == []
    assert await acts.send(shipped) == result  # answered from the ledger

    reset = send_input("password_reset", user_id=user, recipient=shipped.recipient)
    assert (await acts.send(reset)).status == "sent"
    [mail] = await messages(sink, to=shipped.recipient)
    assert mail["subject"] == "Reset your sagashop password"


# --------------------------------------------------------------------------------------------
# Sending through the SMTP sink


async def test_a_secret_variable_reaches_the_mail_only(
    db: SessionFactory, acts: NotificationActivities, sink: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    """secret_context (a one-time link, encrypted by the service that made it) is decrypted for the
    mail; the stored row keeps a marker. Without the key nothing is sent and nothing is written."""
    cipher = TokenCipher(Fernet.generate_key())
    link = f"https://shop.test/reset-password?token={uuid.uuid4().hex}"
    context = dict(CONTEXTS["password_reset"])
    context.pop("reset_url")
    inp = send_input("password_reset", context=context, secret_context={"reset_url": cipher.encrypt(link)})

    with pytest.raises(RuntimeError, match="TokenCipher"):
        await acts.send(inp)  # this worker has no key
    assert await messages(sink, to=inp.recipient) == []

    keyed = NotificationActivities(
        db, Mailer("127.0.0.1", smtp_sink.smtp_port, sender=SENDER, timeout=5.0), cipher=cipher
    )
    result = await keyed.send(inp)
    [mail] = await messages(sink, to=inp.recipient)
    assert link in mail["text"] and link in (mail["html"] or "")
    row = await notification_row(db, result.notification_id)
    assert row.context["reset_url"] == service.SECRET_PLACEHOLDER and link not in str(row.context)


async def test_send_through_the_smtp_sink_once(
    db: SessionFactory, acts: NotificationActivities, sink: httpx.AsyncClient
) -> None:
    inp = send_input("order_shipped")
    result = await acts.send(inp)
    assert result.status == "sent" and result.message_id == message_id_for(inp.idempotency_key)
    again = await acts.send(inp)  # same key: no second mail
    assert again == result
    [mail] = await messages(sink, message_id=result.message_id or "")
    assert mail["to"] == [inp.recipient] and mail["from"] == SENDER
    assert mail["subject"] == "Your order SO-2026-000003 is on its way"
    assert "Tracking number: SB00000000000042" in mail["text"] and "Follow your parcel" not in mail["text"]
    assert mail["html"] and "<strong>SO-2026-000003</strong>" in mail["html"]
    assert ["X-Sagashop-Notification", str(result.notification_id)] in mail["headers"]

    row = await notification_row(db, result.notification_id)
    assert (row.status, row.attempts, row.message_id, row.idempotency_key) == (
        "sent",
        1,
        result.message_id,
        inp.idempotency_key,
    )
    assert row.sent_at is not None and row.context["tracking_number"] == "SB00000000000042"
    assert await attempt_log(db, result.notification_id) == [(1, "sent")]

    reused = inp.model_copy(update={"context": {**CONTEXTS["order_shipped"], "first_name": "Eve"}})
    with pytest.raises(ApplicationError) as err:
        await acts.send(reused)
    assert err.value.type == "IdempotencyKeyReused" and err.value.non_retryable


async def test_missing_variable_is_refused_and_writes_nothing(
    db: SessionFactory, acts: NotificationActivities
) -> None:
    inp = send_input("order_shipped", context={"first_name": "Ada"})
    with pytest.raises(ApplicationError) as err:
        await acts.send(inp)
    assert err.value.type == "TemplateRenderError" and err.value.non_retryable
    assert "is undefined" in str(err.value)
    async with db() as s:
        assert (
            await s.execute(
                select(col(Notification.id)).where(col(Notification.idempotency_key) == inp.idempotency_key)
            )
        ).first() is None
    unknown = send_input("order_shipped").model_copy(update={"template_key": "no_such_template"})
    with pytest.raises(ApplicationError) as missing:
        await acts.send(unknown)
    assert missing.value.type == "TemplateNotFound"


async def test_smtp_tempfail_is_retryable_logged_and_not_duplicated(
    db: SessionFactory, acts: NotificationActivities, sink: httpx.AsyncClient
) -> None:
    inp = send_input("order_delivered")
    (await sink.post("/_control/faults", json={"mode": "tempfail", "count": 1})).raise_for_status()
    with pytest.raises(ApplicationError) as err:
        await acts.send(inp)
    assert err.value.type == "MailTemporaryFailure" and not err.value.non_retryable
    notification_id = service.notification_id_for(inp.idempotency_key)
    row = await notification_row(db, notification_id)
    assert (row.status, row.attempts) == ("pending", 1) and row.error and "451" in row.error
    assert await attempt_log(db, notification_id) == [(1, "tempfail")]  # committed despite the error
    assert await messages(sink, to=inp.recipient) == []

    result = await acts.send(inp)  # Temporal's retry
    assert result.status == "sent" and result.notification_id == notification_id
    assert await acts.send(inp) == result  # a retry after success sends nothing
    assert len(await messages(sink, to=inp.recipient)) == 1
    assert await attempt_log(db, notification_id) == [(1, "tempfail"), (2, "sent")]
    row = await notification_row(db, notification_id)
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)


async def test_smtp_permfail_marks_failed_and_is_not_retryable(
    db: SessionFactory, acts: NotificationActivities, sink: httpx.AsyncClient
) -> None:
    inp = send_input("payment_failed")
    (await sink.post("/_control/faults", json={"mode": "permfail", "count": 1})).raise_for_status()
    with pytest.raises(ApplicationError) as err:
        await acts.send(inp)
    assert err.value.type == "MailPermanentFailure" and err.value.non_retryable
    notification_id = service.notification_id_for(inp.idempotency_key)
    assert (await notification_row(db, notification_id)).status == "failed"
    assert await attempt_log(db, notification_id) == [(1, "permfail")]
    async with db() as s:
        assert (
            await s.execute(select(ledger.c.key).where(ledger.c.key == inp.idempotency_key))
        ).first() is None


async def test_bad_input_is_refused_before_anything_runs() -> None:
    with pytest.raises(ValidationError):
        send_input(recipient="not-an-address")
    with pytest.raises(ValidationError):
        send_input(locale="english")
    with pytest.raises(ValidationError):
        send_input(idempotency_key="")


# --------------------------------------------------------------------------------------------
# Partitions


async def partition_of(db: SessionFactory, created_at: datetime) -> str:
    notification_id = uuid.uuid4()
    async with db() as s, s.begin():
        s.add(
            Notification(
                id=notification_id,
                created_at=created_at,
                event_type="test",
                category="transactional",
                recipient=address(),
                idempotency_key=f"partition-test:{notification_id}",
                template_key="order_shipped",
                locale="en",
            )
        )
        await s.flush()
        row = await s.execute(
            text("SELECT tableoid::regclass::text FROM notifications WHERE id = :id"), {"id": notification_id}
        )
        return str(row.scalar_one())


async def test_partition_routing_and_ensure_partitions(
    db: SessionFactory, acts: NotificationActivities
) -> None:
    this_month = month_start(date.today())
    now = datetime.now(UTC)
    assert await partition_of(db, now) == monthly_partition_name("notifications", month_start(now.date()))
    next_month = add_months(this_month, 1)
    at = datetime(next_month.year, next_month.month, 15, tzinfo=UTC)
    assert await partition_of(db, at) == monthly_partition_name("notifications", next_month)

    far = add_months(this_month, 6)
    with pytest.raises(DBAPIError, match="no partition"):  # no DEFAULT partition: it fails loudly
        await partition_of(db, datetime(far.year, far.month, 2, tzinfo=UTC))

    first = await acts.ensure_partitions(EnsurePartitionsInput(months_ahead=6))
    wanted = {monthly_partition_name("notifications", add_months(this_month, k)) for k in range(7)}
    assert wanted <= set(first.existing)
    assert monthly_partition_name("notifications", far) in first.created
    second = await acts.ensure_partitions(EnsurePartitionsInput(months_ahead=6))
    assert second.created == [] and set(second.existing) == set(first.existing)
    assert await partition_of(db, datetime(far.year, far.month, 2, tzinfo=UTC)) == monthly_partition_name(
        "notifications", far
    )


async def test_months_past_the_retention_are_dropped_with_their_delivery_logs(
    db: SessionFactory, smtp_sink: SmtpSink
) -> None:
    """NOTIFICATION_RETENTION_MONTHS whole months before this one are kept; older monthly partitions
    of notifications go, with the delivery attempts (notification_logs) of their notifications, whose
    foreign key would otherwise refuse the detach. 0 keeps everything."""
    this_month = month_start(date.today())
    old, kept_edge = date(2019, 5, 1), add_months(this_month, -13)
    async with db() as s, s.begin():
        for month in (old, kept_edge):
            await s.execute(text(monthly_partition_ddl("notifications", month)))
    ids = {}
    for month in (old, kept_edge, this_month):
        at = datetime(month.year, month.month, 2, tzinfo=UTC)
        assert await partition_of(db, at) == monthly_partition_name("notifications", month)
        async with db() as s, s.begin():
            ids[month] = (
                await s.execute(text("SELECT id FROM notifications WHERE created_at = :t"), {"t": at})
            ).scalar_one()
            s.add(
                NotificationLog(
                    notification_id=ids[month], notification_created_at=at, attempt=1, status="sent"
                )
            )

    def acts(months: int) -> NotificationActivities:
        mailer = Mailer("127.0.0.1", smtp_sink.smtp_port, sender=SENDER, timeout=5.0)
        return NotificationActivities(db, mailer, retention_months=months)

    assert (await acts(0).ensure_partitions(EnsurePartitionsInput(months_ahead=1))).dropped == []
    result = await acts(13).ensure_partitions(EnsurePartitionsInput(months_ahead=1))
    old_name = monthly_partition_name("notifications", old)
    assert old_name in result.dropped and old_name not in result.existing
    assert monthly_partition_name("notifications", kept_edge) in result.existing
    async with db() as s:
        left = (
            await s.execute(
                text("SELECT notification_id FROM notification_logs WHERE notification_id = ANY(:i)"),
                {"i": list(ids.values())},
            )
        ).scalars()
        assert set(left) == {ids[kept_edge], ids[this_month]}
        remaining = (
            await s.execute(
                text("SELECT id FROM notifications WHERE id = ANY(:i)"), {"i": list(ids.values())}
            )
        ).scalars()
        assert set(remaining) == {ids[kept_edge], ids[this_month]}
    assert (await acts(13).ensure_partitions(EnsurePartitionsInput(months_ahead=1))).dropped == []
