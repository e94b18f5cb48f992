"""``replication demo``: the whole flow on one machine, with nothing to install.

By default on the embedded stack: an in-process AWS emulator (moto) and one
SQLite file per service in a temporary folder. With ``--database-url
postgresql://…`` (or ``REPLICATION_DEMO_DATABASE_URL``) the three services
get one schema each in that PostgreSQL database instead.

1. provisions the topology of the example services (crm owns customers,
   catalog owns products, orders mirrors both) from their manifests;
2. runs the owners: creates, updates and deletes customers (crm, through the
   ORM integration) and products (catalog, explicit recording);
3. relays both outboxes to SNS, consumes the orders queues into its mirrors;
4. checks the mirrors against the owners, shows the replication lag, and runs
   the query the framework exists for: orders joined with its local customer
   and product mirrors in one SQL statement;
5. sends one poison message and shows it in the DLQ with its reason.
"""

from __future__ import annotations

__all__ = ["examples_folder", "run_demo"]

import datetime as dt
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from replication.dburl import dialect_of, sqlalchemy_url, with_search_path
from replication.demo.lines_folder import examples_folder
from replication.errors import ConfigurationError

PREFIX = "demo"
SERVICES = ("crm", "catalog", "orders")
FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Allen"]
CITIES = [("Lyon", "69001", "FR"), ("Berlin", "10115", "DE"), ("Porto", "4000-001", "PT")]
PRODUCTS = ["mug", "teapot", "kettle", "cup", "saucer", "jug", "bowl", "plate", "spoon", "tray"]
COLOURS = ["Blue", "Red", "Green", "Black", "White"]


@dataclass
class _Service:
    name: str
    url: str
    engine: sa.Engine


@contextmanager
def _aws() -> Iterator[None]:
    """The in-process AWS emulator, with credentials and region it accepts."""
    try:
        from moto import mock_aws
    except ImportError:
        raise ConfigurationError(
            "the demo runs on moto, the in-process AWS emulator: "
            "install the wheel with its demo extra, or pip install moto (make demo does it)"
        ) from None
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(_AWS_ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with mock_aws():
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


def _databases(folder: Path, url: str | None) -> dict[str, _Service]:
    services = {}
    if url is None:
        for name in SERVICES:
            service_url = f"sqlite:///{folder / name}.sqlite"
            services[name] = _Service(name, service_url, sa.create_engine(service_url))
        return services
    if dialect_of(url) != "postgresql":
        raise ConfigurationError("--database-url must be a postgresql:// URL")
    admin = sa.create_engine(sqlalchemy_url(url))
    with admin.begin() as conn:
        for name in SERVICES:
            schema = f"{PREFIX}_{name}"
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    admin.dispose()
    for name in SERVICES:
        service_url = with_search_path(url, f"{PREFIX}_{name}")
        engine = sa.create_engine(sqlalchemy_url(service_url))
        services[name] = _Service(name, service_url, engine)
    return services


class _Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def step(self, title: str) -> None:
        print(f"\n== {title}", file=self.out, flush=True)

    def line(self, text: str = "") -> None:
        print(f"   {text}" if text else "", file=self.out, flush=True)


def run_demo(*, database_url: str | None = None, out: TextIO, seed: int = 7) -> int:
    """Run the demo; returns 0 when every mirror equals its owner, else 1."""
    from replication.contract_modules import CONTRACTS_ENV

    # The example lines' manifests name their own contracts; a setting meant for
    # the reader's own services must not replace them.
    os.environ.pop(CONTRACTS_ENV, None)
    say = _Printer(out)
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    with tempfile.TemporaryDirectory(prefix="replication-demo-") as tmp, _aws():
        folder = Path(tmp)
        where = "SQLite files in " + tmp if database_url is None else "PostgreSQL schemas"
        say.line(f"replication demo: in-process AWS emulator, {where}")
        services = _databases(folder, database_url)
        try:
            code = _run(say, rng, services)
        finally:
            for service in services.values():
                service.engine.dispose()
        if database_url is not None:
            names = ", ".join(f"{PREFIX}_{name}" for name in SERVICES)
            say.line(f"PostgreSQL schemas {names} are kept for a look; the next run replaces them")
        return code


def _run(say: _Printer, rng: random.Random, services: dict[str, _Service]) -> int:
    from replication.aws_clients import client
    from replication.consumer.database import spec_from_url
    from replication.consumer.failures_table import failures_table
    from replication.consumer.function import ApplyFunction
    from replication.consumer.runner import RunnerSettings
    from replication.consumer.wiring import ConsumerSettings, build_runner
    from replication.demo.drift import drift_and_repair
    from replication.manifest import load_manifests
    from replication.mirror.tables import mirror_table
    from replication.outbox.runner import RelaySettings, build_relay
    from replication.topology.aws import AwsTopology
    from replication.topology.model import build_topology

    # Loading the manifests imports the contracts they name, from their python_path.
    manifests = {m.service: m for m in load_manifests([examples_folder()])}
    from examples.catalog import service as catalog
    from examples.crm import service as crm

    say.step("1. topology from the manifests of crm, catalog and orders")
    topology = build_topology(manifests.values(), prefix=PREFIX)
    plan = AwsTopology.from_environment().apply(topology)
    say.line(f"{len(plan.pending)} resources created:")
    for change in plan.pending:
        say.line(f"  + {change.kind:<12} {change.name}")

    say.step("2. owners change their data (each change writes its event in the same transaction)")
    crm.create_schema(services["crm"].engine)
    catalog.create_schema(services["catalog"].engine)
    started = time.monotonic()
    customer_ids = _crm_activity(rng, crm, services["crm"].engine, say)
    skus = _catalog_activity(rng, catalog, services["catalog"].engine, say)
    say.line(f"owner transactions took {time.monotonic() - started:.1f} s")

    say.step("3. relays publish the outboxes to SNS")
    relay_settings = RelaySettings(prefix=PREFIX)
    for name in ("crm", "catalog"):
        relay = build_relay(manifests[name], relay_settings, url=services[name].url)
        stats = relay.drain()
        say.line(
            f"{name}: {stats.published + stats.superseded} events: {stats.published} published, "
            f"{stats.superseded} superseded by a newer version of their key, "
            f"{relay.pending()} pending"
        )
        relay.engine.dispose()

    say.step("4. orders consumes its queues into its mirrors (the apply handler, as on Lambda)")
    orders_manifest = manifests["orders"]
    orders_engine = services["orders"].engine
    metadata = sa.MetaData()
    for declaration in orders_manifest.mirrors:
        mirror_table(declaration, metadata)
    failures_table(metadata)
    metadata.create_all(orders_engine)
    settings = ConsumerSettings(prefix=PREFIX, log_level="ERROR", metrics=False)
    runner = build_runner(
        orders_manifest,
        settings,
        RunnerSettings(batch_size=100, wait_time=0),
        spec=spec_from_url(services["orders"].url),
    )
    started = time.monotonic()
    consumed = runner.drain()
    elapsed = time.monotonic() - started
    say.line(f"{consumed.line()} in {elapsed:.1f} s")

    say.step("5. the mirrors against their owners")
    equal = _compare(say, services, orders_engine)
    _lag(say, orders_engine)

    # Everything above was relayed and consumed after all owner changes, so the lag there
    # includes the demo's own pauses; one more change, end to end, shows the live delay.
    started = time.monotonic()
    with crm.sessions(services["crm"].engine).begin() as session:
        session.get_one(crm.CustomerRow, customer_ids[0]).name = "Ada Lovelace-Byron"
    build_relay(manifests["crm"], relay_settings, url=services["crm"].url).drain()
    runner.drain()
    [(name,)] = _rows(
        orders_engine, f"SELECT name FROM customer_mirror WHERE id = '{customer_ids[0]}'"
    )
    say.line(
        f"one more change, end to end (owner commit, relay, SNS, SQS, apply): "
        f"{(time.monotonic() - started) * 1000:,.0f} ms; the mirror now says {name!r}"
    )

    say.step("6. the query orders exists for: its orders with customer and product, one SQL")
    _orders_query(say, rng, orders_engine, customer_ids, skus)

    say.step("7. a poison message: a customer event that spoofs its source")
    sqs = client("sqs")
    queue = next(q.name for q in runner.queues if "crm-customer" in q.name)
    _poison(say, sqs, queue, runner, orders_engine)

    say.step("8. drift: reconcile compares a mirror with its owner inside both databases")
    repaired = drift_and_repair(say, services["crm"].engine, orders_engine, runner, sqs)
    equal = equal and repaired
    function = runner.handler
    assert isinstance(function, ApplyFunction)
    function.consumer.close()

    say.step("done")
    total = time.monotonic() - say.started
    verdict = "every mirror equals its owner" if equal else "MIRRORS DIFFER FROM OWNERS"
    say.line(f"{verdict}; {total:.1f} s in all")
    return 0 if equal else 1


def _crm_activity(rng: random.Random, crm: Any, engine: sa.Engine, say: _Printer) -> list[str]:
    factory = crm.sessions(engine)
    ids: list[str] = []
    with factory.begin() as session:
        for n in range(120):
            city, postal, country = rng.choice(CITIES)
            row = crm.CustomerRow(
                id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                email=f"customer{n}@example.com",
                tier=rng.choice(["bronze", "silver", "gold", "platinum"]),
                credit_limit=Decimal(rng.randrange(0, 500_000)) / 100,
                created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=n),
                tags=rng.sample(["b2b", "vip", "newsletter", "eu"], 2),
                street=f"{n} Main St",
                city=city,
                postal_code=postal,
                country=country,
            )
            session.add(row)
            ids.append(row.id)
    updates = 0
    for _ in range(40):  # 40 transactions of a few updates each
        with factory.begin() as session:
            for key in rng.sample(ids, 5):
                customer = session.get_one(crm.CustomerRow, key)
                customer.tier = rng.choice(["bronze", "silver", "gold", "platinum"])
                customer.credit_limit = Decimal(rng.randrange(0, 500_000)) / 100
                updates += 1
    removed = rng.sample(ids, 10)
    with factory.begin() as session:
        for key in removed:
            session.delete(session.get_one(crm.CustomerRow, key))
    # A rolled-back transaction publishes nothing.
    with factory() as session:
        session.get_one(crm.CustomerRow, ids[0]).name = "Never Published"
        session.flush()
        session.rollback()
    say.line(
        f"crm: {len(ids)} customers created, {updates} updates, {len(removed)} deleted, "
        "1 transaction rolled back"
    )
    return [key for key in ids if key not in removed]


def _catalog_activity(
    rng: random.Random, catalog: Any, engine: sa.Engine, say: _Printer
) -> list[str]:
    skus = []
    with engine.begin() as conn:
        for n in range(40):
            sku = f"SKU-{n:04d}"
            title = f"{rng.choice(COLOURS)} {rng.choice(PRODUCTS)}"
            price = Decimal(rng.randrange(300, 9_000)) / 100
            catalog.save_product(conn, sku, title, price, active=True, stock=rng.randrange(100))
            skus.append(sku)
    changes = 0
    for _ in range(30):
        with engine.begin() as conn:
            sku = rng.choice(skus)
            price = Decimal(rng.randrange(300, 9_000)) / 100
            title = f"{rng.choice(COLOURS)} {rng.choice(PRODUCTS)}"
            catalog.save_product(conn, sku, title, price, active=True, stock=rng.randrange(100))
            changes += 1
    removed = rng.sample(skus, 4)
    with engine.begin() as conn:
        for sku in removed:
            catalog.delete_product(conn, sku)
    say.line(f"catalog: {len(skus)} products created, {changes} changes, {len(removed)} deleted")
    return [sku for sku in skus if sku not in removed]


def _rows(engine: sa.Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql)]


def _compare(say: _Printer, services: dict[str, _Service], orders: sa.Engine) -> bool:
    owner_customers = {
        str(r[0]): (r[1], r[2], int(r[3]))
        for r in _rows(services["crm"].engine, "SELECT id, name, tier, version FROM crm_customers")
    }
    mirrored = _rows(orders, "SELECT id, name, tier, _version, _deleted FROM customer_mirror")
    live = {str(r[0]): (r[1], r[2], int(r[3])) for r in mirrored if not r[4]}
    tombstones = sum(1 for r in mirrored if r[4])
    same_customers = live == owner_customers
    say.line(
        f"customer_mirror: {len(live)} rows + {tombstones} tombstones; crm has "
        f"{len(owner_customers)} customers: {'equal' if same_customers else 'DIFFERENT'}"
    )
    owner_products = {
        r[0]: (r[1], Decimal(str(r[2])), int(r[3]))
        for r in _rows(
            services["catalog"].engine, "SELECT sku, title, price, version FROM catalog_products"
        )
    }
    mirrored = _rows(orders, "SELECT sku, title, price, _version, _deleted FROM product_mirror")
    live = {r[0]: (r[1], Decimal(str(r[2])), int(r[3])) for r in mirrored if not r[4]}
    tombstones = sum(1 for r in mirrored if r[4])
    same_products = live == owner_products
    say.line(
        f"product_mirror: {len(live)} rows + {tombstones} tombstones; catalog has "
        f"{len(owner_products)} products: {'equal' if same_products else 'DIFFERENT'}"
    )
    return same_customers and same_products


def _when(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _lag(say: _Printer, orders: sa.Engine) -> None:
    for table in ("customer_mirror", "product_mirror"):
        lags = [
            (_when(applied) - _when(event_time)).total_seconds() * 1000
            for event_time, applied in _rows(
                orders, f"SELECT _event_time, _applied_at FROM {table}"
            )
        ]
        lags.sort()
        median = lags[len(lags) // 2]
        say.line(
            f"lag into {table} (event time to apply, in this batch run): "
            f"median {median:,.0f} ms, max {lags[-1]:,.0f} ms over {len(lags)} rows"
        )


def _orders_query(
    say: _Printer, rng: random.Random, orders: sa.Engine, customers: list[str], skus: list[str]
) -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        # The same type as the mirror's key, so the join compares like with like.
        sa.Column(
            "customer_id",
            sa.Uuid(as_uuid=False).with_variant(sa.String(36), "sqlite"),
            nullable=False,
        ),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
    )
    metadata.create_all(orders)
    with orders.begin() as conn:
        conn.execute(
            table.insert(),
            [
                {
                    "id": n + 1,
                    "customer_id": rng.choice(customers),
                    "sku": rng.choice(skus),
                    "quantity": rng.randrange(1, 6),
                }
                for n in range(300)
            ],
        )
    query = """
        SELECT c.name, c.tier, p.title, o.quantity, o.quantity * p.price AS total
        FROM orders o
        JOIN customer_mirror c ON c.id = o.customer_id AND NOT c._deleted
        JOIN product_mirror p ON p.sku = o.sku AND NOT p._deleted
        ORDER BY total DESC, o.id
    """
    started = time.perf_counter()
    rows = _rows(orders, query)
    elapsed = (time.perf_counter() - started) * 1000
    say.line(" ".join(query.split()))
    say.line()
    say.line(f"{'customer':<20} {'tier':<9} {'product':<14} {'qty':>3} {'total':>9}")
    for name, tier, title, quantity, total in rows[:5]:
        say.line(f"{name:<20} {tier:<9} {title:<14} {quantity:>3} {Decimal(str(total)):>9.2f}")
    say.line(f"... {len(rows)} orders in one local query, {elapsed:.1f} ms")
    say.line(
        f"without mirrors: {len(rows)} calls to crm and {len(rows)} to catalog "
        f"({2 * len(rows)} cross-service calls) for the same page"
    )


def _poison(say: _Printer, sqs: Any, queue: str, runner: Any, orders: sa.Engine) -> None:
    import json

    from replication.consumer.dead_letters import REASON

    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "attacker",
        "type": "crm.customer.upserted",
        "subject": str(uuid.uuid4()),
        "time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "dataschema": "contract:crm.customer/v1",
        "datacontenttype": "application/json",
        "entityversion": 1,
        "data": {},
    }
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
    say.line(f"sent to {queue}: an event claiming source 'attacker'")
    stats = runner.drain()
    say.line(f"consumer: {stats.line()}")
    dlq_url = sqs.get_queue_url(QueueName=f"{queue}-dlq")["QueueUrl"]
    found = sqs.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", [])
    for message in found:
        reason = message["MessageAttributes"][REASON]["StringValue"]
        say.line(f"in {queue}-dlq after one receive, with its reason: {reason}")
    rows = _rows(orders, "SELECT kind, receive_count FROM replication_failures")
    say.line(f"replication_failures: {len(rows)} row(s) {rows}")
