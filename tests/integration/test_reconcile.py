"""Reconcile finds exactly the drift injected into a mirror, on PostgreSQL and MariaDB."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from contracts import Customer
from examples.catalog import service as catalog
from examples.crm import service as crm
from replication.manifest import MirrorDeclaration
from replication.sync.reconcile import Reconciliation
from replication.sync.source import OwnerSource
from replication.sync.verify import compare_mirror
from tests.sync_support import (
    CUSTOMERS,
    PRODUCTS,
    apply,
    customer_row,
    fill,
    fresh_engine,
    owner_events,
    tombstone,
)


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with fresh_engine(request.param, tmp_path) as engine:
        yield engine


def run(
    engine: sa.Engine, declaration: MirrorDeclaration, mirror: sa.Engine | None = None
) -> Reconciliation:
    source = crm.customer_source if declaration is CUSTOMERS else catalog.product_source
    return compare_mirror(source, declaration, engine, mirror or engine, buckets=64)


def found(result: Reconciliation) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for drift in result.drifts:
        kinds.setdefault(drift.kind, set()).add(drift.subject)
    return kinds


def test_equal_tables_show_no_difference(engine: sa.Engine) -> None:
    fill(engine, customers=300, products=300)
    for declaration in (CUSTOMERS, PRODUCTS):
        result = run(engine, declaration)
        assert result.total == 0, result.drifts[:5]
        assert (result.owner_rows, result.mirror_rows) == (300, 300)
        if engine.dialect.name == "postgresql":  # MariaDB keeps JSON escapes as written
            assert result.differing_buckets == 0
        assert result.skipped_fields == ()


def test_drift_injected_in_a_mirror_is_found_exactly(engine: sa.Engine) -> None:
    fill(engine, customers=400, products=0)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text("SELECT id, version FROM crm_customers"))]
    rng = random.Random(3)
    rng.shuffle(rows)
    keys = [str(key) for key, _ in rows]
    versions = dict(rows)
    gone, changed, rolled, tomb, owner_gone, owner_moved = (
        keys[0:3],
        keys[3:5],
        keys[5:7],
        keys[7:8],
        keys[8:10],
        keys[10:12],
    )
    extra_rows = [customer_row(rng, 1) for _ in range(2)]
    with engine.begin() as conn:
        for key in gone:
            conn.execute(sa.text("DELETE FROM customer_mirror WHERE id = :k"), {"k": key})
        # Same version, other content: a name, and a value inside a JSON field.
        conn.execute(
            sa.text("UPDATE customer_mirror SET name = 'Someone else' WHERE id = :k"),
            {"k": changed[0]},
        )
        city = (
            "jsonb_set(address, '{city}', '\"Paris\"')"
            if engine.dialect.name == "postgresql"
            else "json_set(address, '$.city', 'Paris')"
        )
        conn.execute(
            sa.text(f"UPDATE customer_mirror SET address = {city} WHERE id = :k"),
            {"k": changed[1]},
        )
        for key in rolled:
            conn.execute(
                sa.text("UPDATE crm_customers SET version = version + 3 WHERE id = :k"),
                {"k": key},
            )
        for key in owner_gone:
            conn.execute(sa.text("DELETE FROM crm_customers WHERE id = :k"), {"k": key})
        for key in owner_moved:  # a change the mirror never received
            conn.execute(
                sa.text(
                    "UPDATE crm_customers SET name = 'Moved', version = version + 1 WHERE id = :k"
                ),
                {"k": key},
            )
        conn.execute(crm.customers.insert(), extra_rows)
    for key in tomb:
        tombstone(engine, CUSTOMERS, key, versions[key] + 1)
    # Rows only the mirror has: owner rows mirrored, then removed without a tombstone.
    new = [e for e in owner_events(engine, CUSTOMERS) if e.subject in {r["id"] for r in extra_rows}]
    apply(engine, CUSTOMERS, new)
    with engine.begin() as conn:
        for row in extra_rows:
            conn.execute(sa.text("DELETE FROM crm_customers WHERE id = :k"), {"k": row["id"]})

    result = run(engine, CUSTOMERS)

    assert found(result) == {
        "missing": set(gone) | set(tomb),
        "differs": set(changed),
        "older": set(rolled) | set(owner_moved),
        "extra": set(owner_gone) | {r["id"] for r in extra_rows},
    }
    assert result.counts == {"missing": 4, "extra": 4, "older": 4, "differs": 2, "ahead": 0}
    assert result.owner_rows == 400 - 2
    # The row tombstoned above the owner's version cannot be brought back by any event.
    buried = {d.subject: d.mirror_version for d in result.drifts if d.buried}
    assert buried == {tomb[0]: versions[tomb[0]] + 1}
    differs = {d.subject: d.fields for d in result.drifts if d.kind == "differs"}
    assert differs == {changed[0]: ("name",), changed[1]: ("address",)}
    older = {
        d.subject: (d.owner_version, d.mirror_version) for d in result.drifts if d.kind == "older"
    }
    assert older[rolled[0]] == (versions[rolled[0]] + 3, versions[rolled[0]])


def test_owner_and_mirror_on_different_dialects_compare_all_but_json_text(tmp_path: Path) -> None:
    with fresh_engine("postgresql", tmp_path) as owner, fresh_engine("mysql", tmp_path) as mirror:
        fill(owner, customers=200, products=200)
        for declaration in (CUSTOMERS, PRODUCTS):
            apply(mirror, declaration, owner_events(owner, declaration))
        products = run(owner, PRODUCTS, mirror)
        customers = run(owner, CUSTOMERS, mirror)
        assert (products.total, customers.total) == (0, 0), customers.drifts[:3]
        # The address (a nested model of text) is compared member by member; the tags
        # list only as normalised JSON text, which differs between the two databases.
        assert customers.skipped_fields == ("tags",)
        with mirror.begin() as conn:
            conn.execute(
                sa.text("UPDATE product_mirror SET price = price + 1 WHERE sku = 'SKU-000007'")
            )
            conn.execute(
                sa.text("UPDATE customer_mirror SET tier = 'gold' WHERE tier <> 'gold' LIMIT 1")
            )
            conn.execute(
                sa.text(
                    "UPDATE customer_mirror SET address = JSON_SET(address, '$.city', 'Paris') "
                    "WHERE tier = 'bronze' LIMIT 1"
                )
            )
        assert found(run(owner, PRODUCTS, mirror)) == {"differs": {"SKU-000007"}}
        changed = run(owner, CUSTOMERS, mirror)
        assert changed.counts["differs"] == 2, changed.drifts
        assert sorted(d.fields for d in changed.drifts) == [("address",), ("tier",)]


# An owner whose key column is SQLAlchemy's Uuid: native on PostgreSQL, 32 hex digits
# without hyphens on MariaDB and SQLite, where the mirror holds the 36-character form.
UUID_OWNER = sa.Table(
    "crm_customers_uuid",
    sa.MetaData(),
    sa.Column("id", sa.Uuid, primary_key=True),
    *(
        sa.Column(c.name, c.type, nullable=c.nullable)
        for c in crm.customers.columns
        if c.name != "id"
    ),
)


UUID_SOURCE = OwnerSource(
    Customer,
    UUID_OWNER,
    version="version",
    columns={"address": crm.address_of(UUID_OWNER)},
    to_contract=crm.to_contract,
)


def test_an_owner_keyed_by_native_uuids_matches_its_mirror(engine: sa.Engine) -> None:
    rng = random.Random(9)
    rows = [customer_row(rng, rng.randrange(1, 4)) for _ in range(120)]
    UUID_OWNER.drop(engine, checkfirst=True)
    UUID_OWNER.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(UUID_OWNER.insert(), [{**r, "id": uuid.UUID(r["id"])} for r in rows])
        with engine.connect() as conn:
            stored = list(conn.execute(UUID_SOURCE.select()))
        apply(engine, CUSTOMERS, [UUID_SOURCE.snapshot(r) for r in stored])

        equal = compare_mirror(UUID_SOURCE, CUSTOMERS, engine, engine, buckets=16)
        assert equal.total == 0, equal.drifts[:3]

        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM customer_mirror WHERE id = :k"), {"k": rows[5]["id"]})
        one = compare_mirror(UUID_SOURCE, CUSTOMERS, engine, engine, buckets=16)
        assert [(d.kind, d.subject) for d in one.drifts] == [("missing", rows[5]["id"])]
    finally:
        UUID_OWNER.drop(engine, checkfirst=True)
