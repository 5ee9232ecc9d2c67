"""The ER diagrams (docs/erd/) and the index catalogue (docs/database.md) are generated from the models
and must match them; the seed's reference map and partitioning are what the models do."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from sqlalchemy import Table

from core.registry import SERVICES, service
from core.settings import ROOT
from devstack import erd

# The tables the seed lists per database (seed/database-architecture.md, "Service Databases").
SEED_TABLES = {
    "auth": "users roles user_roles refresh_tokens password_reset_tokens email_verification_tokens "
    "security_audit_logs rate_limits",
    "user": "user_profiles addresses payment_methods user_preferences wishlist_items event_logs",
    "product": "products categories product_categories product_variants product_images inventory "
    "reviews product_tags",
    "order": "orders order_items order_status_history shipping_addresses order_notes",
    "payment": "payments payment_transactions refunds payment_methods payment_webhooks",
    "notification": "notifications email_templates notification_preferences notification_logs",
    "cart": "carts cart_items",
    "discount": "coupons coupon_usage promotions promotion_rules promotion_usage",
    "shipping": "shipping_zones shipping_methods shipping_rates shipments shipment_tracking carriers",
    "return": "return_requests return_items return_authorizations return_status_history return_tracking "
    "refunds",
}
SEED_PARTITIONING = {
    ("auth", "security_audit_logs"): "month",
    ("notification", "notifications"): "month",
    ("order", "order_status_history"): "month",
    ("order", "orders"): "hash",
    ("payment", "payments"): "hash",
}


def _table(service_name: str, name: str) -> Table:
    return erd.metadata_of(service(service_name)).tables[name]


def test_committed_diagrams_and_index_catalogue_match_the_models() -> None:
    stale = [str(p.relative_to(ROOT)) for p in erd.stale()]
    assert not stale, (
        f"{', '.join(stale)} differ from the models: run `{erd.REGENERATE}` and commit the result"
    )


@pytest.mark.parametrize("info", SERVICES, ids=[s.name for s in SERVICES])
def test_each_database_diagram_draws_every_table_and_foreign_key(info: object) -> None:
    from core.registry import ServiceInfo

    assert isinstance(info, ServiceInfo)
    text = (erd.ERD_DIR / f"{info.name}.md").read_text()
    diagram = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    drawn = set(re.findall(r"^    ([a-z_]+) \{$", diagram, re.M))
    assert drawn == {t.name for t in erd.tables_of(info)}
    assert set(SEED_TABLES[info.name].split()) <= drawn, "a table of the seed is missing"
    for table in erd.tables_of(info):
        for fk in table.foreign_key_constraints:
            label = ", ".join(c.name for c in fk.columns)
            assert re.search(
                rf"^    {fk.referred_table.name} \S+ {table.name} : \"{label}\"$", diagram, re.M
            ), f"{table.name} -> {fk.referred_table.name} not drawn"
        for column in table.columns:
            assert re.search(rf"^        \S+ {column.name}\b", diagram.split(f"    {table.name} {{")[1], re.M)


def test_partitioned_tables_are_the_seeds_and_are_noted() -> None:
    found = {
        (info.name, t.name): ("hash" if (erd.partitioning(t) or "").startswith("HASH") else "month")
        for info in SERVICES
        for t in erd.tables_of(info)
        if erd.partitioning(t)
    }
    assert found == SEED_PARTITIONING
    for (name, table), kind in SEED_PARTITIONING.items():
        text = (erd.ERD_DIR / f"{name}.md").read_text()
        row = next(line for line in text.splitlines() if line.startswith(f"| `{table}` | by "))
        assert ("by month" in row) if kind == "month" else ("by hash" in row)
        assert f"{table}<br/>partitioned by {kind}" in (erd.ERD_DIR / "index.md").read_text()


def test_seed_reference_map_is_plain_id_columns_pointing_at_real_rows() -> None:
    assert len(erd.SEED_REFERENCE_MAP) == 12
    index = (erd.ERD_DIR / "index.md").read_text()
    for ref in erd.SEED_REFERENCE_MAP:
        column = _table(ref.from_service, ref.table).columns[ref.column]
        assert not column.foreign_keys, f"{ref.field} must not be a foreign key across databases"
        target = _table(ref.to_service, ref.to_table)
        assert ref.to_column in target.columns, f"{ref.to_table}.{ref.to_column} does not exist"
        assert f'-.->|"{ref.field}: references (id, no FK)"| {ref.to_service}__{ref.to_table}' in index


def test_no_foreign_key_leaves_its_database() -> None:
    for info in SERVICES:
        names = {t.name for t in erd.tables_of(info)}
        for table in erd.tables_of(info):
            for fk in table.foreign_keys:
                assert fk.column.table.name in names


def test_every_index_says_which_query_it_serves() -> None:
    assert erd.uncommented_indexes() == [], (
        "write above each index in models.py a comment saying which query it serves (docs/CONVENTIONS.md)"
    )


def test_cli_check_reports_up_to_date_without_writing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "erd", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "up to date" in done.stdout
