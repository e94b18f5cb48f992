"""End to end through a moto server and real PostgreSQL, with faults injected for real.

Owners write (crm through the ORM integration, catalog explicitly), relays
publish to SNS, SNS delivers to the orders queues, and the event source runner
drives the apply handler. Afterwards the mirrors must equal the owners: nothing
lost, no deleted row back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from replication.consumer.runner import EventSourceRunner, RunnerSettings
from tests.aws import MotoServer, moto_server
from tests.databases import POSTGRES_URL
from tests.e2e_support import (
    ROOT,
    World,
    orders_runner,
    service_url,
    wait_until_empty,
    world_on,
)

pytestmark = pytest.mark.postgresql
# The connections this file kills are its own consumer's, not those of whatever else runs.
CONSUMER_NAME = f"e2e-consumer-{os.getpid()}"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def world(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with world_on(moto, monkeypatch) as w:
        yield w


def runner(settings: RunnerSettings | None = None) -> EventSourceRunner:
    return orders_runner(settings, application_name=CONSUMER_NAME)


def owner_activity(world: World, rounds: int) -> int:
    """Creates, updates and deletes in both owners, relayed after each round."""
    published = 0
    for _ in range(rounds):
        world.create_customers(8)
        world.change_customers(6)
        world.delete_customers(2)
        world.save_products(6)
        world.delete_products(1)
        published += world.relay()
    return published


def test_owners_relay_and_consumer_keep_mirrors_equal(world: World) -> None:
    published = owner_activity(world, 3)
    consumer = runner()
    wait_until_empty(world, consumer)
    assert consumer.stats.received == published
    assert world.differences() == []
    tombstones = world.rows("orders", "SELECT count(*) FROM customer_mirror WHERE _deleted")
    assert tombstones == [(6,)]


def test_killing_the_database_connection_mid_batch_loses_nothing(world: World) -> None:
    """pg_terminate_backend on the consumer's connection, over and over, while it applies."""
    consumer = runner()
    stop = threading.Event()
    killed = [0]

    def killer() -> None:
        admin = psycopg2.connect(POSTGRES_URL)
        admin.autocommit = True
        while not stop.is_set():
            with admin.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (CONSUMER_NAME,),
                )
                killed[0] += sum(1 for (done,) in cursor.fetchall() if done)
            time.sleep(0.02)
        admin.close()

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        for _ in range(4):
            owner_activity(world, 1)
            consumer.drain()
    finally:
        stop.set()
        thread.join()
    wait_until_empty(world, consumer)
    assert killed[0] > 0, "the fault was never injected"
    assert world.differences() == []
    gone = world.rows("orders", "SELECT count(*) FROM customer_mirror WHERE _deleted")
    assert gone == [(8,)]


def test_a_consumer_killed_between_commit_and_delete_loses_nothing(world: World) -> None:
    """A real SIGKILL after the batch committed and before SQS heard about it."""
    owner_activity(world, 2)
    env = {**world.moto.env(), "PYTHONPATH": str(ROOT), "POWERTOOLS_METRICS_DISABLED": "true"}
    crashes = 0
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-m", "tests.crashing_consumer", service_url("orders")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == -9, done.stdout + done.stderr
        assert "committed" in done.stdout
        crashes += 1
    # The batches committed by the dead processes are still in their queues...
    assert sum(world.queue_depths().values()) > 0
    consumer = runner()
    wait_until_empty(world, consumer)
    # ...and delivered again; the version guard made the second apply a no-op.
    assert crashes == 3
    assert world.differences() == []


def test_expiring_visibility_timeouts_redeliver_and_converge(world: World) -> None:
    """A handler slower than the visibility timeout: another runner gets the same messages."""
    owner_activity(world, 2)
    settings = RunnerSettings(batch_size=10, wait_time=1, visibility_timeout=1)
    slow_runner, other = runner(settings), runner(settings)
    seen: dict[str, set[str]] = {"slow": set(), "other": set()}

    def watched(name: str, handler: Any, pause: float) -> Any:
        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            seen[name] |= {r["messageId"] for r in event["Records"]}
            response: dict[str, Any] = handler(event, context)
            time.sleep(pause)  # the visibility timeout expires before the runner deletes
            return response

        return handle

    slow_runner.handler = watched("slow", slow_runner.handler, 2.5)
    other.handler = watched("other", other.handler, 0)
    [queue] = [q for q in slow_runner.queues if q.name == "dev-orders--crm-customer-v1"]
    thread = threading.Thread(target=slow_runner.poll, args=(queue,))
    thread.start()
    time.sleep(1.2)
    deadline = time.monotonic() + 10
    while not seen["slow"] & seen["other"] and time.monotonic() < deadline:
        other.poll(queue, wait=1)
    thread.join()
    assert seen["slow"] & seen["other"], "no message was delivered twice: the fault did not happen"
    wait_until_empty(world, runner())
    assert world.differences() == []


def test_one_poison_record_in_ten_reaches_the_dlq_after_one_receive(world: World) -> None:
    """Through real SQS: nine applied in the invocation, the poison dead-lettered at once."""
    import json

    from replication.consumer.dead_letters import REASON, RECEIVE_COUNT

    world.create_customers(9)
    assert world.relay() == 9
    sqs = world.moto.client("sqs")
    queue = sqs.get_queue_url(QueueName="dev-orders--crm-customer-v1")["QueueUrl"]
    poison = json.loads(world.rows("crm", "SELECT payload FROM replication_outbox LIMIT 1")[0][0])
    poison["data"]["credit_limit"] = "-1.00"
    poison["id"] = "00000000-0000-4000-8000-000000000099"
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(poison))
    consumer = runner(RunnerSettings(batch_size=10, wait_time=1, visibility_timeout=30))
    received = consumer.poll(
        consumer.queues[[q.name for q in consumer.queues].index("dev-orders--crm-customer-v1")]
    )
    assert received == 10
    assert consumer.stats.batches == 1
    assert consumer.stats.deleted == 10
    assert world.differences() == []
    dlq = sqs.get_queue_url(QueueName="dev-orders--crm-customer-v1-dlq")["QueueUrl"]
    [letter] = sqs.receive_message(
        QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    assert json.loads(letter["Body"])["id"] == poison["id"]
    assert "credit_limit" in letter["MessageAttributes"][REASON]["StringValue"]
    assert letter["MessageAttributes"][RECEIVE_COUNT]["StringValue"] == "1"
    assert world.rows("orders", "SELECT kind, receive_count FROM replication_failures") == [
        ("permanent", 1)
    ]
