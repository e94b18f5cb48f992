"""End to end on real PostgreSQL and a moto server: owners, relays, topology, the consumer.

Each service gets its own PostgreSQL schema (``e2e_crm``, ``e2e_catalog``,
``e2e_orders``), as each would have its own database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa

from examples.catalog import service as catalog
from examples.crm import service as crm
from replication.consumer.database import spec_from_url
from replication.consumer.failures_table import failures_table
from replication.consumer.runner import EventSourceRunner, RunnerSettings
from replication.consumer.wiring import ConsumerSettings, build_runner
from replication.dburl import sqlalchemy_url, with_search_path
from replication.manifest import Manifest, load_manifest, load_manifests
from replication.mirror.tables import mirror_table
from replication.outbox.runner import RelaySettings, build_relay
from replication.topology.aws import AwsTopology
from replication.topology.model import build_topology
from tests.aws import ACCOUNT, REGION, MotoServer
from tests.databases import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("crm", "catalog", "orders")


def service_url(service: str) -> str:
    """The URL of ``service``'s schema on the test PostgreSQL server."""
    return with_search_path(POSTGRES_URL, f"e2e_{service}")


@dataclass
class World:
    """Owners, the consumer's database and the topology on a moto server."""

    moto: MotoServer
    manifests: dict[str, Manifest]
    engines: dict[str, sa.Engine]
    rng: random.Random
    customers: list[str]
    skus: list[str]

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()

    # -- owners ----------------------------------------------------------------------

    def create_customers(self, count: int) -> None:
        with crm.sessions(self.engines["crm"]).begin() as session:
            for _ in range(count):
                key = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
                session.add(
                    crm.CustomerRow(
                        id=key,
                        name=f"Customer {key[:8]}",
                        email=f"{key[:8]}@example.com",
                        tier="gold",
                        credit_limit=Decimal("100.00"),
                        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                        tags=["b2b"],
                        street="1 Main St",
                        city="Lyon",
                        postal_code="69001",
                        country="FR",
                    )
                )
                self.customers.append(key)

    def change_customers(self, count: int) -> None:
        with crm.sessions(self.engines["crm"]).begin() as session:
            for key in self.rng.sample(self.customers, min(count, len(self.customers))):
                row = session.get_one(crm.CustomerRow, key)
                row.name = f"Customer {key[:8]} #{self.rng.randrange(10**6)}"
                row.tier = self.rng.choice(["bronze", "silver", "gold", "platinum"])

    def delete_customers(self, count: int) -> list[str]:
        gone = self.rng.sample(self.customers, min(count, len(self.customers)))
        with crm.sessions(self.engines["crm"]).begin() as session:
            for key in gone:
                session.delete(session.get_one(crm.CustomerRow, key))
        self.customers = [k for k in self.customers if k not in gone]
        return gone

    def save_products(self, count: int) -> None:
        with self.engines["catalog"].begin() as conn:
            for _ in range(count):
                sku = f"SKU-{self.rng.randrange(60):03d}"
                price = Decimal(self.rng.randrange(100, 10_000)) / 100
                catalog.save_product(conn, sku, f"Thing {sku}", price, active=True, stock=3)
                if sku not in self.skus:
                    self.skus.append(sku)

    def delete_products(self, count: int) -> None:
        with self.engines["catalog"].begin() as conn:
            for sku in self.rng.sample(self.skus, min(count, len(self.skus))):
                catalog.delete_product(conn, sku)
                self.skus.remove(sku)

    def relay(self) -> int:
        """Publish both owners' outboxes; returns events published."""
        published = 0
        for name in ("crm", "catalog"):
            relay = build_relay(self.manifests[name], RelaySettings(), url=service_url(name))
            try:
                published += relay.drain().published
            finally:
                relay.engine.dispose()
        return published

    # -- checks ------------------------------------------------------------------------

    def rows(self, service: str, sql: str) -> list[tuple[Any, ...]]:
        with self.engines[service].connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]

    def differences(self) -> list[str]:
        """How the mirrors differ from their owners (empty when equal)."""
        problems = []
        owner = {
            str(r[0]): (r[1], r[2], r[3])
            for r in self.rows("crm", "SELECT id, name, tier, version FROM crm_customers")
        }
        mirror = self.rows(
            "orders", "SELECT id, name, tier, _version, _deleted FROM customer_mirror"
        )
        live = {str(r[0]): (r[1], r[2], r[3]) for r in mirror if not r[4]}
        if live != owner:
            missing = sorted(set(owner) - set(live))[:5]
            extra = sorted(set(live) - set(owner))[:5]
            changed = sorted(k for k in set(owner) & set(live) if owner[k] != live[k])[:5]
            problems.append(f"customers: missing {missing}, extra {extra}, changed {changed}")
        owner_products = {
            r[0]: (r[1], Decimal(r[2]), r[3])
            for r in self.rows("catalog", "SELECT sku, title, price, version FROM catalog_products")
        }
        mirror = self.rows(
            "orders", "SELECT sku, title, price, _version, _deleted FROM product_mirror"
        )
        live_products = {r[0]: (r[1], Decimal(r[2]), r[3]) for r in mirror if not r[4]}
        if live_products != owner_products:
            problems.append("products differ")
        return problems

    def queue_depths(self) -> dict[str, int]:
        """Visible plus in-flight messages per queue of orders (DLQs included)."""
        sqs = self.moto.client("sqs")
        depths = {}
        for url in sqs.list_queues(QueueNamePrefix="dev-orders").get("QueueUrls", []):
            attributes = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            depths[url.rsplit("/", 1)[-1]] = int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
        return depths


def drop_schemas() -> None:
    """Remove the services' schemas."""
    admin = sa.create_engine(sqlalchemy_url(POSTGRES_URL), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        for name in SERVICES:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS e2e_{name} CASCADE")
    admin.dispose()


def build_world(moto: MotoServer, seed: int = 1) -> World:
    """Fresh schemas, topology and owners' tables."""
    moto.reset()
    manifests = {m.service: m for m in load_manifests([ROOT / "examples"])}
    AwsTopology(moto.client("sns"), moto.client("sqs"), region=REGION, account=ACCOUNT).apply(
        build_topology(manifests.values())
    )
    admin = sa.create_engine(sqlalchemy_url(POSTGRES_URL), poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        for name in SERVICES:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS e2e_{name} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA e2e_{name}")
    admin.dispose()
    engines = {
        name: sa.create_engine(sqlalchemy_url(service_url(name)), poolclass=sa.pool.NullPool)
        for name in SERVICES
    }
    crm.create_schema(engines["crm"])
    catalog.create_schema(engines["catalog"])
    metadata = sa.MetaData()
    for declaration in manifests["orders"].mirrors:
        mirror_table(declaration, metadata)
    failures_table(metadata)
    metadata.create_all(engines["orders"])
    return World(moto, manifests, engines, random.Random(seed), [], [])


@contextmanager
def world_on(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A world whose AWS calls (in this process) go to ``moto``; schemas dropped after."""
    for key, value in moto.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        from tests.databases import unavailable

        unavailable(f"PostgreSQL at {POSTGRES_URL} does not answer: {exc}")
    w = build_world(moto)
    try:
        yield w
    finally:
        w.close()
        drop_schemas()


def orders_runner(
    settings: RunnerSettings | None = None, *, application_name: str = "e2e-consumer"
) -> EventSourceRunner:
    """The orders consumer's runner on its e2e schema."""
    manifest = load_manifest(ROOT / "examples" / "orders" / "replication.yaml")
    return build_runner(
        manifest,
        ConsumerSettings(log_level="ERROR", metrics=False),
        settings or RunnerSettings(batch_size=10, wait_time=1, visibility_timeout=2),
        spec=spec_from_url(f"{service_url('orders')}&application_name={application_name}"),
    )


def wait_until_empty(world: World, consumer: EventSourceRunner, timeout: float = 90) -> None:
    """Run the consumer until every orders queue (and DLQ) is empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.drain()
        if sum(world.queue_depths().values()) == 0:
            return
        time.sleep(0.5)  # retried messages come back when their visibility expires
    raise AssertionError(f"queues not empty: {world.queue_depths()}")


def run_cli(*args: str) -> tuple[int, str, str]:
    """``replication ...`` in this process: exit code, stdout, stderr (argparse exits too)."""
    from replication.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def closed_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def replication(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replication.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
