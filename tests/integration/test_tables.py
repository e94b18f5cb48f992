"""``mirror_table``: column types per dialect, keys, nullability, and the real tables.

The compiled DDL is checked per dialect; the same tables are then created on
each real database and read back through its catalog.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.dialects import mysql
from sqlalchemy.schema import CreateTable

from replication.contracts import Contract
from replication.events import deleted, upserted
from replication.manifest import Manifest, MirrorDeclaration
from replication.mirror import ApplyResult, apply_changes
from replication.mirror.render import sqlalchemy_dialect
from replication.mirror.tables import METADATA_COLUMNS, mirror_table
from tests.conftest import create_mirror, fetch_all
from tests.databases import Database, connect
from tests.mirror_state import expected_row, read_mirror

METADATA = [name for name, _ in METADATA_COLUMNS]


class Shipment(
    Contract, entity="logistics.shipment", version=1, key=("order_id", "line"), register=False
):
    """A test contract with a composite (uuid, int) key, key fields not first."""

    carrier: str = Field(max_length=40)
    order_id: uuid.UUID
    line: int
    note: str | None = None


class Label(Contract, entity="print.label", version=1, key="code", register=False):
    """A test contract keyed by free-form text, where case and accents matter."""

    code: str
    text: str


SHIPMENTS = MirrorDeclaration(
    service="orders",
    contract=Shipment.__contract__,
    table="shipment_mirror",
    fields=("carrier", "order_id", "line", "note"),
)
LABELS = MirrorDeclaration(
    service="orders", contract=Label.__contract__, table="label_mirror", fields=("code", "text")
)


def column_types(declaration: MirrorDeclaration, dialect: str) -> dict[str, str]:
    """Each column's type as the dialect's DDL spells it."""
    table = mirror_table(declaration)
    return {c.name: c.type.compile(dialect=sqlalchemy_dialect(dialect)) for c in table.columns}


def declarations(manifest: Manifest) -> list[MirrorDeclaration]:
    """Every mirror these tests build: the example's two and the composite-key one."""
    return [manifest.mirror("crm.customer"), manifest.mirror("catalog.product"), SHIPMENTS]


# -- types per dialect -------------------------------------------------------------------


def test_postgresql_uses_native_uuid_jsonb_timestamptz_and_exact_numeric(
    orders_manifest: Manifest,
) -> None:
    customer = column_types(orders_manifest.mirror("crm.customer"), "postgresql")
    product = column_types(orders_manifest.mirror("catalog.product"), "postgresql")

    assert customer == {
        "id": "UUID",
        "name": "VARCHAR(200)",
        "email": "TEXT",
        "tier": "VARCHAR(64)",
        "credit_limit": "NUMERIC(12, 2)",
        "created_at": "TIMESTAMP WITH TIME ZONE",
        "tags": "JSONB",
        "address": "JSONB",
        "phone": "TEXT",
        "_version": "BIGINT",
        "_deleted": "BOOLEAN",
        "_event_id": "UUID",
        "_event_time": "TIMESTAMP WITH TIME ZONE",
        "_applied_at": "TIMESTAMP WITH TIME ZONE",
    }
    assert product["sku"] == "VARCHAR(64)"
    assert product["price"] == "NUMERIC(10, 2)"
    assert product["active"] == "BOOLEAN"
    assert product["stock"] == "BIGINT"


def test_mysql_uses_microsecond_datetimes_uuid_text_and_a_binary_collation_on_text_keys(
    orders_manifest: Manifest,
) -> None:
    customer = column_types(orders_manifest.mirror("crm.customer"), "mysql")
    product = column_types(orders_manifest.mirror("catalog.product"), "mysql")
    labels = column_types(LABELS, "mysql")

    assert customer["id"] == "VARCHAR(36)"
    assert customer["_event_id"] == "VARCHAR(36)"
    for column in ("created_at", "_event_time", "_applied_at"):
        assert customer[column] == "DATETIME(6)"
    assert customer["credit_limit"] == "NUMERIC(12, 2)"
    assert customer["tags"] == "JSON"
    assert product["sku"] == "VARCHAR(64) COLLATE utf8mb4_0900_bin"
    assert labels["code"] == "VARCHAR(255) COLLATE utf8mb4_0900_bin"
    mariadb_labels = column_types(LABELS, "mariadb")
    assert mariadb_labels["code"] == "VARCHAR(255) COLLATE utf8mb4_nopad_bin"
    assert labels["text"] == "LONGTEXT"  # TEXT stops at 64 KiB
    ddl = str(CreateTable(mirror_table(LABELS)).compile(dialect=mysql.dialect()))
    assert "CHARSET=utf8mb4" in ddl
    assert "ENGINE=InnoDB" in ddl


def test_sqlite_keeps_decimals_and_datetimes_as_exact_text(orders_manifest: Manifest) -> None:
    customer = column_types(orders_manifest.mirror("crm.customer"), "sqlite")
    product = column_types(orders_manifest.mirror("catalog.product"), "sqlite")

    assert customer["credit_limit"] == "TEXT"
    assert product["price"] == "TEXT"
    assert customer["created_at"] == "VARCHAR(40)"
    assert customer["_event_time"] == "VARCHAR(40)"
    assert customer["id"] == "VARCHAR(36)"
    assert customer["tags"] == "JSON"


# -- keys and nullability ----------------------------------------------------------------


def test_the_primary_key_is_the_contract_key_in_key_order(orders_manifest: Manifest) -> None:
    for declaration in declarations(orders_manifest):
        table = mirror_table(declaration)

        assert [c.name for c in table.primary_key.columns] == list(declaration.contract.key)
        assert [c.name for c in table.columns][: len(declaration.contract.key)] == list(
            declaration.contract.key
        )


def test_every_mirrored_non_key_column_is_nullable_so_a_tombstone_fits(
    orders_manifest: Manifest,
) -> None:
    for declaration in declarations(orders_manifest):
        table = mirror_table(declaration)
        key = declaration.contract.key
        mirrored = [name for name in declaration.fields if name not in key]

        assert mirrored
        assert all(table.c[name].nullable for name in mirrored), declaration.table
        assert not any(table.c[name].nullable for name in key), declaration.table


def test_the_five_metadata_columns_are_not_null_and_come_last(orders_manifest: Manifest) -> None:
    assert METADATA == ["_version", "_deleted", "_event_id", "_event_time", "_applied_at"]
    for declaration in declarations(orders_manifest):
        table = mirror_table(declaration)

        assert [c.name for c in table.columns][-5:] == METADATA
        assert not any(table.c[name].nullable for name in METADATA), declaration.table


def test_only_declared_fields_become_columns() -> None:
    partial = MirrorDeclaration(
        service="orders",
        contract=Shipment.__contract__,
        table="shipment_carrier_mirror",
        fields=("order_id", "line", "carrier"),
    )

    table = mirror_table(partial)

    assert [c.name for c in table.columns] == ["order_id", "line", "carrier", *METADATA]


# -- the real tables ---------------------------------------------------------------------


@pytest.fixture
def engine(database: Database) -> Iterator[sa.Engine]:
    """A SQLAlchemy engine on the test's database, for reading its catalog."""
    created = sa.create_engine(database.sqlalchemy_url, poolclass=sa.pool.NullPool)
    try:
        yield created
    finally:
        created.dispose()


def test_the_tables_are_created_with_their_keys_and_nullability_on_each_database(
    database: Database, engine: sa.Engine, orders_manifest: Manifest
) -> None:
    for declaration in declarations(orders_manifest):
        create_mirror(database, declaration)
        inspector = sa.inspect(engine)
        key = list(declaration.contract.key)

        pk = inspector.get_pk_constraint(declaration.table)
        nullable = {c["name"]: c["nullable"] for c in inspector.get_columns(declaration.table)}

        assert pk["constrained_columns"] == key
        assert nullable == {
            c: c not in key and c not in METADATA
            for c in [col.name for col in mirror_table(declaration).columns]
        }


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[Database]:
    """A PostgreSQL connection (skipped, or failed under CI, when the server is down)."""
    db = connect("postgresql", tmp_path)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[Database]:
    """A MariaDB/MySQL connection (skipped, or failed under CI, when the server is down)."""
    db = connect("mysql", tmp_path)
    try:
        yield db
    finally:
        db.close()


def test_postgresql_stores_uuid_jsonb_timestamptz_and_numeric(
    postgres: Database, orders_manifest: Manifest
) -> None:
    database = postgres
    create_mirror(database, orders_manifest.mirror("crm.customer"))

    found = fetch_all(
        database,
        "SELECT column_name, data_type, numeric_precision, numeric_scale "
        "FROM information_schema.columns WHERE table_name = 'customer_mirror'",
    )

    types = {name: (kind, precision, scale) for name, kind, precision, scale in found}
    assert types["id"][0] == "uuid"
    assert types["tags"][0] == "jsonb"
    assert types["created_at"][0] == "timestamp with time zone"
    assert types["credit_limit"] == ("numeric", 12, 2)


def test_mariadb_stores_text_keys_with_a_binary_utf8mb4_collation(
    mariadb: Database, orders_manifest: Manifest
) -> None:
    database = mariadb
    create_mirror(database, orders_manifest.mirror("catalog.product"))
    create_mirror(database, LABELS)

    columns = fetch_all(
        database,
        "SELECT table_name, column_name, character_set_name, collation_name, data_type "
        "FROM information_schema.columns WHERE table_schema = DATABASE() "
        "AND table_name IN ('product_mirror', 'label_mirror')",
    )
    tables = fetch_all(
        database,
        "SELECT table_name, table_collation FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name IN ('product_mirror', 'label_mirror')",
    )

    by_column: dict[tuple[str, str], tuple[Any, ...]] = {
        (t, c): tuple(rest) for t, c, *rest in columns
    }
    assert by_column[("product_mirror", "sku")][:2] == ("utf8mb4", "utf8mb4_nopad_bin")
    assert by_column[("label_mirror", "code")][:2] == ("utf8mb4", "utf8mb4_nopad_bin")
    assert by_column[("product_mirror", "title")][0] == "utf8mb4"
    assert by_column[("product_mirror", "_event_time")][2] == "datetime"
    assert {collation.split("_")[0] for _, collation in tables} == {"utf8mb4"}


def test_text_keys_differing_only_by_case_or_accent_are_distinct_rows(
    database: Database,
) -> None:
    statements = create_mirror(database, LABELS)
    events = [
        upserted(Label(code=code, text=f"label {code}"), 1)
        for code in ("ABC", "abc", "Abc", "abç", "abc ", " abc", "🦄", "🦊")
    ]
    apply_changes(database.connection, statements, events)
    update = upserted(Label(code="abc", text="lower case only"), 2)
    removal = deleted(Label, "ABC", 3)

    result = apply_changes(database.connection, statements, [update, removal])
    database.connection.commit()

    assert result == ApplyResult(received=2, applied=1, deleted=1)
    final = [removal, update, *events[2:]]
    assert read_mirror(database, statements) == {
        e.key: expected_row(statements, e.key, e.version, e.data) for e in final
    }
