"""`python -m devstack seed`: the demo data loads through the services, twice gives the same rows, and
a missing database is a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import text

from core.crypto import TokenCipher
from core.db import SessionFactory
from core.settings import ROOT, Settings
from devstack.seed import DEMO_PASSWORD, demo_counts, seed, shopper_email, shopper_id
from devstack.stack import settings_env
from services.auth import repository as auth_repo
from services.auth.passwords import verify_password
from tests.conftest import Stack

PRODUCTS = 40  # a small catalog keeps the test quick; the demo default is 300


async def test_seeding_twice_gives_the_same_counts(
    databases: Settings, sessions: dict[str, SessionFactory]
) -> None:
    first = await seed(databases, products=PRODUCTS)
    after_first = await demo_counts(sessions)
    second = await seed(databases, products=PRODUCTS)
    assert await demo_counts(sessions) == after_first
    assert second.products_created == 0 and second.shipping_rows_created == 0
    assert second.coupons_created == []
    assert first.products == second.products >= PRODUCTS  # other tests may have loaded more demo rows
    assert len(first.shipping_methods) == 7 and first.shipping_methods == second.shipping_methods
    assert first.email_templates > 0 and first.variants >= PRODUCTS
    async with sessions["product"]() as s:
        stocked = await s.scalar(
            text(
                "SELECT count(*) FROM inventory i JOIN product_variants v ON v.id = i.variant_id "
                "WHERE v.sku LIKE 'DEMO-%' AND i.on_hand > 0"
            )
        )
    assert stocked and stocked > PRODUCTS // 2
    async with sessions["discount"]() as s:
        codes = set(await s.scalars(text("SELECT code FROM coupons")))
    assert {"WELCOME10", "SAVE5", "FREESHIP", "LIMITED", "ONEPER"} <= codes
    assert any("demo products" in line for line in second.lines())


async def test_demo_shoppers_are_created_once_with_address_and_tokenized_card(
    stack: Stack, sessions: dict[str, SessionFactory], tmp_path: Path
) -> None:
    out = tmp_path / "shoppers.json"
    first = await seed(stack.settings, products=PRODUCTS, shoppers=3, shoppers_file=out)
    assert first.shoppers_created == 3 or all(
        s.user_id == shopper_id(i) for i, s in enumerate(first.shoppers)
    )
    counts = await demo_counts(sessions)
    again = await seed(stack.settings, products=PRODUCTS, shoppers=3, shoppers_file=out)
    assert again.shoppers_created == 0
    assert await demo_counts(sessions) == counts
    assert [s.payment_method_id for s in again.shoppers] == [s.payment_method_id for s in first.shoppers]

    data = json.loads(out.read_text())
    assert data["password"] == DEMO_PASSWORD
    assert [s["email"] for s in data["shoppers"]] == [shopper_email(n) for n in range(3)]
    assert set(data["shipping_methods"]) >= {"US:standard", "EU:standard"}
    shopper = data["shoppers"][1]
    user_id = uuid.UUID(shopper["user_id"])

    async with sessions["auth"]() as s:  # the account exists with the demo password
        account = await auth_repo.get_user(s, user_id)
    assert account is not None and account.email == shopper["email"]
    assert await verify_password(account.password_hash, DEMO_PASSWORD)
    async with sessions["user"]() as s:
        row = (
            await s.execute(
                text(
                    "SELECT a.id, a.is_default, p.id, p.is_default, p.psp_token_encrypted, p.last4 "
                    "FROM addresses a JOIN payment_methods p USING (user_id) WHERE user_id = :u"
                ),
                {"u": user_id},
            )
        ).one()
    assert (str(row[0]), row[1], str(row[2]), row[3], row[5]) == (
        shopper["address_id"],
        True,
        shopper["payment_method_id"],
        True,
        "4242",
    )
    token = TokenCipher(stack.settings.encryption_key.get_secret_value()).decrypt(row[4])
    assert token and "4242424242424242" not in row[4]  # only the PSP's token, encrypted


def test_unreachable_database_is_a_clear_error(settings: Settings) -> None:
    env = {**os.environ, **settings_env(settings), "POSTGRES_PORT": "1"}  # nothing listens on port 1
    env = {k: v for k, v in env.items() if not k.endswith("_DATABASE_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "seed", "--products", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot reach product_db" in done.stderr and "make up" in done.stderr
    assert "Traceback" not in done.stderr
