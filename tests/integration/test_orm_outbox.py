"""The ORM integration on every dialect: flushes write exactly the matching outbox rows."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from contracts import Product
from examples.crm.service import Base, CustomerRow, create_schema, sessions
from replication.events import decode_event
from replication.outbox import outbox_table
from replication.outbox.orm import OutboxTracker, UnpublishableChangeError
from tests.owners import engine_for


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def crm(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[sa.Engine, sessionmaker[Session]]]:
    engine = engine_for(request.param, tmp_path)
    Base.metadata.drop_all(engine)
    outbox_table().drop(engine, checkfirst=True)
    create_schema(engine)
    yield engine, sessions(engine)
    engine.dispose()


def new_customer(**changes: Any) -> CustomerRow:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "name": "Ada",
        "email": "ada@example.com",
        "tier": "gold",
        "credit_limit": Decimal("1000.00"),
        "created_at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "tags": ["b2b"],
        "street": "1 Main St",
        "city": "Lyon",
        "postal_code": "69001",
        "country": "FR",
    }
    values.update(changes)
    return CustomerRow(**values)


def outbox(engine: sa.Engine) -> list[dict[str, Any]]:
    t = outbox_table()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.payload).order_by(t.c.id)).scalars()
        return [json.loads(p) for p in rows]


def test_insert_update_and_delete_write_their_events_at_the_rows_versions(
    crm: tuple[sa.Engine, sessionmaker[Session]],
) -> None:
    engine, factory = crm
    row = new_customer()
    with factory.begin() as session:
        session.add(row)
    with factory.begin() as session:
        session.get_one(CustomerRow, row.id).tier = "platinum"
    with factory.begin() as session:
        session.get_one(CustomerRow, row.id).name = "Ada"  # unchanged: no event
    with factory.begin() as session:
        session.delete(session.get_one(CustomerRow, row.id))

    events = outbox(engine)
    assert [(e["type"], e["entityversion"]) for e in events] == [
        ("crm.customer.upserted", 1),
        ("crm.customer.upserted", 2),
        ("crm.customer.deleted", 3),
    ]
    assert {e["subject"] for e in events} == {row.id}
    assert events[1]["data"]["tier"] == "platinum"
    decoded = decode_event(json.dumps(events[0]))
    assert decoded.data is not None
    assert decoded.data.model_dump(mode="json")["address"]["city"] == "Lyon"


def test_a_rolled_back_session_writes_no_event(
    crm: tuple[sa.Engine, sessionmaker[Session]],
) -> None:
    engine, factory = crm
    with factory() as session:
        session.add(new_customer())
        session.flush()
        written = session.execute(sa.select(sa.func.count()).select_from(outbox_table()))
        assert written.scalar() == 1  # the flush wrote it, in the session's transaction
        session.rollback()

    assert outbox(engine) == []


def test_a_row_that_violates_its_contract_cannot_be_committed(
    crm: tuple[sa.Engine, sessionmaker[Session]],
) -> None:
    engine, factory = crm
    bad = new_customer(email="not-an-email", credit_limit=Decimal("-5.00"))

    with pytest.raises(UnpublishableChangeError) as error, factory.begin() as session:
        session.add(bad)

    message = str(error.value)
    assert "does not satisfy crm.customer v1" in message
    assert "email:" in message
    assert "credit_limit:" in message
    assert "not-an-email" not in message  # pii is never echoed
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(CustomerRow)).scalar() == 0
    assert outbox(engine) == []


def test_a_bulk_update_on_a_tracked_model_is_refused(
    crm: tuple[sa.Engine, sessionmaker[Session]],
) -> None:
    engine, factory = crm
    with factory.begin() as session:
        session.add(new_customer())

    with (
        pytest.raises(UnpublishableChangeError, match="bulk UPDATE on CustomerRow"),
        factory.begin() as session,
    ):
        session.execute(sa.update(CustomerRow).values(tier="bronze"))

    assert [e["entityversion"] for e in outbox(engine)] == [1]


def test_changing_a_key_deletes_the_old_key_and_upserts_the_new_one(
    crm: tuple[sa.Engine, sessionmaker[Session]],
) -> None:
    engine, factory = crm
    row = new_customer()
    new_id = str(uuid.uuid4())
    with factory.begin() as session:
        session.add(row)
    with factory.begin() as session:
        session.get_one(CustomerRow, row.id).id = new_id

    events = outbox(engine)
    assert [(e["type"], e["subject"], e["entityversion"]) for e in events] == [
        ("crm.customer.upserted", row.id, 1),
        ("crm.customer.deleted", row.id, 2),
        ("crm.customer.upserted", new_id, 2),
    ]


class _TestBase(DeclarativeBase):
    pass


class ProductRow(_TestBase):
    """A model whose owner increments the version by hand."""

    __tablename__ = "orm_test_products"

    sku: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    stock: Mapped[int] = mapped_column(sa.Integer)
    version: Mapped[int] = mapped_column(sa.Integer)


def test_two_states_of_one_key_at_one_version_are_refused(
    crm: tuple[sa.Engine, sessionmaker[Session]],
) -> None:
    engine, factory = crm
    _TestBase.metadata.drop_all(engine)
    _TestBase.metadata.create_all(engine)
    tracker = OutboxTracker()
    tracker.track(
        ProductRow,
        Product,
        to_contract=lambda r: Product(
            sku=r.sku, title=r.sku, price=Decimal("1.00"), active=True, stock=r.stock
        ),
        version_attr="version",
    )
    try:
        with factory.begin() as session:
            row = ProductRow(sku="P-1", stock=1, version=1)
            session.add(row)
            session.flush()
            row.stock = 2
            row.version = 2
            session.flush()
            row.stock = 3  # a new state, the version forgotten
            with pytest.raises(UnpublishableChangeError, match="twice at version 2"):
                session.flush()
            session.rollback()
    finally:
        tracker.untrack(ProductRow)
    assert outbox(engine) == []


def test_one_flush_writes_an_event_for_each_row_it_changed_and_none_for_the_others(
    crm: tuple[sa.Engine, sessionmaker[Session]],
) -> None:
    engine, factory = crm
    rows = [new_customer(name=f"C{n}") for n in range(5)]
    with factory.begin() as session:
        session.add_all(rows)
    with factory.begin() as session:
        loaded = [session.get_one(CustomerRow, row.id) for row in rows]
        loaded[0].tags = ["b2b", "vip"]  # a JSON column, replaced
        loaded[1].name = "C1"  # the same value: no net change
        loaded[2].city = "Paris"
        loaded[3].phone = "+33123456789"
        loaded[4].version = loaded[4].version  # the version alone: nothing else changed

    changed = sorted((e["subject"], e["entityversion"]) for e in outbox(engine)[5:])
    assert changed == sorted([(rows[0].id, 2), (rows[2].id, 2), (rows[3].id, 2)])
