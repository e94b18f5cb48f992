"""psycopg2 and psycopg 3 side by side, and database URLs as users write them.

The consumer's apply function, its verdicts on database errors and the relay
give the same outcomes through either PostgreSQL driver; an owner's own
``sqlalchemy.create_engine`` takes plain ``mysql://``, ``mariadb://`` and
``postgresql://`` once :mod:`replication.outbox` is imported. Each PostgreSQL
test works in a schema of its own, named by ``?options=-csearch_path%3D...``
on its URL, so every path is shown to honour that option.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg2
import pytest
import sqlalchemy as sa

from contracts import Customer
from replication.consumer.classify import CONNECTION, DATA, classify
from replication.consumer.database import connect, spec_from_url
from replication.dburl import sqlalchemy_url, with_search_path
from replication.events import ChangeEvent, deleted, encode_event, upserted
from replication.manifest import Manifest
from replication.mirror import apply_changes
from replication.mirror.apply import refresh_changes
from replication.mirror.render import statements_for
from replication.outbox import InMemoryPublisher, Relay, RelayStats, TopicRoute, TopicRouter
from replication.outbox.publisher import PublishedMessage
from replication.outbox.runner import run_forever
from tests.conftest import create_mirror
from tests.consumer_support import create_consumer_tables, harness, rows, sqs_record
from tests.databases import MYSQL_URL, POSTGRES_URL, Database, mysql_connection, unavailable
from tests.mirror_state import read_mirror, rows_of
from tests.owners import reset_owner, sell
from tests.paths import ROOT
from tests.samples import awkward_customers, customer

DRIVERS = ["psycopg2", "psycopg"]
CUSTOMER_QUEUE = "dev-orders--crm-customer-v1"


def driver_url(driver: str, schema: str, *options: str) -> str:
    """The test server's URL through ``driver``, in ``schema``, with more libpq ``options``."""
    rest = POSTGRES_URL.split("://", 1)[1]
    url = with_search_path(f"postgresql+{driver}://{rest}", schema)
    return url + "".join(f"%20{option}" for option in options)


def root_module(thing: Any) -> str:
    """The top-level module a connection or exception comes from: its driver."""
    return type(thing).__module__.split(".", 1)[0]


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped with everything in it afterwards."""
    name = f"drivers_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(sqlalchemy_url(POSTGRES_URL), poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    except sa.exc.OperationalError as exc:
        unavailable(f"PostgreSQL at {POSTGRES_URL} does not answer: {exc}")
    try:
        yield name
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        admin.dispose()


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    """``psycopg2`` or ``psycopg`` (psycopg 3)."""
    name: str = request.param
    return name


@pytest.fixture
def postgres(driver: str, schema: str) -> Iterator[Database]:
    """The test schema, through the consumer's own ``connect`` with ``driver``."""
    url = driver_url(driver, schema)
    db = Database("postgresql", connect(spec_from_url(url)), url)
    assert root_module(db.connection) == driver
    try:
        yield db
    finally:
        db.close()


def lambda_batch(*events: ChangeEvent, receive_count: int = 1) -> dict[str, Any]:
    """An SQS event with one raw-delivery record per change event, on the customer queue."""
    return {
        "Records": [
            sqs_record(encode_event(e).decode(), queue=CUSTOMER_QUEUE, receive_count=receive_count)
            for e in events
        ]
    }


def holds_stage_table(connection: Any) -> bool:
    """Whether this session has taken the COPY + merge path for the customer mirror."""
    cursor = connection.cursor()
    try:
        cursor.execute("SELECT to_regclass('pg_temp._stage_customer_mirror')")
        found = cursor.fetchone()[0]
    finally:
        cursor.close()
        connection.rollback()
    return found is not None


# -- the consumer ------------------------------------------------------------------------


@pytest.mark.postgresql
def test_the_apply_function_writes_the_same_mirror_through_either_driver(
    postgres: Database, driver: str, orders_manifest: Manifest
) -> None:
    create_consumer_tables(postgres, orders_manifest)
    statements = statements_for(orders_manifest.mirror("crm.customer"), "postgresql")
    # The wire form writes UTC offsets to the minute (+05:30:15 would lose 15 s): send UTC.
    states = [
        s.model_copy(update={"created_at": s.created_at.astimezone(dt.UTC)})
        for s in awkward_customers()
    ]
    awkward = [
        upserted(s, 1, time=dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-n))))
        for n, s in enumerate(states)
    ]
    # Enough distinct keys to take the COPY + merge path (BULK_THRESHOLD is 500).
    many = [upserted(customer(n), 1) for n in range(1_000, 1_600)]
    updates = [upserted(s, 2) for s in states[2:]]
    deletes = [deleted(Customer, s.id, 3) for s in states[:2]]
    h = harness(postgres, orders_manifest)
    try:
        assert h(lambda_batch(*awkward)) == {"batchItemFailures": []}
        assert not holds_stage_table(h.connections[0])
        assert h(lambda_batch(*many)) == {"batchItemFailures": []}
        assert holds_stage_table(h.connections[0])
        assert h(lambda_batch(*updates, *deletes)) == {"batchItemFailures": []}
        assert h(lambda_batch(*many)) == {"batchItemFailures": []}  # redelivered: stale
        assert [root_module(c) for c in h.connections] == [driver]
    finally:
        h.close()

    assert h.dead_letters.messages == []
    postgres.connection.rollback()
    assert read_mirror(postgres, statements) == rows_of(statements, *deletes, *updates, *many)
    assert rows(postgres, "SELECT count(*) FROM replication_failures") == [(0,)]


@pytest.mark.postgresql
def test_a_refresh_and_a_sqlalchemy_connection_apply_through_either_driver(
    postgres: Database, driver: str, orders_manifest: Manifest
) -> None:
    statements = create_mirror(postgres, orders_manifest.mirror("crm.customer"))
    states = awkward_customers()
    apply_changes(postgres.connection, statements, [upserted(s, 1) for s in states])
    postgres.connection.commit()
    again = [upserted(customer(n + 1, " refreshed"), 1) for n in range(len(states))]

    written = refresh_changes(postgres.connection, statements, again)
    postgres.connection.commit()

    assert written == {str(e.id) for e in again}
    assert read_mirror(postgres, statements) == rows_of(statements, *again)

    engine = sa.create_engine(postgres.sqlalchemy_url, poolclass=sa.pool.NullPool)
    assert engine.dialect.driver == driver
    newer = [upserted(customer(n, " newer"), 2) for n in range(1, 601)]
    try:
        with engine.connect() as conn:
            result = apply_changes(conn, statements, newer)  # the COPY path
            conn.commit()
    finally:
        engine.dispose()
    assert (result.applied, result.stale) == (600, 0)
    postgres.connection.rollback()
    assert read_mirror(postgres, statements) == rows_of(statements, *newer)


@pytest.mark.postgresql
@pytest.mark.parametrize("count", [3, 600], ids=["statement", "bulk"])
def test_a_refused_value_is_dead_lettered_alone_through_either_driver(
    postgres: Database, orders_manifest: Manifest, count: int
) -> None:
    create_consumer_tables(postgres, orders_manifest)
    cursor = postgres.connection.cursor()
    cursor.execute("ALTER TABLE customer_mirror ADD CHECK (name <> 'refused')")
    postgres.connection.commit()
    good = [upserted(customer(n), 1) for n in range(1, count + 1)]
    poison = upserted(customer(count + 1, name="refused"), 1)
    h = harness(postgres, orders_manifest)
    try:
        response = h(lambda_batch(*good[:1], poison, *good[1:]))
    finally:
        h.close()

    assert response == {"batchItemFailures": []}  # dead-lettered, not retried
    [letter] = h.dead_letters.messages
    assert str(poison.id) in letter["body"]
    assert rows(postgres, "SELECT count(*), max(_version) FROM customer_mirror") == [(count, 1)]
    [(kind, reason, dead_lettered)] = rows(
        postgres, "SELECT kind, reason, dead_lettered FROM replication_failures"
    )
    assert (kind, dead_lettered) == ("permanent", True)
    assert "database refused a value (23514)" in reason


@pytest.mark.postgresql
def test_text_with_a_nul_is_a_refused_value_for_either_driver(postgres: Database) -> None:
    # psycopg2 raises ValueError, psycopg 3 DataError, both before anything is sent.
    cursor = postgres.connection.cursor()
    with pytest.raises((ValueError, psycopg.DataError)) as refused:
        cursor.execute("SELECT %s::text", ["nul \x00 inside"])
    postgres.connection.rollback()

    assert classify(refused.value).kind == DATA


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.postgresql
def test_a_refused_connection_is_retried_later_through_either_driver(
    driver: str, orders_manifest: Manifest
) -> None:
    url = f"postgresql+{driver}://postgres@127.0.0.1:{closed_port()}/test"
    with pytest.raises((psycopg2.OperationalError, psycopg.OperationalError)) as refused:
        connect(spec_from_url(url), connect_timeout=2)
    assert root_module(refused.value) == driver
    assert classify(refused.value).kind == CONNECTION

    h = harness(Database("postgresql", None, url), orders_manifest)
    batch = lambda_batch(*(upserted(customer(n), 1) for n in range(1, 4)))
    try:
        response = h(batch)
    finally:
        h.close()
    assert h.failed_ids(response) == [r["messageId"] for r in batch["Records"]]
    assert h.dead_letters.messages == []


@pytest.mark.postgresql
def test_a_lock_timeout_is_transient_and_recorded_through_either_driver(
    driver: str, schema: str, orders_manifest: Manifest
) -> None:
    # Several libpq options in one URL parameter: the schema and a short lock timeout.
    url = driver_url(driver, schema, "-clock_timeout%3D200")
    db = Database("postgresql", connect(spec_from_url(url)), url)
    create_consumer_tables(db, orders_manifest)
    h = harness(db, orders_manifest)
    try:
        assert h(lambda_batch(upserted(customer(1), 1))) == {"batchItemFailures": []}
        cursor = db.connection.cursor()
        cursor.execute("SELECT 1 FROM customer_mirror FOR UPDATE")  # held by another session
        batch = lambda_batch(upserted(customer(1, " v2"), 2))
        try:
            response = h(batch)
        finally:
            db.connection.rollback()
        message_id = batch["Records"][0]["messageId"]
        assert h.failed_ids(response) == [message_id]
        [(kind, reason, dead_lettered)] = rows(
            db, "SELECT kind, reason, dead_lettered FROM replication_failures"
        )
        assert (kind, dead_lettered) == ("transient", False)
        assert "database busy (55P03)" in reason

        batch["Records"][0]["attributes"]["ApproximateReceiveCount"] = "2"
        assert h(batch) == {"batchItemFailures": []}  # SQS redelivers; the lock is gone
        assert rows(db, "SELECT name, _version FROM customer_mirror") == [("Customer 1 v2", 2)]
        assert h.dead_letters.messages == []
    finally:
        h.close()
        db.close()


# -- the relay ---------------------------------------------------------------------------


def relay_for(engine: sa.Engine, publisher: InMemoryPublisher) -> Relay:
    route = TopicRoute("arn:aws:sns:us-east-1:123456789012:dev-catalog-product-v1")
    return Relay(engine, publisher, TopicRouter({("catalog.product", 1): route}))


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def owner_engine(driver: str, schema: str) -> Iterator[sa.Engine]:
    """An owner's engine through ``driver`` on the test schema, with a fresh outbox."""
    name = f"relay_{uuid.uuid4().hex[:8]}"
    url = driver_url(driver, schema) + f"&application_name={name}"
    engine = sa.create_engine(url, pool_pre_ping=True)
    assert engine.dialect.driver == driver
    reset_owner(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def published_id(published: PublishedMessage) -> str:
    """The id of the change event a message carries."""
    event_id: str = json.loads(published.message.body)["id"]
    return event_id


def listeners(engine: sa.Engine) -> list[int]:
    """The backends of ``engine``'s application name whose last statement was a LISTEN."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE application_name = :name AND query LIKE 'LISTEN %'"
            ),
            {"name": engine.url.query["application_name"]},
        )
        return [int(pid) for (pid,) in found]


def pending_rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        query = "SELECT count(*) FROM replication_outbox WHERE published_at IS NULL"
        return int(conn.exec_driver_sql(query).scalar_one())


@pytest.mark.postgresql
def test_the_relay_drains_the_outbox_through_either_driver(owner_engine: sa.Engine) -> None:
    events = [sell(owner_engine, f"SKU-{n}", n) for n in range(7)]
    publisher = InMemoryPublisher()

    stats = relay_for(owner_engine, publisher).drain()

    assert stats.published == 7
    assert [published_id(m) for m in publisher.published] == [str(e.id) for e in events]
    assert pending_rows(owner_engine) == 0


class RunningRelay:
    """``run_forever`` in a thread, stopped and joined by :meth:`stop`."""

    def __init__(self, relay: Relay) -> None:
        self.out = io.StringIO()
        self.halt = threading.Event()
        self.total = RelayStats()
        self._thread = threading.Thread(target=self._run, args=(relay,))
        self._thread.start()

    def _run(self, relay: Relay) -> None:
        # A two-minute poll interval: within the test, only a NOTIFY wakes the relay.
        self.total = run_forever(
            relay, poll_interval=120, out=self.out, stop=self.halt, install_signals=False
        )

    def stop(self) -> None:
        self.halt.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()


@pytest.mark.postgresql
def test_a_notify_wakes_the_relay_through_either_driver(owner_engine: sa.Engine) -> None:
    publisher = InMemoryPublisher()
    running = RunningRelay(relay_for(owner_engine, publisher))
    try:
        assert wait_until(lambda: "relay started" in running.out.getvalue(), 10)
        assert "relay started (LISTEN/NOTIFY)" in running.out.getvalue()
        listening = listeners(owner_engine)
        time.sleep(0.5)  # the first drain found nothing: the relay now waits
        events = [sell(owner_engine, f"SKU-{n}", n) for n in range(3)]
        assert wait_until(lambda: len(publisher.published) == 3, 10)
        later = sell(owner_engine, "SKU-9", 9)  # a second wake-up, after the first
        assert wait_until(lambda: len(publisher.published) == 4, 10)
        # Woken by the notifications, not by its listening connection failing on them.
        assert len(listening) == 1
        assert listeners(owner_engine) == listening
    finally:
        running.stop()
    assert [published_id(m) for m in publisher.published] == [str(e.id) for e in [*events, later]]
    assert running.total.published == 4
    assert pending_rows(owner_engine) == 0


@pytest.mark.postgresql
def test_the_relay_listens_again_after_its_connections_are_killed_through_either_driver(
    owner_engine: sa.Engine,
) -> None:
    publisher = InMemoryPublisher()
    running = RunningRelay(relay_for(owner_engine, publisher))
    name = owner_engine.url.query["application_name"]
    try:
        assert wait_until(lambda: "relay started (LISTEN/NOTIFY)" in running.out.getvalue(), 10)
        sell(owner_engine, "SKU-1", 1)
        assert wait_until(lambda: len(publisher.published) == 1, 10)
        [listening] = listeners(owner_engine)
        with owner_engine.begin() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            ).scalar_one()
        assert killed >= 1  # the LISTEN connection, at least
        # The waiter sees its connection gone and listens on a new one.
        assert wait_until(lambda: listeners(owner_engine) not in ([], [listening]), 10)
        later = [sell(owner_engine, f"SKU-{n}", n) for n in range(2, 5)]
        assert wait_until(lambda: len(publisher.published) == 4, 20)
    finally:
        running.stop()
    assert [published_id(m) for m in publisher.published[1:]] == [str(e.id) for e in later]


# -- an owner's own engine ---------------------------------------------------------------

OWN_ENGINE = """
import sys
{hide}
import sqlalchemy as sa
import replication.outbox

engine = sa.create_engine(sys.argv[1])
with engine.connect() as conn:
    print(engine.dialect.driver, conn.execute(sa.text(sys.argv[2])).scalar())
"""


def run_own_engine(url: str, query: str = "SELECT 1", *, hide: str = "") -> tuple[int, str, str]:
    """``create_engine(url)`` after ``import replication.outbox``, in a fresh interpreter.

    ``hide`` names a module made unimportable first, as if it were not installed.
    """
    code = OWN_ENGINE.format(hide=f"sys.modules[{hide!r}] = None" if hide else "")
    done = subprocess.run(
        [sys.executable, "-c", code, url, query],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout.strip(), done.stderr


@pytest.fixture
def mysql_server() -> None:
    try:
        mysql_connection().close()
    except Exception as exc:
        unavailable(f"MariaDB/MySQL at {MYSQL_URL} does not answer: {exc}")


@pytest.mark.mysql
@pytest.mark.parametrize("scheme", ["mysql", "mariadb"])
@pytest.mark.usefixtures("mysql_server")
def test_an_owners_own_mysql_engine_uses_pymysql(scheme: str) -> None:
    url = f"{scheme}://{MYSQL_URL.split('://', 1)[1]}"
    assert run_own_engine(url)[:2] == (0, "pymysql 1")


@pytest.mark.postgresql
@pytest.mark.parametrize(
    ("hide", "driver"), [("", "psycopg"), ("psycopg", "psycopg2")], ids=["both", "psycopg2-only"]
)
def test_an_owners_own_postgresql_engine_uses_an_installed_driver_and_its_schema(
    hide: str, driver: str, schema: str
) -> None:
    url = with_search_path(f"postgresql://{POSTGRES_URL.split('://', 1)[1]}", schema)
    assert run_own_engine(url, "SELECT current_schema()", hide=hide)[:2] == (
        0,
        f"{driver} {schema}",
    )


def test_a_value_mariadb_quotes_in_a_refusal_stays_out_of_the_reason(tmp_path: Path) -> None:
    """MySQL's refusals quote the value (``Duplicate entry 'ada@...'``); the reason goes to
    logs, the DLQ and the failures table, so the value is masked there."""
    import pymysql

    from replication.consumer.classify import DATA, classify
    from tests.databases import connect

    db = connect("mysql", tmp_path)
    table = f"pii_refusal_{uuid.uuid4().hex[:8]}"
    cursor = db.connection.cursor()
    reasons = []
    try:
        cursor.execute(f"CREATE TABLE {table} (email VARCHAR(40) UNIQUE, stock INT)")
        cursor.execute(f"INSERT INTO {table} (email) VALUES ('ada@example.com')")
        for sql in (
            f"INSERT INTO {table} (email) VALUES ('ada@example.com')",
            f"INSERT INTO {table} (stock) VALUES ('ada@example.com')",
        ):
            with pytest.raises(pymysql.err.MySQLError) as caught:
                cursor.execute(sql)
            verdict = classify(caught.value, "orders")
            assert verdict.kind == DATA, verdict
            reasons.append(verdict.reason)
    finally:
        db.connection.rollback()
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.close()
        db.close()

    assert all("ada@example.com" not in r and "'***'" in r for r in reasons), reasons
    assert "for key" in reasons[0]
    assert "for column" in reasons[1]
    assert "stock" in reasons[1]
