"""With psycopg 3 the outbox INSERT goes to PostgreSQL with the COMMIT, in one round trip.

The owner's transaction waits for the server as often with its events as
without them (counted in libpq's trace: one ReadyForQuery per wait), and the
outbox keeps its guarantee: a row exists if and only if its change committed,
through rollbacks, savepoints, a row the database refuses at commit, and the
ORM tracker.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from contracts import Product
from replication.outbox import outbox_table, record_upsert
from tests.databases import POSTGRES_URL, unavailable
from tests.owners import BUSINESS, product

pytestmark = pytest.mark.postgresql

OUTBOX = outbox_table()


@pytest.fixture
def engine() -> Iterator[sa.Engine]:
    """psycopg 3 on the test server, with an empty outbox and business table."""
    # No server-side prepared statements: preparing one (after its fifth run) is a wait of
    # its own, which would blur the count.
    created = sa.create_engine(
        POSTGRES_URL.replace("postgresql:", "postgresql+psycopg:", 1),
        connect_args={"prepare_threshold": None},
    )
    try:
        with created.connect():
            pass
    except sa.exc.OperationalError as exc:
        unavailable(f"postgresql does not answer: {exc}")
    for table in (OUTBOX, BUSINESS):
        table.drop(created, checkfirst=True)
        table.create(created)
    yield created
    created.dispose()


def sale(conn: sa.Connection, sku: str, version: int, *, record: bool = True) -> None:
    conn.execute(BUSINESS.insert().values(sku=sku, title=sku, stock=1, version=version))
    if record:
        record_upsert(conn, product(sku, 1), version)


def outbox(engine: sa.Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(OUTBOX.c.subject, OUTBOX.c.entity_version).order_by(OUTBOX.c.id)
        )
        return [(subject, version) for subject, version in rows]


def business(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(BUSINESS.c.sku).order_by(BUSINESS.c.sku)).scalars())


def waits(engine: sa.Engine, transaction: Any) -> int:
    """How many times ``transaction(conn)``, then its commit, waited for the server."""
    fd, name = tempfile.mkstemp()
    try:
        with engine.connect() as conn:
            driver: Any = conn.connection.driver_connection
            driver.pgconn.trace(fd)
            try:
                transaction(conn)
                conn.commit()
            finally:
                driver.pgconn.untrace()
        trace = Path(name).read_text()
    finally:
        os.close(fd)
        os.unlink(name)
    return sum(1 for line in trace.splitlines() if "\tReadyForQuery\t" in line)


def test_the_events_cost_the_transaction_no_extra_wait(engine: sa.Engine) -> None:
    def three(record: bool) -> Any:
        def transaction(conn: sa.Connection) -> None:
            for n in range(3):
                sale(conn, f"{'MANY' if record else 'PLAIN'}-{n}", 1, record=record)

        return transaction

    one_without = waits(engine, lambda conn: sale(conn, "PLAIN-9", 1, record=False))
    one_with = waits(engine, lambda conn: sale(conn, "ONE-1", 1))
    three_without, three_with = waits(engine, three(False)), waits(engine, three(True))

    assert one_with == one_without == 3  # BEGIN, the business INSERT, the COMMIT
    assert three_with == three_without == 5
    assert outbox(engine) == [("ONE-1", 1), ("MANY-0", 1), ("MANY-1", 1), ("MANY-2", 1)]


def test_a_rolled_back_transaction_leaves_no_row_now_or_in_the_next_one(
    engine: sa.Engine,
) -> None:
    engine = engine.execution_options()  # one pooled connection for both transactions
    with engine.connect() as conn:
        sale(conn, "GONE-1", 1)
        conn.rollback()
        sale(conn, "KEPT-1", 1)
        conn.commit()

    assert outbox(engine) == [("KEPT-1", 1)]
    assert business(engine) == ["KEPT-1"]


def test_a_savepoint_rolled_back_takes_only_its_own_rows(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        sale(conn, "BEFORE-1", 1)
        savepoint = conn.begin_nested()
        sale(conn, "INSIDE-1", 1)
        savepoint.rollback()
        sale(conn, "AFTER-1", 1)

    assert outbox(engine) == [("BEFORE-1", 1), ("AFTER-1", 1)]
    assert business(engine) == ["AFTER-1", "BEFORE-1"]


def test_a_row_refused_at_commit_fails_the_commit_and_commits_nothing(
    engine: sa.Engine,
) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"ALTER TABLE {OUTBOX.name} ADD CONSTRAINT small_versions CHECK (entity_version < 100)"
        )
    with pytest.raises(sa.exc.IntegrityError, match="small_versions"), engine.begin() as conn:
        sale(conn, "REFUSED-1", 500)

    with engine.begin() as conn:  # the pool's connection is usable afterwards
        sale(conn, "FINE-1", 5)
    assert outbox(engine) == [("FINE-1", 5)]
    assert business(engine) == ["FINE-1"]


def test_an_autocommit_connection_inserts_at_once(engine: sa.Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        record_upsert(conn, product("AUTO-1", 1), 1)
        assert outbox(engine) == [("AUTO-1", 1)]


def test_the_orm_tracker_sends_its_rows_with_the_commit(engine: sa.Engine) -> None:
    from replication.outbox.orm import OutboxTracker

    class Base(sa.orm.DeclarativeBase):
        pass

    class Row(Base):
        __table__ = BUSINESS
        __mapper_args__ = {"version_id_col": BUSINESS.c.version}

    tracker = OutboxTracker()
    tracker.track(
        Row,
        Product,
        to_contract=lambda row: product(row.sku, row.stock),
    )
    try:
        with Session(engine) as session, session.begin():
            session.add_all(
                [Row(sku="ORM-1", title="a", stock=1), Row(sku="ORM-2", title="b", stock=2)]
            )
        with Session(engine) as session, session.begin():
            row: Any = session.get_one(Row, "ORM-1")  # mapped from BUSINESS's columns
            row.stock = 7
        with Session(engine) as session:
            session.add(Row(sku="ORM-3", title="c", stock=3))
            session.flush()  # its row waits for a COMMIT that never comes
            session.rollback()
    finally:
        tracker.untrack(Row)

    assert outbox(engine) == [("ORM-1", 1), ("ORM-2", 1), ("ORM-1", 2)]
    assert business(engine) == ["ORM-1", "ORM-2"]
