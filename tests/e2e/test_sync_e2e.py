"""Backfill and reconcile end to end: a moto server, and PostgreSQL or MariaDB.

crm (the owner) and orders (the consumer) each have their own database
(schemas on PostgreSQL, databases on MariaDB). orders is a new consumer: the
customers existed before its queue did, so only a backfill brings them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from examples.crm import service as crm
from replication.consumer.database import spec_from_url
from replication.consumer.failures_table import failures_table
from replication.consumer.runner import RunnerSettings
from replication.consumer.wiring import ConsumerSettings, build_runner
from replication.dburl import sqlalchemy_url, with_search_path
from replication.manifest import load_manifest, load_manifests
from replication.mirror.tables import mirror_table
from replication.outbox.runner import RelaySettings, build_relay
from replication.outbox.table import outbox_table
from replication.topology.aws import AwsTopology
from replication.topology.model import build_topology
from tests.aws import ACCOUNT, REGION, MotoServer, moto_server
from tests.databases import MYSQL_URL, POSTGRES_URL, unavailable
from tests.e2e_support import run_cli
from tests.paths import ROOT
from tests.sync_support import BACKFILL, RECONCILE, customer_row

COLUMNS = (
    "id, name, email, tier, credit_limit, created_at, tags, address, phone, "
    "_version, _deleted, _event_id, _event_time, _applied_at"
)
ORDERS = load_manifest(ROOT / "examples" / "orders" / "replication.yaml")


def urls(dialect: str) -> dict[str, str]:
    """Each service's own database: a schema on PostgreSQL, a database on MariaDB."""
    if dialect == "postgresql":
        return {s: with_search_path(POSTGRES_URL, f"sync_{s}") for s in ("crm", "orders")}
    base = MYSQL_URL.rsplit("/", 1)[0]
    return {s: f"{base}/sync_{s}" for s in ("crm", "orders")}


@dataclass
class Stage:
    """The two databases, the topology on moto, and the environment the commands read."""

    moto: MotoServer
    dialect: str
    urls: dict[str, str]
    crm: sa.Engine
    orders: sa.Engine
    env: dict[str, str]
    rng: random.Random

    def create_customers(self, count: int) -> list[str]:
        rows = [customer_row(self.rng, 1) for _ in range(count)]
        with crm.sessions(self.crm).begin() as session:
            for row in rows:
                values = {k: v for k, v in row.items() if k != "version"}
                session.add(crm.CustomerRow(**values))
        return [r["id"] for r in rows]

    def owner_keys(self) -> list[str]:
        with self.crm.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(crm.customers.c.id))]

    def churn(self, rounds: int, stop: threading.Event) -> None:
        """Owner activity: changes, deletes and new customers, relayed as they commit."""
        relay = build_relay(
            load_manifest(ROOT / "examples" / "crm" / "replication.yaml"),
            RelaySettings(),
            url=self.urls["crm"],
        )
        try:
            for _ in range(rounds):
                if stop.is_set():
                    break
                keys = self.owner_keys()
                with crm.sessions(self.crm).begin() as session:
                    for key in self.rng.sample(keys, min(6, len(keys))):
                        row = session.get_one(crm.CustomerRow, key)
                        row.name = f"Renamed {self.rng.randrange(10**6)}"
                    for key in self.rng.sample(keys, min(2, len(keys))):
                        session.delete(session.get_one(crm.CustomerRow, key))
                self.create_customers(2)
                relay.drain()
                time.sleep(0.05)
            relay.drain()
        finally:
            relay.engine.dispose()

    def consume(self) -> None:
        """Run orders' consumer until its queues are empty."""
        runner = build_runner(
            ORDERS,
            ConsumerSettings(log_level="ERROR", metrics=False),
            RunnerSettings(batch_size=10, wait_time=1, visibility_timeout=2),
            spec=spec_from_url(self.urls["orders"]),
        )
        sqs = self.moto.client("sqs")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runner.drain()
            depth = 0
            for url in sqs.list_queues(QueueNamePrefix="dev-orders").get("QueueUrls", []):
                a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
                depth += int(a["ApproximateNumberOfMessages"])
                depth += int(a["ApproximateNumberOfMessagesNotVisible"])
            if depth == 0:
                return
            time.sleep(0.5)
        raise AssertionError("orders' queues did not empty")

    def cli(self, *args: str) -> tuple[int, str, str]:
        return run_cli(*args)

    def backfill(self, *args: str) -> tuple[int, str, str]:
        """``replication backfill`` of crm.customer to orders."""
        return self.cli(*BACKFILL, *args)

    def existing_customers(self, count: int) -> list[str]:
        """Customers created before orders subscribed: their events never reached it."""
        keys = self.create_customers(count)
        with self.crm.begin() as conn:
            conn.exec_driver_sql("DELETE FROM replication_outbox")
        return keys

    def reconcile(self) -> dict[str, Any]:
        code, out, err = self.cli(
            *RECONCILE,
            "--json",
            "--buckets",
            "64",
        )
        assert code in (0, 5), err
        result: dict[str, Any] = json.loads(out)
        return result

    def mirror(self) -> dict[str, tuple[Any, ...]]:
        with self.orders.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, name, _version FROM customer_mirror WHERE NOT _deleted")
            ).all()
        return {str(r[0]): (r[1], r[2]) for r in rows}

    def owner(self) -> dict[str, tuple[Any, ...]]:
        with self.crm.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name, version FROM crm_customers")).all()
        return {str(r[0]): (r[1], r[2]) for r in rows}


@pytest.fixture(params=["postgresql", "mysql"])
def stage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stage]:
    dialect = request.param
    found = urls(dialect)
    admin = sa.create_engine(
        sqlalchemy_url(POSTGRES_URL if dialect == "postgresql" else MYSQL_URL),
        poolclass=sa.pool.NullPool,
    )
    kind = "SCHEMA" if dialect == "postgresql" else "DATABASE"
    cascade = " CASCADE" if dialect == "postgresql" else ""

    def reset(create: bool) -> None:
        with admin.begin() as conn:
            for service in ("crm", "orders"):
                conn.exec_driver_sql(f"DROP {kind} IF EXISTS sync_{service}{cascade}")
                if create:
                    conn.exec_driver_sql(f"CREATE {kind} sync_{service}")

    try:
        reset(create=True)
    except sa.exc.OperationalError as exc:
        unavailable(f"{dialect} does not answer: {exc}")
    engines = {
        s: sa.create_engine(sqlalchemy_url(u), poolclass=sa.pool.NullPool) for s, u in found.items()
    }
    crm.Base.metadata.create_all(engines["crm"])
    outbox_table().create(engines["crm"])
    metadata = sa.MetaData()
    for declaration in ORDERS.mirrors:
        mirror_table(declaration, metadata)
    failures_table(metadata)
    metadata.create_all(engines["orders"])
    with moto_server() as moto:
        env = {k: v for k, v in moto.env().items() if k.startswith("AWS_")}
        env |= {"CRM_DATABASE_URL": found["crm"], "ORDERS_DATABASE_URL": found["orders"]}
        env["POWERTOOLS_METRICS_DISABLED"] = "true"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        AwsTopology(moto.client("sns"), moto.client("sqs"), region=REGION, account=ACCOUNT).apply(
            build_topology(load_manifests([ROOT / "examples"]))
        )
        try:
            yield Stage(
                moto, dialect, found, engines["crm"], engines["orders"], env, random.Random(5)
            )
        finally:
            for engine in engines.values():
                engine.dispose()
            reset(create=False)
            admin.dispose()


def test_a_new_consumer_backfilled_while_the_owner_writes_ends_equal(
    stage: Stage, tmp_path: Path
) -> None:
    stage.existing_customers(400)
    stop = threading.Event()
    owner = threading.Thread(target=stage.churn, args=(15, stop))
    owner.start()
    try:
        code, out, err = stage.backfill(
            "--page-size", "40", "--checkpoint", str(tmp_path / "cp.json")
        )
    finally:
        owner.join()
    assert code == 0, err
    assert "backfilled crm.customer v1 to orders: sent " in out
    assert json.loads((tmp_path / "cp.json").read_text())["done"] is True

    stage.consume()

    assert stage.mirror() == stage.owner()
    result = stage.reconcile()
    assert result["drift"] == 0, [(d["kind"], d["fields"]) for d in result["drifts"]][:5]
    # Rows deleted during the backfill stay deleted: their tombstones won over the snapshots.
    with stage.orders.connect() as conn:
        tombstones = conn.execute(
            sa.text("SELECT count(*) FROM customer_mirror WHERE _deleted")
        ).scalar_one()
    assert tombstones > 0


def test_a_backfill_killed_midway_resumes_from_its_checkpoint(stage: Stage, tmp_path: Path) -> None:
    stage.existing_customers(300)
    checkpoint = tmp_path / "cp.json"
    command = [
        *(sys.executable, "-m", "replication.cli", *BACKFILL),
        "--page-size",
        "20",
        "--rate",
        "150",
        "--checkpoint",
        str(checkpoint),
    ]
    env = {**os.environ, **stage.env, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if checkpoint.exists() and json.loads(checkpoint.read_text())["sent"] >= 60:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted = json.loads(checkpoint.read_text())
    assert 60 <= interrupted["sent"] < 300
    assert interrupted["done"] is False

    code, out, err = stage.backfill("--page-size", "50", "--checkpoint", str(checkpoint))
    assert code == 0, err
    assert f"resumed after {interrupted['sent']}" in out
    resumed = json.loads(checkpoint.read_text())
    assert resumed["done"] is True
    assert resumed["sent"] == 300

    stage.consume()
    assert stage.mirror() == stage.owner()
    assert stage.reconcile()["drift"] == 0

    again = stage.backfill("--checkpoint", str(checkpoint))
    assert again[0] == 0
    assert "completed" in again[1]


def test_drift_injected_in_a_mirror_is_found_exactly_and_repaired(
    stage: Stage, tmp_path: Path
) -> None:
    keys = stage.existing_customers(200)
    stage.backfill("--checkpoint", str(tmp_path / "cp.json"))
    stage.consume()
    assert stage.reconcile()["drift"] == 0
    rng = random.Random(11)
    gone = rng.sample(keys, 3)
    rest = [k for k in keys if k not in gone]
    changed, rolled, owner_gone = rest[:2], rest[2:4], rest[4:6]
    extra = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    with stage.orders.begin() as conn:
        for key in gone:
            conn.execute(sa.text("DELETE FROM customer_mirror WHERE id = :k"), {"k": key})
        for key in changed:
            conn.execute(
                sa.text(
                    "UPDATE customer_mirror SET name = 'X', credit_limit = credit_limit + 1 "
                    "WHERE id = :k"
                ),
                {"k": key},
            )
        for key in rolled:
            conn.execute(
                sa.text("UPDATE customer_mirror SET _version = 0 WHERE id = :k"), {"k": key}
            )
        conn.execute(
            sa.text(
                f"INSERT INTO customer_mirror ({COLUMNS}) SELECT :e, "
                f"{COLUMNS.split(', ', 1)[1]} "
                "FROM customer_mirror WHERE id = :k"
            ),
            {"e": extra, "k": rest[10]},
        )
    with stage.crm.begin() as conn:  # deleted at the owner, and the event lost
        for key in owner_gone:
            conn.execute(sa.text("DELETE FROM crm_customers WHERE id = :k"), {"k": key})

    found = stage.reconcile()

    by_kind: dict[str, set[str]] = {}
    for drift in found["drifts"]:
        by_kind.setdefault(drift["kind"], set()).add(drift["key"])
    assert by_kind == {
        "missing": set(gone),
        "differs": set(changed),
        "older": set(rolled),
        "extra": {extra, *owner_gone},
    }
    assert {tuple(d["fields"]) for d in found["drifts"] if d["kind"] == "differs"} == {
        ("name", "credit_limit")
    }

    code, out, err = stage.cli(*RECONCILE, "--repair")
    assert code == 0, err
    assert "repaired: sent 7 snapshot(s) and 3 tombstone(s)" in out
    stage.consume()
    assert stage.reconcile()["drift"] == 0
    assert stage.mirror() == stage.owner()


def test_the_scheduled_reconcile_publishes_drift_as_metrics(
    stage: Stage, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from replication.sync.scheduled import lambda_handler

    stage.create_customers(50)  # their outbox rows never reached orders: 50 missing
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    monkeypatch.setenv("REPLICATION_MANIFESTS", str(ROOT / "examples"))
    monkeypatch.setenv("REPLICATION_RECONCILE", "orders:crm.customer")

    response = lambda_handler({}, None)

    assert response == {
        "results": [
            {
                "consumer": "orders",
                "entity": "crm.customer",
                "drift": 50,
                "missing": 50,
                "extra": 0,
                "older": 0,
                "differs": 0,
                "ahead": 0,
            }
        ]
    }
    [line] = [x for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    emf = json.loads(line)
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Replication"
    assert (emf["service"], emf["entity"]) == ("orders", "crm.customer")
    assert (emf["MirrorMissing"], emf["MirrorDrift"], emf["MirrorRows"]) == ([50.0], [50.0], [0.0])


def test_a_filtered_repair_never_deletes_a_row_its_owner_still_has(
    stage: Stage, tmp_path: Path
) -> None:
    stage.existing_customers(60)
    stage.backfill("--checkpoint", str(tmp_path / "cp.json"))
    stage.consume()
    with stage.crm.begin() as conn:  # the owner moves one out of gold; its event is lost
        [key] = conn.execute(
            sa.text("SELECT id FROM crm_customers WHERE tier = 'gold' ORDER BY id LIMIT 1")
        ).one()
        conn.execute(
            sa.text(
                "UPDATE crm_customers SET tier = 'silver', version = version + 1 WHERE id = :k"
            ),
            {"k": key},
        )

    code, out, err = stage.cli(*RECONCILE, "--where", "tier=gold", "--repair")

    assert code == 0, err
    assert f"extra    {key}" in out  # gold in the mirror only
    assert "repaired: sent 1 snapshot(s) and 0 tombstone(s)" in out
    stage.consume()
    assert stage.mirror()[key] == stage.owner()[key]
    with stage.orders.connect() as conn:
        tier = conn.execute(
            sa.text("SELECT tier FROM customer_mirror WHERE id = :k AND NOT _deleted"), {"k": key}
        ).scalar_one()
    assert tier == "silver"
