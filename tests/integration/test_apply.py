"""``apply_changes`` on every dialect: the version guard, tombstones, counts and values.

Each test writes through the real driver of its dialect and reads the mirror
back (ARCHITECTURE section 4, rules 1, 2, 4 and 5).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field, HttpUrl

from contracts import Customer, Product, Tier
from replication.contracts import Contract
from replication.dialects import dialect_named
from replication.events import ChangeEvent, deleted, upserted
from replication.manifest import Manifest, MirrorDeclaration
from replication.mirror import ApplyResult, apply_changes
from replication.mirror.apply import refresh_changes
from replication.mirror.render import DIALECTS, statements_for
from replication.mirror.statements import MirrorStatements
from tests.conftest import create_mirror, fetch_all
from tests.databases import Database, connect
from tests.mirror_state import expected_row, key_of, normalize, read_mirror, rows_of
from tests.samples import OFFSETS, T0, awkward_customers, customer


def product(sku: str, **changes: Any) -> Product:
    """A valid product; ``changes`` override fields."""
    values: dict[str, Any] = {
        "sku": sku,
        "title": f"Product {sku}",
        "price": Decimal("19.90"),
        "active": True,
        "stock": 7,
    }
    values.update(changes)
    return Product(**values)


def assert_counted_once(result: ApplyResult) -> None:
    """Every received event is counted in exactly one bucket."""
    assert result.received == result.applied + result.deleted + result.stale + result.collapsed


def read_provenance(
    db: Database, statements: MirrorStatements
) -> dict[tuple[Any, ...], tuple[str, dt.datetime, dt.datetime]]:
    """Each row's event id, event time and applied-at time, normalized, by key."""
    k = statements.key_count
    columns = [*statements.columns[:k], "_event_id", "_event_time", "_applied_at"]
    rows = fetch_all(db, f"SELECT {', '.join(columns)} FROM {statements.table}")
    kinds = [*statements.kinds[:k], "uuid", "datetime", "datetime"]
    result = {}
    for raw in rows:
        values = [normalize(kind, value) for kind, value in zip(kinds, raw, strict=True)]
        result[tuple(values[:k])] = (values[k], values[k + 1], values[k + 2])
    return result


def stage_table_exists(db: Database, table: str = "customer_mirror") -> bool:
    """Whether this PostgreSQL session holds the COPY stage table of mirror ``table``."""
    [(found,)] = fetch_all(db, f"SELECT to_regclass('pg_temp._stage_{table}')")
    return found is not None


def bulk_or_not(statements: MirrorStatements, bulk: bool) -> MirrorStatements:
    """Statements that take PostgreSQL's COPY + merge path for any batch when ``bulk``."""
    return dataclasses.replace(statements, bulk_threshold=1) if bulk else statements


PATHS = ["bulk", "document", "values"]
"""PostgreSQL's three ways to write a batch (one elsewhere): COPY + merge, the rows as one
JSON document, one bind parameter per value (statements rendered without a document upsert)."""


def on_path(statements: MirrorStatements, path: str) -> MirrorStatements:
    """Statements that write any batch the way ``path`` names (with the bulk path on)."""
    if path == "bulk":
        return dataclasses.replace(statements, bulk_threshold=1)
    if path == "values":
        return dataclasses.replace(statements, document_upsert="")
    return statements


@pytest.fixture
def customers(database: Database, orders_manifest: Manifest) -> MirrorStatements:
    """A fresh, empty customer mirror on the test's database."""
    return create_mirror(database, orders_manifest.mirror("crm.customer"))


@pytest.fixture
def products(database: Database, orders_manifest: Manifest) -> MirrorStatements:
    """A fresh, empty product mirror on the test's database."""
    return create_mirror(database, orders_manifest.mirror("catalog.product"))


# -- the version guard -------------------------------------------------------------------


def test_an_upsert_into_an_empty_mirror_inserts_the_row(
    database: Database, customers: MirrorStatements
) -> None:
    event = upserted(customer(1), 1)

    result = apply_changes(database.connection, customers, [event])
    database.connection.commit()

    assert result == ApplyResult(received=1, applied=1)
    assert read_mirror(database, customers) == rows_of(customers, event)


def test_an_upsert_at_a_newer_version_replaces_the_row(
    database: Database, customers: MirrorStatements
) -> None:
    first = upserted(customer(1), 1)
    newer = upserted(customer(1, name="Renamed", tier=Tier.GOLD, tags=[], phone="+33123456789"), 5)
    apply_changes(database.connection, customers, [first])

    result = apply_changes(database.connection, customers, [newer])
    database.connection.commit()

    assert result == ApplyResult(received=1, applied=1)
    assert read_mirror(database, customers) == rows_of(customers, newer)
    assert read_provenance(database, customers)[key_of(customers, newer.key)][0] == str(newer.id)


def test_an_upsert_at_an_older_version_is_stale_and_changes_nothing(
    database: Database, customers: MirrorStatements
) -> None:
    current = upserted(customer(1, name="Current"), 7)
    older = upserted(customer(1, name="Older"), 6)
    apply_changes(database.connection, customers, [current])
    provenance = read_provenance(database, customers)

    result = apply_changes(database.connection, customers, [older])
    database.connection.commit()

    assert result == ApplyResult(received=1, stale=1)
    assert read_mirror(database, customers) == rows_of(customers, current)
    assert read_provenance(database, customers) == provenance


def test_the_same_version_again_is_stale(database: Database, customers: MirrorStatements) -> None:
    event = upserted(customer(1, name="First"), 3)
    same_version_other_state = upserted(customer(1, name="Second"), 3)
    apply_changes(database.connection, customers, [event])
    provenance = read_provenance(database, customers)

    replay = apply_changes(database.connection, customers, [event])
    rival = apply_changes(database.connection, customers, [same_version_other_state])
    database.connection.commit()

    assert replay == ApplyResult(received=1, stale=1)
    assert rival == ApplyResult(received=1, stale=1)
    assert read_mirror(database, customers) == rows_of(customers, event)
    assert read_provenance(database, customers) == provenance


def test_rows_of_other_keys_are_left_alone(database: Database, customers: MirrorStatements) -> None:
    one, two = upserted(customer(1), 1), upserted(customer(2), 4)
    apply_changes(database.connection, customers, [one, two])

    update = upserted(customer(1, name="Changed"), 2)
    apply_changes(database.connection, customers, [update])
    database.connection.commit()

    assert read_mirror(database, customers) == rows_of(customers, update, two)


def test_the_applied_at_time_is_the_given_now_and_the_event_time_its_instant(
    database: Database, customers: MirrorStatements
) -> None:
    offset = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
    event = upserted(customer(1), 1, time=dt.datetime(2024, 2, 29, 23, 59, 59, 123456, offset))
    now = dt.datetime(2024, 3, 1, 12, 0, 0, 654321, tzinfo=dt.UTC)

    apply_changes(database.connection, customers, [event], now=now)
    database.connection.commit()

    event_id, event_time, applied_at = read_provenance(database, customers)[
        key_of(customers, event.key)
    ]
    assert event_id == str(event.id)
    assert event_time == event.time
    # Calls within a second of each other with the same now get distinct stamps.
    assert now <= applied_at < now + dt.timedelta(milliseconds=1)


# -- deletes and tombstones --------------------------------------------------------------


def test_a_delete_writes_a_tombstone_that_keeps_the_key_and_version(
    database: Database, customers: MirrorStatements
) -> None:
    apply_changes(database.connection, customers, [upserted(customer(1), 1)])
    delete = deleted(Customer, uuid.UUID(int=1), 2)

    result = apply_changes(database.connection, customers, [delete])
    database.connection.commit()

    assert result == ApplyResult(received=1, deleted=1)
    tombstone = read_mirror(database, customers)[key_of(customers, delete.key)]
    assert tombstone == {
        "id": str(uuid.UUID(int=1)),
        "name": None,
        "email": None,
        "tier": None,
        "credit_limit": None,
        "created_at": None,
        "tags": None,
        "address": None,
        "phone": None,
        "_version": 2,
        "_deleted": True,
    }
    assert read_provenance(database, customers)[key_of(customers, delete.key)][0] == str(delete.id)


@pytest.mark.parametrize("version", [1, 4, 5], ids=["older", "older-than-tombstone", "equal"])
def test_an_upsert_at_or_below_the_tombstone_version_is_stale_and_does_not_resurrect(
    database: Database, customers: MirrorStatements, version: int
) -> None:
    apply_changes(database.connection, customers, [upserted(customer(1), 1)])
    delete = deleted(Customer, uuid.UUID(int=1), 5)
    apply_changes(database.connection, customers, [delete])

    result = apply_changes(
        database.connection, customers, [upserted(customer(1, name="Zombie"), version)]
    )
    database.connection.commit()

    assert result == ApplyResult(received=1, stale=1)
    assert read_mirror(database, customers) == rows_of(customers, delete)


def test_a_repeated_or_older_delete_of_a_tombstone_is_stale(
    database: Database, customers: MirrorStatements
) -> None:
    delete = deleted(Customer, uuid.UUID(int=1), 5)
    apply_changes(database.connection, customers, [delete])

    result = apply_changes(
        database.connection,
        customers,
        [deleted(Customer, uuid.UUID(int=2), 1), delete, deleted(Customer, uuid.UUID(int=1), 3)],
    )
    database.connection.commit()

    assert result == ApplyResult(received=3, deleted=1, stale=1, collapsed=1)
    assert read_mirror(database, customers) == rows_of(
        customers, delete, deleted(Customer, uuid.UUID(int=2), 1)
    )


def test_an_upsert_above_the_tombstone_version_recreates_the_row(
    database: Database, customers: MirrorStatements
) -> None:
    apply_changes(database.connection, customers, [upserted(customer(1), 1)])
    apply_changes(database.connection, customers, [deleted(Customer, uuid.UUID(int=1), 2)])
    recreated = upserted(customer(1, name="Back again"), 3)

    result = apply_changes(database.connection, customers, [recreated])
    database.connection.commit()

    assert result == ApplyResult(received=1, applied=1)
    assert read_mirror(database, customers) == rows_of(customers, recreated)


def test_a_delete_before_any_upsert_creates_a_tombstone_and_the_late_upsert_is_stale(
    database: Database, customers: MirrorStatements
) -> None:
    late = upserted(customer(1), 1)
    delete = deleted(Customer, uuid.UUID(int=1), 2)

    first = apply_changes(database.connection, customers, [delete])
    second = apply_changes(database.connection, customers, [late])
    database.connection.commit()

    assert first == ApplyResult(received=1, deleted=1)
    assert second == ApplyResult(received=1, stale=1)
    assert read_mirror(database, customers) == rows_of(customers, delete)


def test_a_product_tombstone_nulls_every_mirrored_field(
    database: Database, products: MirrorStatements
) -> None:
    apply_changes(database.connection, products, [upserted(product("SKU-1"), 1)])

    result = apply_changes(database.connection, products, [deleted(Product, "SKU-1", 2)])
    database.connection.commit()

    assert result == ApplyResult(received=1, deleted=1)
    assert read_mirror(database, products) == {
        ("SKU-1",): {
            "sku": "SKU-1",
            "title": None,
            "price": None,
            "active": None,
            "stock": None,
            "_version": 2,
            "_deleted": True,
        }
    }


# -- batch reduction and counts ----------------------------------------------------------


def test_a_batch_keeps_only_the_highest_version_of_each_key_and_counts_the_rest_collapsed(
    database: Database, customers: MirrorStatements
) -> None:
    a1, a2, a3 = (upserted(customer(1, f" v{v}"), v) for v in (1, 2, 3))
    b_upsert, b_delete = upserted(customer(2), 4), deleted(Customer, uuid.UUID(int=2), 6)
    c1 = upserted(customer(3), 1)
    batch = [a2, c1, a3, b_delete, a1, a3, b_upsert, c1, a2]

    result = apply_changes(database.connection, customers, batch)
    database.connection.commit()

    assert result == ApplyResult(received=9, applied=2, deleted=1, collapsed=6)
    assert_counted_once(result)
    assert read_mirror(database, customers) == rows_of(customers, a3, b_delete, c1)
    assert read_provenance(database, customers)[key_of(customers, a3.key)][0] == str(a3.id)


def test_an_empty_batch_writes_nothing(database: Database, customers: MirrorStatements) -> None:
    result = apply_changes(database.connection, customers, [])

    assert result == ApplyResult()
    assert read_mirror(database, customers) == {}


def test_a_batch_of_replays_counts_stale_after_collapsing_duplicates(
    database: Database, customers: MirrorStatements
) -> None:
    events = [upserted(customer(n), 2) for n in range(1, 4)]
    apply_changes(database.connection, customers, events)

    result = apply_changes(
        database.connection, customers, [*events, *events, upserted(customer(4), 1)]
    )
    database.connection.commit()

    assert result == ApplyResult(received=7, applied=1, stale=3, collapsed=3)
    assert_counted_once(result)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[ChangeEvent], list[list[ChangeEvent]], list[str]]:
    """Owner histories over a few keys, and batches drawn from them with duplicates."""
    history: list[ChangeEvent] = []
    for number in range(1, draw(st.integers(1, 4)) + 1):
        version = 0
        for is_delete in draw(st.lists(st.booleans(), min_size=1, max_size=5)):
            version += draw(st.integers(1, 3))
            if is_delete:
                history.append(deleted(Customer, uuid.UUID(int=number), version))
            else:
                history.append(upserted(customer(number, f" v{version}"), version))
    batches = draw(st.lists(st.lists(st.sampled_from(history), max_size=12), max_size=5))
    paths = draw(st.lists(st.sampled_from(PATHS), min_size=len(batches), max_size=len(batches)))
    return history, batches, paths


def test_counts_match_a_model_of_the_version_guard_for_any_batches(
    database: Database, customers: MirrorStatements
) -> None:
    @given(drawn=histories())
    def check(drawn: tuple[list[ChangeEvent], list[list[ChangeEvent]], list[str]]) -> None:
        _, batches, paths = drawn
        cursor = database.connection.cursor()
        cursor.execute(f"DELETE FROM {customers.table}")
        cursor.close()
        mirror: dict[tuple[Any, ...], ChangeEvent] = {}
        for batch, path in zip(batches, paths, strict=True):
            newest: dict[tuple[Any, ...], ChangeEvent] = {}
            for event in batch:
                if event.key not in newest or newest[event.key].version < event.version:
                    newest[event.key] = event
            written = [
                e
                for e in newest.values()
                if e.key not in mirror or mirror[e.key].version < e.version
            ]
            mirror.update((e.key, e) for e in written)
            expected = ApplyResult(
                received=len(batch),
                applied=sum(1 for e in written if e.data is not None),
                deleted=sum(1 for e in written if e.data is None),
                stale=len(newest) - len(written),
                collapsed=len(batch) - len(newest),
            )

            result = apply_changes(database.connection, on_path(customers, path), batch)

            assert result == expected
            assert_counted_once(result)
        assert read_mirror(database, customers) == rows_of(customers, *mirror.values())
        database.connection.rollback()

    check()


# -- transactions ------------------------------------------------------------------------


@pytest.mark.parametrize("bulk", [False, True], ids=["statement", "bulk"])
def test_the_caller_owns_the_transaction_and_a_rollback_undoes_the_apply(
    database: Database, customers: MirrorStatements, bulk: bool
) -> None:
    before = [upserted(customer(n), 2) for n in range(1, 4)]
    apply_changes(database.connection, customers, before)
    database.connection.commit()
    batch = [
        upserted(customer(1, name="Changed"), 3),
        deleted(Customer, uuid.UUID(int=2), 3),
        upserted(customer(9), 1),
    ]

    result = apply_changes(database.connection, bulk_or_not(customers, bulk), batch, bulk=bulk)
    assert result == ApplyResult(received=3, applied=2, deleted=1)
    assert read_mirror(database, customers) == rows_of(customers, *batch, before[2])
    database.connection.rollback()

    assert read_mirror(database, customers) == rows_of(customers, *before)


# -- large batches -----------------------------------------------------------------------

LARGE = 2_500


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "statement"])
def test_a_large_batch_of_distinct_keys_is_written_whole(
    database: Database, customers: MirrorStatements, bulk: bool
) -> None:
    batch = [upserted(customer(n), 1) for n in range(1, LARGE + 1)]

    result = apply_changes(database.connection, customers, batch, bulk=bulk)

    assert result == ApplyResult(received=LARGE, applied=LARGE)
    if database.dialect == "postgresql":
        # The default threshold sends this batch through COPY + merge, unless bulk is off.
        assert stage_table_exists(database) is bulk
    database.connection.commit()
    assert read_mirror(database, customers) == rows_of(customers, *batch)


def test_the_same_large_batch_twice_in_one_transaction_is_all_stale_the_second_time(
    database: Database, customers: MirrorStatements
) -> None:
    batch = [upserted(customer(n), 1) for n in range(1, LARGE + 1)]

    first = apply_changes(database.connection, customers, batch)
    second = apply_changes(database.connection, customers, batch)
    database.connection.commit()

    assert first == ApplyResult(received=LARGE, applied=LARGE)
    assert second == ApplyResult(received=LARGE, stale=LARGE)
    assert read_mirror(database, customers) == rows_of(customers, *batch)
    if database.dialect == "postgresql":
        assert stage_table_exists(database)


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "statement"])
def test_a_large_mixed_batch_over_an_existing_mirror_is_counted_exactly(
    database: Database, customers: MirrorStatements, bulk: bool
) -> None:
    existing = [upserted(customer(n), 2) for n in range(LARGE)]
    apply_changes(database.connection, customers, existing)
    database.connection.commit()
    newer = [upserted(customer(n, " newer"), 3) for n in range(0, LARGE, 4)]
    older = [upserted(customer(n, " older"), 1) for n in range(1, LARGE, 4)]
    deletes = [deleted(Customer, uuid.UUID(int=n), 3) for n in range(2, LARGE, 4)]
    fresh = [upserted(customer(n), 1) for n in range(LARGE, LARGE + 100)]
    superseded = [upserted(customer(n, " superseded"), 2) for n in range(0, LARGE, 4)]

    result = apply_changes(
        database.connection,
        customers,
        [*superseded, *newer, *older, *deletes, *fresh],
        bulk=bulk,
    )
    database.connection.commit()

    assert result == ApplyResult(
        received=len(superseded) + len(newer) + len(older) + len(deletes) + len(fresh),
        applied=len(newer) + len(fresh),
        deleted=len(deletes),
        stale=len(older),
        collapsed=len(superseded),
    )
    untouched = [e for e in existing if e.key[0].int % 4 in (1, 3)]
    assert read_mirror(database, customers) == rows_of(
        customers, *newer, *deletes, *fresh, *untouched
    )


# -- values ------------------------------------------------------------------------------


def awkward_products() -> list[Product]:
    """Products at the edges of their fields' ranges, with hard titles."""
    return [
        product("MAX", title="'); DROP TABLE x; --", price=Decimal("99999999.99"), stock=2**62),
        product("ZERO", title="\\N", price=Decimal("0.00"), stock=0, active=False),
        product("TABS-1", title="a\tb\nc\rd\\e", price=Decimal("0.01"), stock=1),
        product("EMOJI-0", title="🧪" * 300, price=Decimal("12.5"), active=False),
        product("9-LEADING-DIGIT", title="é" * 300, price=Decimal("1E+3")),
    ]


@pytest.mark.parametrize("path", PATHS)
def test_awkward_customer_values_are_stored_exactly(
    database: Database, customers: MirrorStatements, path: str
) -> None:
    events = [
        upserted(state, n + 1, time=dt.datetime(2024, 1, 1, tzinfo=OFFSETS[n % len(OFFSETS)]))
        for n, state in enumerate(awkward_customers())
    ]

    result = apply_changes(database.connection, on_path(customers, path), events)
    database.connection.commit()

    assert result == ApplyResult(received=len(events), applied=len(events))
    if database.dialect == "postgresql":
        assert stage_table_exists(database) is (path == "bulk")
    assert read_mirror(database, customers) == rows_of(customers, *events)
    provenance = read_provenance(database, customers)
    for event in events:
        assert provenance[key_of(customers, event.key)][:2] == (str(event.id), event.time)


@pytest.mark.parametrize("path", PATHS)
def test_awkward_values_survive_an_update_and_a_delete(
    database: Database, customers: MirrorStatements, path: str
) -> None:
    statements = on_path(customers, path)
    states = awkward_customers()
    apply_changes(database.connection, statements, [upserted(customer(n + 1), 1) for n in range(4)])
    updates = [upserted(state, 2) for state in states]
    deletes = [deleted(Customer, state.id, 3) for state in states[:2]]

    apply_changes(database.connection, statements, [*updates, *deletes])
    database.connection.commit()

    assert read_mirror(database, customers) == rows_of(customers, *deletes, *updates[2:])


@pytest.mark.parametrize("path", PATHS)
def test_product_edge_values_are_stored_exactly(
    database: Database, products: MirrorStatements, path: str
) -> None:
    events = [upserted(state, 1) for state in awkward_products()]

    result = apply_changes(database.connection, on_path(products, path), events)
    database.connection.commit()

    assert result == ApplyResult(received=len(events), applied=len(events))
    if database.dialect == "postgresql":
        assert stage_table_exists(database, "product_mirror") is (path == "bulk")
    mirror = read_mirror(database, products)
    assert mirror == rows_of(products, *events)
    assert mirror[("MAX",)]["stock"] == 2**62
    assert mirror[("ZERO",)]["active"] is False
    assert mirror[("ZERO",)]["price"] == Decimal("0.00")


# -- refusals ----------------------------------------------------------------------------


def test_statements_rendered_for_another_dialect_are_refused(
    database: Database, customers: MirrorStatements, orders_manifest: Manifest
) -> None:
    declaration = orders_manifest.mirror("crm.customer")
    for other in DIALECTS:
        if other == database.dialect:
            continue
        foreign = statements_for(declaration, other)

        with pytest.raises(ValueError, match=f"rendered for {other}, "):
            apply_changes(database.connection, foreign, [upserted(customer(1), 1)])

    database.connection.commit()
    assert read_mirror(database, customers) == {}


def test_an_event_of_another_entity_is_refused_and_nothing_is_written(
    database: Database, customers: MirrorStatements
) -> None:
    batch = [upserted(customer(1), 1), upserted(product("SKU-1"), 1), upserted(customer(2), 1)]

    with pytest.raises(ValueError, match=re.escape("catalog.product.upserted")):
        apply_changes(database.connection, customers, batch)

    database.connection.commit()
    assert read_mirror(database, customers) == {}


class LegacyCustomer(Contract, entity="crm.customer", version=2, key="id", register=False):
    """The customer contract at another major version (not registered)."""

    id: uuid.UUID
    name: str


def test_an_event_of_another_contract_version_is_refused(
    database: Database, customers: MirrorStatements
) -> None:
    event = upserted(LegacyCustomer(id=uuid.UUID(int=1), name="v2"), 1)

    with pytest.raises(ValueError, match=re.escape("crm.customer v1")):
        apply_changes(database.connection, customers, [event])

    database.connection.commit()
    assert read_mirror(database, customers) == {}


# -- statements and connections ----------------------------------------------------------


def test_statements_round_trip_through_json_and_still_apply(
    database: Database, customers: MirrorStatements
) -> None:
    loaded = MirrorStatements.from_json(customers.to_json())
    assert loaded == customers
    first = upserted(customer(1), 1)
    apply_changes(database.connection, loaded, [first])

    result = apply_changes(
        database.connection, loaded, [upserted(customer(1, name="Loaded"), 1), first]
    )
    database.connection.commit()

    assert result == ApplyResult(received=2, stale=1, collapsed=1)
    assert read_mirror(database, customers) == rows_of(customers, first)


def test_a_sqlalchemy_connection_is_accepted_in_place_of_the_driver_connection(
    database: Database, customers: MirrorStatements
) -> None:
    event, delete = upserted(customer(1), 1), deleted(Customer, uuid.UUID(int=2), 1)
    engine = sa.create_engine(database.sqlalchemy_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection, connection.begin():
            result = apply_changes(connection, customers, [event, delete])
    finally:
        engine.dispose()

    assert result == ApplyResult(received=2, applied=1, deleted=1)
    assert read_mirror(database, customers) == rows_of(customers, event, delete)


# -- composite keys ----------------------------------------------------------------------


class Shipment(
    Contract, entity="logistics.shipment", version=1, key=("order_id", "line"), register=False
):
    """A test contract with a composite (uuid, int) key."""

    order_id: uuid.UUID
    line: int
    carrier: str = Field(max_length=40)


SHIPMENTS = MirrorDeclaration(
    service="orders",
    contract=Shipment.__contract__,
    table="shipment_mirror",
    fields=("order_id", "line", "carrier"),
)


def test_a_composite_key_is_guarded_per_key(database: Database) -> None:
    statements = create_mirror(database, SHIPMENTS)
    order = uuid.UUID(int=42)
    first = [upserted(Shipment(order_id=order, line=n, carrier="DHL"), 2) for n in (1, 2)]
    apply_changes(database.connection, statements, first)
    newer = upserted(Shipment(order_id=order, line=1, carrier="UPS"), 3)
    stale = upserted(Shipment(order_id=order, line=2, carrier="UPS"), 1)
    gone = deleted(Shipment, (uuid.UUID(int=43), 1), 1)

    result = apply_changes(database.connection, statements, [newer, stale, gone])
    database.connection.commit()

    assert result == ApplyResult(received=3, applied=1, deleted=1, stale=1)
    assert read_mirror(database, statements) == rows_of(statements, newer, first[1], gone)


# -- concurrency -------------------------------------------------------------------------


def _lock_waits(db: Database) -> int:
    if db.dialect == "postgresql":
        sql = "SELECT count(*) FROM pg_locks WHERE NOT granted"
    else:
        sql = "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
    [(count,)] = fetch_all(db, sql)
    db.connection.rollback()
    return int(count)


@pytest.fixture(params=["postgresql", "mysql"])
def three_sessions(
    request: pytest.FixtureRequest, tmp_path: Any
) -> Iterator[tuple[Database, Database, Database]]:
    """Three sessions on one server: two writers and an observer."""
    opened: list[Database] = []
    try:
        for _ in range(3):
            opened.append(connect(request.param, tmp_path))
        yield opened[0], opened[1], opened[2]
    finally:
        for db in opened:
            db.close()


def test_an_older_write_racing_a_newer_one_never_overwrites_it(
    three_sessions: tuple[Database, Database, Database], orders_manifest: Manifest
) -> None:
    newer_writer, older_writer, observer = three_sessions
    statements = create_mirror(newer_writer, orders_manifest.mirror("crm.customer"))
    newer = upserted(customer(1, name="Newer"), 2)
    older = upserted(customer(1, name="Older"), 1)
    apply_changes(newer_writer.connection, statements, [newer])  # holds the key's lock
    errors: list[BaseException] = []
    results: list[ApplyResult] = []

    def write_older() -> None:
        try:
            results.append(apply_changes(older_writer.connection, statements, [older]))
            older_writer.connection.commit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    racer = threading.Thread(target=write_older)
    racer.start()
    deadline = time.monotonic() + 10
    while not (blocked := _lock_waits(observer) > 0) and time.monotonic() < deadline:
        time.sleep(0.25)  # InnoDB refreshes innodb_trx only when unread for 0.1 s
    newer_writer.connection.commit()
    racer.join(timeout=30)

    assert blocked, "the older write never waited for the newer one's lock"
    assert not racer.is_alive()
    assert errors == []
    assert results == [ApplyResult(received=1, stale=1)]
    assert_counted_once(results[0])
    assert read_mirror(observer, statements) == rows_of(statements, newer)
    assert read_provenance(observer, statements)[key_of(statements, newer.key)][0] == str(newer.id)


class Keyword(
    Contract, entity="testkit.keyword", version=1, key=("order", "group"), register=False
):
    """Every name here is an SQL reserved word."""

    order: str
    group: int
    select: str
    table: bool


KEYWORDS = MirrorDeclaration(
    service="orders",
    contract=Keyword.__contract__,
    table="order",
    fields=("order", "group", "select", "table"),
)


@pytest.mark.parametrize("path", PATHS)
def test_reserved_words_as_table_and_column_names_are_quoted_everywhere(
    database: Database, path: str
) -> None:
    statements = on_path(create_mirror(database, KEYWORDS), path)
    first = upserted(Keyword(order="a", group=1, select="x", table=True), 1)
    newer = upserted(Keyword(order="a", group=1, select="y", table=False), 2)
    gone = deleted(Keyword.__contract__, ("b", 2), 5)

    result = apply_changes(database.connection, statements, [first, newer, gone])
    stale = apply_changes(database.connection, statements, [first])
    database.connection.commit()

    assert result == ApplyResult(received=3, applied=1, deleted=1, collapsed=1)
    assert stale == ApplyResult(received=1, stale=1)
    assert read_mirror(database, statements) == {
        key_of(statements, e.key): expected_row(statements, e.key, e.version, e.data)
        for e in (newer, gone)
    }


def test_a_refresh_is_quoted_too(database: Database) -> None:
    statements = create_mirror(database, KEYWORDS)
    first = upserted(Keyword(order="a", group=1, select="x", table=True), 3)
    again = upserted(Keyword(order="a", group=1, select="refreshed", table=False), 3)
    apply_changes(database.connection, statements, [first])

    written = refresh_changes(database.connection, statements, [again])
    database.connection.commit()

    assert written == {str(again.id)}
    assert read_mirror(database, statements) == {
        key_of(statements, again.key): expected_row(statements, again.key, 3, again.data)
    }


# -- review findings: transactions, lock order, stamps, names, wide values ------------------


def test_a_connection_in_autocommit_is_refused_and_nothing_is_written(
    database: Database, customers: MirrorStatements
) -> None:
    raw = database.connection
    if database.dialect == "sqlite":
        raw.isolation_level = None
    else:
        raw.autocommit(True) if database.dialect == "mysql" else setattr(raw, "autocommit", True)
    events = [upserted(customer(n), 1) for n in range(1, 601)]

    with pytest.raises(ValueError, match="this connection is in autocommit mode"):
        apply_changes(raw, customers, events)

    assert read_mirror(database, customers) == {}


@pytest.mark.parametrize("bulk", [False, True], ids=["values", "bulk"])
def test_concurrent_batches_over_the_same_keys_in_opposite_orders_do_not_deadlock(
    three_sessions: tuple[Database, Database, Database], orders_manifest: Manifest, bulk: bool
) -> None:
    first, second, observer = three_sessions
    statements = bulk_or_not(create_mirror(first, orders_manifest.mirror("crm.customer")), bulk)
    seed = [upserted(customer(n), 1) for n in range(1, 1501)]
    apply_changes(first.connection, statements, seed)
    first.connection.commit()
    ascending = [upserted(customer(n, " a"), 2) for n in range(1, 1501)]
    descending = [upserted(customer(n, " d"), 3) for n in range(1500, 0, -1)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def write(db: Database, events: list[ChangeEvent]) -> None:
        try:
            start.wait()
            apply_changes(db.connection, statements, events)
            db.connection.commit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(first, ascending)),
        threading.Thread(target=write, args=(second, descending)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert read_mirror(observer, statements) == rows_of(statements, *descending)


def test_the_same_event_applied_twice_with_the_same_now_is_stale_the_second_time(
    database: Database, customers: MirrorStatements
) -> None:
    event = upserted(customer(1), 1)

    first = apply_changes(database.connection, customers, [event], now=T0)
    second = apply_changes(database.connection, customers, [event], now=T0)
    database.connection.commit()

    assert first == ApplyResult(received=1, applied=1)
    assert second == ApplyResult(received=1, stale=1)


def test_mirrors_with_long_names_sharing_a_prefix_get_their_own_stage_tables(
    database: Database, orders_manifest: Manifest
) -> None:
    long_customer = dataclasses.replace(orders_manifest.mirror("crm.customer"), table="m" * 63)
    long_product = dataclasses.replace(
        orders_manifest.mirror("catalog.product"), table="m" * 62 + "p"
    )
    customers = bulk_or_not(create_mirror(database, long_customer), True)
    products = bulk_or_not(create_mirror(database, long_product), True)
    people = [upserted(customer(n), 1) for n in range(1, 4)]
    goods = [upserted(product(f"P-{n}"), 1) for n in range(1, 4)]

    assert apply_changes(database.connection, customers, people).applied == 3
    assert apply_changes(database.connection, products, goods).applied == 3
    database.connection.commit()

    assert read_mirror(database, customers) == rows_of(customers, *people)
    assert read_mirror(database, products) == rows_of(products, *goods)


class Page(Contract, entity="testkit.page", version=1, key="slug", register=False):
    """A URL-typed field and unbounded text."""

    slug: str
    url: HttpUrl
    body: str


PAGES = MirrorDeclaration(
    service="orders",
    contract=Page.__contract__,
    table="page_mirror",
    fields=("slug", "url", "body"),
)


@pytest.mark.parametrize("path", PATHS)
def test_url_fields_and_text_over_64_kib_are_stored_whole(database: Database, path: str) -> None:
    statements = on_path(create_mirror(database, PAGES), path)
    page = Page.model_validate(
        {"slug": "home", "url": "https://example.com/a?b=c", "body": "é" * 70_000}
    )

    result = apply_changes(database.connection, statements, [upserted(page, 1)])
    database.connection.commit()

    assert result.applied == 1
    [(url, body)] = fetch_all(database, "SELECT url, body FROM page_mirror")
    assert url == "https://example.com/a?b=c"
    assert body == "é" * 70_000


class Sample(Contract, entity="testkit.sample", version=1, key="id", register=False):
    """One field of every kind the apply converts, each nullable."""

    id: int
    ratio: float | None = None
    day: dt.date | None = None
    flag: bool | None = None
    count: int | None = None
    payload: dict[str, Any] | None = None
    readings: list[float] | None = None
    note: str | None = None


SAMPLES = MirrorDeclaration(
    service="orders",
    contract=Sample.__contract__,
    table="sample_mirror",
    fields=("id", "ratio", "day", "flag", "count", "payload", "readings", "note"),
)


def edge_samples() -> list[Sample]:
    """Values at the edges of every kind: extreme and subnormal floats, the first and last
    dates databases agree on, 64-bit limits, JSON scalars, nesting and escapes."""
    return [
        Sample(id=-(2**63), ratio=0.1, day=dt.date(1000, 1, 1), flag=True, count=2**63 - 1),
        Sample(id=2**63 - 1, ratio=-1.7976931348623157e308, day=dt.date(9999, 12, 31)),
        Sample(id=0, ratio=5e-324, flag=False, count=-(2**63), readings=[]),
        Sample(id=1, ratio=123456789.12345679, day=dt.date(2024, 2, 29), readings=[1e-7, 2.5]),
        Sample(
            id=2,
            payload={"text": 'q"\\\t\n é 🧪', "n": [1, 2.5, None, True], "big": 2**62, "e": {}},
            note='{"looks": "like json"}',
        ),
        Sample(id=3, payload={}, note=""),
        Sample(id=4),
    ]


@pytest.mark.parametrize("path", PATHS)
def test_a_value_of_every_kind_is_stored_exactly_on_every_path(
    database: Database, path: str
) -> None:
    statements = on_path(create_mirror(database, SAMPLES), path)
    events = [upserted(state, 3) for state in edge_samples()]

    result = apply_changes(database.connection, statements, events)
    stale = apply_changes(database.connection, statements, [upserted(Sample(id=0), 2)])
    database.connection.commit()

    assert result == ApplyResult(received=len(events), applied=len(events))
    assert stale == ApplyResult(received=1, stale=1)
    assert read_mirror(database, statements) == rows_of(statements, *events)


MYSQL = dialect_named("mysql")


# -- MariaDB: the written rows from RETURNING, not a read-back ---------------------------


@pytest.mark.mysql
def test_mariadb_counts_from_returning_exactly_as_the_read_back_does(
    tmp_path: Any, orders_manifest: Manifest
) -> None:
    db = connect("mysql", tmp_path)
    try:
        statements = create_mirror(db, orders_manifest.mirror("crm.customer"))
        assert statements.returning_touched.startswith(" RETURNING ")
        assert MYSQL.upsert_returns_touched(db.connection)  # the test server is MariaDB
        read_back = dataclasses.replace(statements, returning_touched="")
        # As files rendered before the server compared the stamp hold it.
        earlier = dataclasses.replace(
            statements, returning_touched=" RETURNING id, _event_id, _deleted, _applied_at"
        )
        first = [upserted(customer(n), 2) for n in range(1, 7)]
        history = [
            [*first, deleted(Customer, uuid.UUID(int=3), 3)],
            first[:3],  # a redelivery: equal versions, same event ids
            [upserted(customer(n, " older"), 1) for n in range(1, 5)],  # stale
            [upserted(customer(n, " newer"), 4) for n in range(4, 9)],
        ]
        results = {}
        mirrors = {}
        contenders = (("returning", statements), ("earlier", earlier), ("read-back", read_back))
        for label, used in contenders:
            cursor = db.connection.cursor()
            cursor.execute(f"DELETE FROM {statements.table}")
            db.connection.commit()
            results[label] = [apply_changes(db.connection, used, batch) for batch in history]
            db.connection.commit()
            mirrors[label] = read_mirror(db, statements)
    finally:
        db.close()

    assert results["returning"] == results["earlier"] == results["read-back"]
    assert mirrors["returning"] == mirrors["earlier"] == mirrors["read-back"]
    assert [(r.applied, r.deleted, r.stale) for r in results["returning"]] == [
        (5, 1, 0),  # key 3 upserted and deleted in one batch: the upsert collapsed
        (0, 0, 3),
        (0, 0, 4),
        (5, 0, 0),
    ]


def test_only_mariadb_from_10_5_returns_the_rows_its_upsert_touched() -> None:
    class Server:
        def __init__(self, info: str) -> None:
            self.info = info

        def get_server_info(self) -> str:
            return self.info

    assert MYSQL.upsert_returns_touched(Server("5.5.5-10.11.6-MariaDB-0+deb12u1"))
    assert MYSQL.upsert_returns_touched(Server("5.5.5-10.5.0-MariaDB"))
    assert not MYSQL.upsert_returns_touched(Server("5.5.5-10.4.34-MariaDB"))
    assert not MYSQL.upsert_returns_touched(Server("8.0.36"))  # MySQL: no RETURNING
    assert not MYSQL.upsert_returns_touched(object())  # not PyMySQL: the read-back


def test_a_statements_file_rendered_before_the_newer_paths_still_applies(
    database: Database, customers: MirrorStatements
) -> None:
    # A file rendered at build time by an earlier version has neither the document upsert
    # (PostgreSQL) nor the RETURNING of touched rows (MariaDB): it binds every value and
    # reads the written rows back, as it did.
    fields = json.loads(customers.to_json())
    for newer in ("document_upsert", "returning_touched"):
        del fields[newer]
    older = MirrorStatements.from_json(json.dumps(fields))
    assert (older.document_upsert, older.returning_touched) == ("", "")
    events = [upserted(state, 2) for state in awkward_customers()]

    result = apply_changes(database.connection, older, events)
    stale = apply_changes(database.connection, older, events[:2])
    database.connection.commit()

    assert result == ApplyResult(received=len(events), applied=len(events))
    assert stale == ApplyResult(received=2, stale=2)
    assert read_mirror(database, customers) == rows_of(customers, *events)
