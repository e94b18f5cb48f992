"""Mirror key columns hold the owner's keys as given: the database never invents one.

An integer key column created AUTO_INCREMENT (MariaDB) or BIGSERIAL (PostgreSQL)
would turn an upsert of key 0 into a row under a fresh, made-up key on MariaDB.
"""

from __future__ import annotations

import pytest
from pydantic import Field

from replication.contracts import Contract
from replication.events import upserted
from replication.manifest import MirrorDeclaration
from replication.mirror import ApplyResult, apply_changes
from replication.mirror.tables import mirror_table
from tests.conftest import create_mirror, fetch_all
from tests.databases import Database


class Crate(Contract, entity="testkit.crate", version=1, key="id", register=False):
    """A test contract keyed by a plain integer."""

    id: int
    label: str = Field(max_length=40)


class Slot(Contract, entity="testkit.slot", version=1, key=("rack", "position"), register=False):
    """A test contract keyed by two integers."""

    rack: int
    position: int
    label: str = Field(max_length=40)


CRATES = MirrorDeclaration(
    service="orders", contract=Crate.__contract__, table="crate_mirror", fields=("id", "label")
)
SLOTS = MirrorDeclaration(
    service="orders",
    contract=Slot.__contract__,
    table="slot_mirror",
    fields=("rack", "position", "label"),
)


def test_key_zero_is_stored_as_zero_and_its_next_version_replaces_it(database: Database) -> None:
    statements = create_mirror(database, CRATES)

    first = apply_changes(database.connection, statements, [upserted(Crate(id=0, label="a"), 5)])
    second = apply_changes(database.connection, statements, [upserted(Crate(id=0, label="b"), 6)])
    database.connection.commit()

    assert fetch_all(database, "SELECT id, label, _version FROM crate_mirror") == [(0, "b", 6)]
    assert first == second == ApplyResult(received=1, applied=1)


def test_a_composite_integer_key_of_zeros_is_stored_as_given(database: Database) -> None:
    statements = create_mirror(database, SLOTS)

    apply_changes(
        database.connection, statements, [upserted(Slot(rack=0, position=0, label="a"), 1)]
    )
    apply_changes(
        database.connection, statements, [upserted(Slot(rack=0, position=0, label="b"), 2)]
    )
    database.connection.commit()

    assert fetch_all(database, "SELECT rack, position, label, _version FROM slot_mirror") == [
        (0, 0, "b", 2)
    ]


@pytest.mark.parametrize("declaration", [CRATES, SLOTS], ids=["single", "composite"])
def test_integer_key_columns_are_never_auto_incremented(
    database: Database, declaration: MirrorDeclaration
) -> None:
    create_mirror(database, declaration)
    table = declaration.table

    if database.dialect == "mysql":
        [(_, ddl)] = fetch_all(database, f"SHOW CREATE TABLE {table}")
        assert "AUTO_INCREMENT" not in ddl.upper()
    elif database.dialect == "postgresql":
        defaults = fetch_all(
            database,
            "SELECT column_name, column_default FROM information_schema.columns "
            f"WHERE table_name = '{table}' AND column_default LIKE 'nextval%'",
        )
        assert defaults == []
        sequences = fetch_all(
            database,
            f"SELECT relname FROM pg_class WHERE relkind = 'S' AND relname LIKE '{table}%'",
        )
        assert sequences == []
    else:
        [(ddl,)] = fetch_all(database, f"SELECT sql FROM sqlite_master WHERE name = '{table}'")
        assert "AUTOINCREMENT" not in ddl.upper()


def test_every_key_column_of_a_mirror_declares_no_autoincrement() -> None:
    for declaration in (CRATES, SLOTS):
        keys = [c for c in mirror_table(declaration).columns if c.primary_key]
        assert [c.autoincrement for c in keys] == [False] * len(keys)
