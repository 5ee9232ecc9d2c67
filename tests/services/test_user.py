"""User service on the real user_db: idempotent profile creation and its compensation, one default
address per type under concurrency, PSP tokens encrypted at rest, checkout details scoped to their
owner, no mass assignment, preferences and the cursor-paginated wishlist."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from activities.user import (
    CreateProfileInput,
    DeleteProfileInput,
    GetCheckoutDetailsInput,
    UserActivities,
)
from core.crypto import DecryptionError, EncryptionKeyError, TokenCipher
from core.db import SessionFactory
from core.settings import get_settings
from services.user import service
from services.user.errors import AddressNotFound, InvalidCursor, PaymentMethodExpired, ProfileNotFound
from services.user.models import AddressType
from services.user.schemas import (
    AddressIn,
    AddressUpdate,
    PaymentMethodIn,
    PreferencesUpdate,
    ProfileUpdate,
)

PSP_TOKEN = "pm_tok_4242_sandbox_0123456789abcdef"


@pytest.fixture
def acts(sessions: dict[str, SessionFactory]) -> UserActivities:
    return UserActivities(sessions["user"])


@pytest.fixture
def db(sessions: dict[str, SessionFactory]) -> SessionFactory:
    return sessions["user"]


def key() -> str:
    return f"register-{uuid.uuid4()}:profile"


def email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@example.com"


async def new_profile(acts: UserActivities) -> uuid.UUID:
    user_id = uuid.uuid4()
    await acts.create_profile(
        CreateProfileInput(
            idempotency_key=key(), user_id=user_id, email=email(), first_name="Ada", last_name="L"
        )
    )
    return user_id


def address(type_: str = "shipping", **over: Any) -> AddressIn:
    values: dict[str, Any] = {
        "type": type_,
        "name": "Ada Lovelace",
        "line1": "12 St James's Square",
        "line2": "Flat 3",
        "city": "London",
        "region": "Greater London",
        "postal_code": "SW1Y 4JH",
        "country": "gb",
        "phone": "+44 20 7946 0000",
        **over,
    }
    return AddressIn(**values)


def card(**over: Any) -> PaymentMethodIn:
    values: dict[str, Any] = {
        "psp_token": PSP_TOKEN,
        "brand": "Visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": date.today().year + 2,
        **over,
    }
    return PaymentMethodIn(**values)


async def fetch(db: SessionFactory, sql: str, **params: Any) -> list[Any]:
    async with db() as s:
        return list((await s.execute(text(sql), params)).all())


async def scalar(db: SessionFactory, sql: str, **params: Any) -> Any:
    async with db() as s:
        return (await s.execute(text(sql), params)).scalar()


# --- profile creation and compensation -------------------------------------------------------------


async def test_create_profile_is_idempotent(acts: UserActivities, db: SessionFactory) -> None:
    inp = CreateProfileInput(
        idempotency_key=key(), user_id=uuid.uuid4(), email=email(), first_name=" Grace ", last_name="Hopper"
    )
    first, again = await acts.create_profile(inp), await acts.create_profile(inp)
    assert first == again and first.user_id == inp.user_id
    rows = await fetch(db, "SELECT first_name, email FROM user_profiles WHERE user_id = :u", u=inp.user_id)
    assert [(r.first_name, r.email) for r in rows] == [("Grace", inp.email)]
    assert await scalar(db, "SELECT count(*) FROM event_logs WHERE key = :k", k=inp.idempotency_key) == 1
    prefs = (await fetch(db, "SELECT * FROM user_preferences WHERE user_id = :u", u=inp.user_id))[0]
    assert (prefs.language, prefs.currency, prefs.marketing_opt_in, prefs.extras) == ("en", "USD", False, {})

    with pytest.raises(ApplicationError) as reused:
        await acts.create_profile(inp.model_copy(update={"last_name": "Other"}))
    assert reused.value.type == "IdempotencyKeyReused"

    # The same fact under another key (a re-run saga) is no second effect; a different one is refused.
    same = await acts.create_profile(inp.model_copy(update={"idempotency_key": key()}))
    assert same.user_id == inp.user_id
    other_key = key()
    with pytest.raises(ApplicationError) as conflict:
        await acts.create_profile(inp.model_copy(update={"idempotency_key": other_key, "email": email()}))
    assert conflict.value.type == "ProfileAlreadyExists" and conflict.value.non_retryable
    assert await scalar(db, "SELECT count(*) FROM user_profiles WHERE user_id = :u", u=inp.user_id) == 1
    assert await scalar(db, "SELECT count(*) FROM event_logs WHERE key = :k", k=other_key) == 0


def test_invalid_profile_input_is_refused_by_the_model() -> None:
    with pytest.raises(ValidationError):
        CreateProfileInput(
            idempotency_key="k", user_id=uuid.uuid4(), email="nope", first_name="A", last_name="B"
        )
    with pytest.raises(ValidationError):
        CreateProfileInput(
            idempotency_key="", user_id=uuid.uuid4(), email=email(), first_name="A", last_name="B"
        )
    with pytest.raises(ValidationError):
        CreateProfileInput(
            idempotency_key="k", user_id=uuid.uuid4(), email=email(), first_name="  ", last_name="B"
        )


async def test_delete_profile_removes_everything_of_the_user(
    acts: UserActivities, db: SessionFactory
) -> None:
    user_id = await new_profile(acts)
    async with db() as s, s.begin():
        await service.add_address(s, user_id, address())
        await service.add_payment_method(s, acts.cipher, user_id, card())
        await service.add_to_wishlist(s, user_id, uuid.uuid4())
    inp = DeleteProfileInput(idempotency_key=key(), user_id=user_id)
    assert (await acts.delete_profile(inp)).deleted
    assert (await acts.delete_profile(inp)).deleted  # replay returns the first result
    assert not (await acts.delete_profile(DeleteProfileInput(idempotency_key=key(), user_id=user_id))).deleted
    for table in ("user_profiles", "addresses", "payment_methods", "user_preferences", "wishlist_items"):
        assert await scalar(db, f"SELECT count(*) FROM {table} WHERE user_id = :u", u=user_id) == 0, table


# --- addresses -------------------------------------------------------------------------------------


async def test_one_default_address_per_type_under_concurrency(
    acts: UserActivities, db: SessionFactory
) -> None:
    user_id = await new_profile(acts)

    async def add(type_: str) -> uuid.UUID:
        async with db() as s, s.begin():
            return (await service.add_address(s, user_id, address(type_, is_default=True))).id

    ids = await asyncio.gather(*(add("shipping" if i % 2 else "billing") for i in range(12)))
    assert len(set(ids)) == 12
    rows = await fetch(
        db, "SELECT type, count(*) AS n, count(*) FILTER (WHERE is_default) AS d FROM addresses"
        " WHERE user_id = :u GROUP BY type ORDER BY type", u=user_id,
    )  # fmt: skip
    assert [(r.type, r.n, r.d) for r in rows] == [("billing", 6, 1), ("shipping", 6, 1)]


async def test_address_defaults_follow_adds_updates_and_deletes(
    acts: UserActivities, db: SessionFactory
) -> None:
    user_id = await new_profile(acts)
    async with db() as s, s.begin():
        first = await service.add_address(s, user_id, address())
        second = await service.add_address(s, user_id, address(line1="2 Other Street"))
        billing = await service.add_address(s, user_id, address("billing"))
    assert first.is_default and not second.is_default and billing.is_default  # first of each type
    assert first.country == "GB"

    async with db() as s, s.begin():
        moved = await service.update_address(
            s, user_id, second.id, AddressUpdate(is_default=True, city="Bath")
        )
    assert moved.is_default and moved.city == "Bath" and moved.line1 == "2 Other Street"
    defaults = await fetch(
        db, "SELECT id FROM addresses WHERE user_id = :u AND is_default ORDER BY type", u=user_id
    )
    assert [r.id for r in defaults] == [billing.id, second.id]

    async with db() as s, s.begin():
        await service.delete_address(s, user_id, second.id)
    async with db() as s:
        remaining = await service.list_addresses(s, user_id, AddressType.SHIPPING)
    assert [(a.id, a.is_default) for a in remaining] == [(first.id, True)]  # promoted

    with pytest.raises(ValidationError):
        AddressUpdate(user_id=uuid.uuid4())  # type: ignore[call-arg]  # no mass assignment
    with pytest.raises(ValidationError):
        AddressUpdate(line1=None)
    with pytest.raises(ValidationError):
        address(country="GBR")


async def test_another_users_address_is_not_found(acts: UserActivities, db: SessionFactory) -> None:
    owner, intruder = await new_profile(acts), await new_profile(acts)
    async with db() as s, s.begin():
        mine = await service.add_address(s, owner, address())
    attempts: list[Callable[[AsyncSession], Awaitable[object]]] = [
        lambda s: service.get_address(s, intruder, mine.id),
        lambda s: service.update_address(s, intruder, mine.id, AddressUpdate(city="Elsewhere")),
        lambda s: service.delete_address(s, intruder, mine.id),
    ]
    for attempt in attempts:
        with pytest.raises(AddressNotFound):
            async with db() as s, s.begin():
                await attempt(s)
    assert await scalar(db, "SELECT city FROM addresses WHERE id = :a", a=mine.id) == "London"


# --- payment methods and checkout ------------------------------------------------------------------


async def test_payment_token_is_encrypted_at_rest_and_decrypts(
    acts: UserActivities, db: SessionFactory
) -> None:
    user_id = await new_profile(acts)
    async with db() as s, s.begin():
        method = await service.add_payment_method(s, acts.cipher, user_id, card())
    assert method.is_default and method.brand == "visa" and method.last4 == "4242"
    assert "psp_token" not in method.model_dump()

    stored = await scalar(db, "SELECT psp_token_encrypted FROM payment_methods WHERE id = :p", p=method.id)
    assert stored != PSP_TOKEN and PSP_TOKEN not in stored
    dump = await scalar(
        db, "SELECT string_agg(t::text, '') FROM payment_methods t WHERE user_id = :u", u=user_id
    )
    assert PSP_TOKEN not in dump
    assert acts.cipher.decrypt(stored) == PSP_TOKEN

    with pytest.raises(DecryptionError, match="ENCRYPTION_KEY"):
        TokenCipher(Fernet.generate_key().decode()).decrypt(stored)
    # Rotation: a new key first, the old one still decrypts.
    current_key = get_settings().encryption_key.get_secret_value()
    rotated = TokenCipher(f"{Fernet.generate_key().decode()},{current_key}")
    assert rotated.decrypt(stored) == PSP_TOKEN
    with pytest.raises(EncryptionKeyError, match="not a valid Fernet key"):
        TokenCipher("not-a-key")


async def test_checkout_details_snapshot_and_owner_scoping(acts: UserActivities, db: SessionFactory) -> None:
    owner, intruder = await new_profile(acts), await new_profile(acts)
    async with db() as s, s.begin():
        home = await service.add_address(s, owner, address())
        visa = await service.add_payment_method(s, acts.cipher, owner, card())
        theirs = await service.add_address(s, intruder, address())
        their_card = await service.add_payment_method(s, acts.cipher, intruder, card(psp_token="pm_other"))

    details = await acts.get_checkout_details(
        GetCheckoutDetailsInput(user_id=owner, address_id=home.id, payment_method_id=visa.id)
    )
    assert details.address.model_dump() == {
        "id": home.id,
        "user_id": owner,
        "type": AddressType.SHIPPING,
        "name": "Ada Lovelace",
        "line1": "12 St James's Square",
        "line2": "Flat 3",
        "city": "London",
        "region": "Greater London",
        "postal_code": "SW1Y 4JH",
        "country": "GB",
        "phone": "+44 20 7946 0000",
    }
    assert details.payment_method.model_dump() == {
        "id": visa.id,
        "psp_token_encrypted": details.payment_method.psp_token_encrypted,
        "psp_token": None,
        "brand": "visa",
        "last4": "4242",
    }
    # the token as stored: encrypted, for the payment service to decrypt
    assert PSP_TOKEN not in str(details.payment_method.psp_token_encrypted)
    assert acts.cipher.decrypt(str(details.payment_method.psp_token_encrypted)) == PSP_TOKEN

    cases = [
        (theirs.id, visa.id, "AddressNotFound"),
        (uuid.uuid4(), visa.id, "AddressNotFound"),
        (home.id, their_card.id, "PaymentMethodNotFound"),
        (home.id, uuid.uuid4(), "PaymentMethodNotFound"),
    ]
    messages = []
    for address_id, method_id, expected in cases:
        with pytest.raises(ApplicationError) as err:
            await acts.get_checkout_details(
                GetCheckoutDetailsInput(user_id=owner, address_id=address_id, payment_method_id=method_id)
            )
        assert err.value.type == expected and err.value.non_retryable
        messages.append(str(err.value).replace(str(address_id), "<id>").replace(str(method_id), "<id>"))
    # Another user's id and an unknown id are refused with the same words: existence does not leak.
    assert messages[0] == messages[1] and messages[2] == messages[3]


async def test_expired_cards_are_refused(acts: UserActivities, db: SessionFactory) -> None:
    user_id = await new_profile(acts)
    with pytest.raises(PaymentMethodExpired):
        async with db() as s, s.begin():
            await service.add_payment_method(s, acts.cipher, user_id, card(exp_year=2020, exp_month=1))
    assert await scalar(db, "SELECT count(*) FROM payment_methods WHERE user_id = :u", u=user_id) == 0
    async with db() as s, s.begin():
        home = await service.add_address(s, user_id, address())
        old = await service.add_payment_method(
            s, acts.cipher, user_id, card(exp_year=2030, exp_month=1), today=date(2029, 6, 1)
        )
    with pytest.raises(PaymentMethodExpired):
        async with db() as s:
            await service.get_checkout_details(
                s, user_id=user_id, address_id=home.id, payment_method_id=old.id,
                today=date(2030, 2, 1),
            )  # fmt: skip
    async with db() as s:  # valid through the end of its expiry month
        await service.get_checkout_details(
            s,
            user_id=user_id,
            address_id=home.id,
            payment_method_id=old.id,
            today=date(2030, 1, 31),
        )


async def test_payment_method_defaults(acts: UserActivities, db: SessionFactory) -> None:
    user_id = await new_profile(acts)
    async with db() as s, s.begin():
        a = await service.add_payment_method(s, acts.cipher, user_id, card(last4="1111"))
        b = await service.add_payment_method(s, acts.cipher, user_id, card(last4="2222", is_default=True))
    async with db() as s:
        listed = await service.list_payment_methods(s, user_id)
    assert {(m.id, m.is_default) for m in listed} == {(a.id, False), (b.id, True)}
    async with db() as s, s.begin():
        await service.delete_payment_method(s, user_id, b.id)
    async with db() as s:
        assert [(m.id, m.is_default) for m in await service.list_payment_methods(s, user_id)] == [
            (a.id, True)
        ]


# --- profile, preferences, wishlist ----------------------------------------------------------------


async def test_profile_update_applies_only_the_given_fields(acts: UserActivities, db: SessionFactory) -> None:
    user_id = await new_profile(acts)
    async with db() as s, s.begin():
        view = await service.update_profile(
            s, user_id, ProfileUpdate(phone="+1 555 0100", locale="en-GB", date_of_birth=date(1990, 5, 17))
        )
    assert (view.first_name, view.phone, view.locale) == ("Ada", "+1 555 0100", "en-GB")
    async with db() as s, s.begin():
        view = await service.update_profile(s, user_id, ProfileUpdate(phone=None))
    assert view.phone is None and view.locale == "en-GB" and view.date_of_birth == date(1990, 5, 17)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ProfileUpdate(email="evil@example.com")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="first_name cannot be null"):
        ProfileUpdate(first_name=None)
    with pytest.raises(ProfileNotFound):
        async with db() as s, s.begin():
            await service.update_profile(s, uuid.uuid4(), ProfileUpdate(first_name="X"))


async def test_preferences_update(acts: UserActivities, db: SessionFactory) -> None:
    user_id = await new_profile(acts)
    async with db() as s, s.begin():
        prefs = await service.update_preferences(
            s, user_id, PreferencesUpdate(currency="eur", marketing_opt_in=True, extras={"theme": "dark"})
        )
    assert (prefs.language, prefs.currency, prefs.marketing_opt_in, prefs.extras) == (
        "en",
        "EUR",
        True,
        {"theme": "dark"},
    )
    async with db() as s, s.begin():
        prefs = await service.update_preferences(s, user_id, PreferencesUpdate(language="de-DE"))
    assert (prefs.language, prefs.currency, prefs.extras) == ("de-DE", "EUR", {"theme": "dark"})
    with pytest.raises(ValidationError):
        PreferencesUpdate(currency="EURO")
    with pytest.raises(ValidationError):
        PreferencesUpdate(extras={"blob": "x" * 10_000})


async def test_wishlist_is_unique_and_cursor_paginated(acts: UserActivities, db: SessionFactory) -> None:
    user_id, other = await new_profile(acts), await new_profile(acts)
    products = [uuid.uuid4() for _ in range(23)]
    for chunk in (products[:10], products[10:]):  # two transactions: two distinct created_at values
        async with db() as s, s.begin():
            for p in chunk:
                await service.add_to_wishlist(s, user_id, p)
    async with db() as s, s.begin():
        again = await service.add_to_wishlist(s, user_id, products[0])
    assert again.product_id == products[0]
    assert await scalar(db, "SELECT count(*) FROM wishlist_items WHERE user_id = :u", u=user_id) == 23

    seen: list[uuid.UUID] = []
    cursor: str | None = None
    sizes = []
    while True:
        async with db() as s:
            page = await service.list_wishlist(s, user_id, limit=10, cursor=cursor)
        sizes.append(len(page.items))
        seen += [i.product_id for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sizes == [10, 10, 3]
    assert sorted(seen) == sorted(products) and len(set(seen)) == 23
    assert set(seen[:13]) == set(products[10:])  # newest first

    async with db() as s, s.begin():
        assert await service.remove_from_wishlist(s, user_id, products[0])
        assert not await service.remove_from_wishlist(s, user_id, products[0])
        assert (await service.list_wishlist(s, other)).items == []
    with pytest.raises(InvalidCursor):
        async with db() as s:
            await service.list_wishlist(s, user_id, cursor="garbage!")
