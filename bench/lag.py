"""Owner-commit to mirror latency in the deployed run mode, against raw SNS to SQS.

The deployed run mode: crm's relay is the Lambda handler the template deploys
(``replication.outbox.function.lambda_handler``) in its default ``follow``
mode, invoked as the schedule does, one invocation after the other (each with
a 20 s budget); orders' apply function is the Lambda handler driven by the
project's event source mapping stand-in (:class:`EventSourceRunner`, batch
size 10, no batching window, 1 s long polls), as the template's mapping feeds
it. Both talk HTTP to a moto server and to a real PostgreSQL (a database per
service: ``bench_lag_crm`` and ``bench_lag_orders``).

The owner commits N changes through its ORM (each a transaction writing the
customer row and its outbox row) at a steady pace (20 a second), recording
each commit's time; a watcher reads the mirror every 10 ms and records when
each key's new version first shows. Latency = seen in the mirror - committed.

Baseline, on the same server in the same run: a raw boto3 Publish to the
topic followed by long-polled ReceiveMessage on the same queue, per message
(what any design pays for SNS and SQS here). Ratio = median latency over the
baseline's median.

    python bench/lag.py            # 200 changes
    python bench/lag.py --quick    # 100 changes

The last line is one JSON object.
"""

from __future__ import annotations

import os

os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"

import argparse
import datetime as dt
import json
import logging
import statistics
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.crm import service as crm
from replication.consumer.runner import RunnerSettings
from replication.consumer.wiring import ConsumerSettings, build_runner
from replication.manifest import load_manifests
from replication.migrations import service_metadata
from replication.topology.aws import AwsTopology
from replication.topology.model import build_topology
from tests.aws import CREDENTIALS, REGION, MotoServer, moto_server
from tests.databases import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent


class _Context:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _database(name: str) -> sa.Engine:
    admin = sa.create_engine(
        POSTGRES_URL.replace("postgresql:", "postgresql+psycopg2:", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    return sa.create_engine(url.replace("postgresql:", "postgresql+psycopg2:", 1))


def _row(n: int) -> crm.CustomerRow:
    key = str(uuid.uuid4())
    return crm.CustomerRow(
        id=key,
        name=f"Customer {n}",
        email=f"c{n}@example.com",
        tier="gold",
        credit_limit=Decimal("100.00"),
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        tags=["b2b"],
        street="1 Main St",
        city="Lyon",
        postal_code="69001",
        country="FR",
    )


def baseline(moto: MotoServer, count: int) -> list[float]:
    """Per message: raw Publish, then long-polled receive of it from a subscribed queue."""
    sns, sqs = moto.client("sns"), moto.client("sqs")
    arn = sns.create_topic(Name="bench-lag-raw")["TopicArn"]
    url = sqs.create_queue(QueueName="bench-lag-raw")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    latencies = []
    for n in range(count):
        started = time.monotonic()
        sns.publish(TopicArn=arn, Message=json.dumps({"n": n}))
        while True:
            got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
            if got:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
                break
        latencies.append(time.monotonic() - started)
    return latencies


def run(moto: MotoServer, count: int) -> dict[str, Any]:
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": moto.endpoint}.items():
        os.environ[name] = value
    os.environ["AWS_REGION"] = REGION
    engines = {s: _database(f"bench_lag_{s}") for s in ("crm", "orders")}
    manifests = {m.service: m for m in load_manifests([ROOT / "examples"])}
    AwsTopology.from_environment().apply(build_topology(manifests.values(), prefix="dev"))
    crm.create_schema(engines["crm"])
    service_metadata(manifests["orders"]).create_all(engines["orders"])
    os.environ["REPLICATION_MANIFEST"] = str(ROOT / "examples" / "crm" / "replication.yaml")
    os.environ["CRM_DATABASE_URL"] = engines["crm"].url.render_as_string(False)
    os.environ["ORDERS_DATABASE_URL"] = engines["orders"].url.render_as_string(False)
    os.environ.pop("REPLICATION_RELAY_MODE", None)  # follow, the template's default
    import replication.outbox.function as relay_function

    stop = threading.Event()

    def relay_schedule() -> None:  # the schedule starts a run; each follows ~15 s
        while not stop.is_set():
            relay_function.lambda_handler({"source": "aws.events"}, _Context(20.0))

    runner = build_runner(
        manifests["orders"],
        ConsumerSettings(prefix="dev", log_level="WARNING", metrics=False),
        RunnerSettings(batch_size=10, batching_window=0.0, wait_time=1),
        out=open(os.devnull, "w"),  # noqa: SIM115 (lives as long as the runner)
    )
    threads = [
        threading.Thread(target=relay_schedule, daemon=True),
        threading.Thread(target=lambda: runner.run(stop=stop, install_signals=False), daemon=True),
    ]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # both are up and waiting

    committed: dict[str, float] = {}
    seen: dict[str, float] = {}
    watching = threading.Event()

    def watch() -> None:
        with engines["orders"].connect() as connection:
            while not watching.is_set() or len(seen) < len(committed):
                for (key,) in connection.exec_driver_sql("SELECT id::text FROM customer_mirror"):
                    seen.setdefault(key, time.monotonic())
                connection.rollback()
                time.sleep(0.01)
                if watching.is_set() and time.monotonic() > deadline:
                    return

    deadline = float("inf")
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sessions = crm.sessions(engines["crm"])
    for n in range(count):
        row = _row(n)
        with sessions.begin() as session:
            session.add(row)
        committed[row.id] = time.monotonic()
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    watching.set()
    watcher.join()
    stop.set()
    lags = [seen[k] - committed[k] for k in committed if k in seen]
    for engine in engines.values():
        engine.dispose()
    return {"lags": lags, "missing": len(committed) - len(lags)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 changes instead of 200")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    count = 100 if args.quick else 200
    with moto_server() as moto:
        raw = baseline(moto, 50)
        result = run(moto, count)
    lags = sorted(result["lags"])
    median = statistics.median(lags)
    p95 = lags[int(len(lags) * 0.95) - 1]
    raw_median = statistics.median(raw)
    print(f"changes committed: {count}, seen in the mirror: {len(lags)}")
    print(f"commit to mirror: median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
    print(f"raw SNS publish to SQS receive (baseline): median {raw_median * 1000:.0f} ms")
    print(f"lag_ratio_vs_raw_sns_sqs: {median / raw_median:.2f}")
    summary = {
        "changes": count,
        "missing": result["missing"],
        "median_lag_ms": round(median * 1000, 1),
        "p95_lag_ms": round(p95 * 1000, 1),
        "raw_median_ms": round(raw_median * 1000, 1),
        "lag_ratio_vs_raw_sns_sqs": round(median / raw_median, 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
