"""The DLQ commands against a moto server and real PostgreSQL, on the example topology.

Messages reach the orders DLQ the two ways they do in production: the consumer
dead-letters poison at once (with its reason in the message), and SQS moves a
record that kept failing for a transient reason (a pending migration) after
maxReceiveCount receives (its reason is in the consumer's failures table).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from replication.consumer.records import unwrap_body
from replication.consumer.runner import RunnerSettings
from replication.dlq.queues import Queues
from replication.mirror.tables import mirror_table
from tests.aws import MotoServer, moto_server
from tests.e2e_support import ROOT, World, orders_runner, service_url, world_on
from tests.e2e_support import run_cli as cli
from tests.request_gate import Halt, RequestGate

pytestmark = pytest.mark.postgresql

QUEUE = "dev-orders--crm-customer-v1"
DLQ = "dev-orders--crm-customer-v1-dlq"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:dev-crm-customer-v1"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def world(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with world_on(moto, monkeypatch) as w:
        monkeypatch.setenv("ORDERS_DATABASE_URL", service_url("orders"))
        yield w


def event_id(body: str) -> str:
    """The id of the change event a body carries (raw or in an SNS envelope)."""
    return str(json.loads(unwrap_body(body).message)["id"])


def cli_json(*args: str) -> Any:
    code, out, err = cli(*args, "--json")
    assert code == 0, out + err
    return json.loads(out)


def dry_run(*filters: str) -> dict[str, str]:
    """The dry run's verdict by DLQ message id."""
    report = cli_json("dlq", "replay", "--service", "orders", "--dry-run", *filters)
    return {r["message_id"]: r["verdict"] for r in report["dry_run"]}


def without_phone(world: World) -> None:
    """A pending migration: the mirror lacks a column the consumer writes."""
    with world.engines["orders"].begin() as conn:
        conn.exec_driver_sql("ALTER TABLE customer_mirror DROP COLUMN phone")


def migrate_phone(world: World) -> None:
    """The migration applied: the column is back."""
    declaration = world.manifests["orders"].mirror("crm.customer")
    column = mirror_table(declaration, sa.MetaData()).c.phone
    kind = column.type.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    with world.engines["orders"].begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE customer_mirror ADD COLUMN phone {kind}")


def consume_until_source_empty(world: World, timeout: float = 60) -> None:
    """Run the consumer until the customer queue holds nothing (retries expire after 1 s)."""
    consumer = orders_runner(RunnerSettings(batch_size=10, wait_time=0, visibility_timeout=1))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.drain()
        if world.queue_depths()[QUEUE] == 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"queue not empty: {world.queue_depths()}")


def settle(world: World, timeout: float = 30) -> None:
    """Wait until nothing of the customer queue or its DLQ is in flight.

    What a killed replay had received comes back once its visibility timeout runs out.
    """
    sqs = world.moto.client("sqs")
    urls = [sqs.get_queue_url(QueueName=name)["QueueUrl"] for name in (QUEUE, DLQ)]
    deadline = time.monotonic() + timeout
    while any(
        sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
        != "0"
        for url in urls
    ):
        assert time.monotonic() < deadline, f"still in flight after {timeout} s"
        time.sleep(0.1)


def read_all(world: World, name: str) -> dict[str, dict[str, Any]]:
    """Every message of a queue, without consuming it (after in-flight ones reappear)."""
    scan = Queues(world.moto.client("sqs")).scan(name)
    return {m.message_id: {"body": m.body, "attributes": m.attributes} for m in scan.letters}


POISON = [
    ("not json", "this is not a change event", {}),
    ("no attributes", json.dumps({"specversion": "1.0"}), {}),
    (
        "typed attributes",
        json.dumps({"specversion": "1.0", "id": "x"}),
        {
            "trace": {"DataType": "String.trace", "StringValue": "abc é"},
            "blob": {"DataType": "Binary", "BinaryValue": bytes(range(256))},
            "weight": {"DataType": "Number", "StringValue": "1.50"},
        },
    ),
]


def send_poison(world: World) -> None:
    sqs = world.moto.client("sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    for _, body, attributes in POISON:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)


def test_dead_letters_are_listed_replayed_by_filter_and_mirrors_converge(
    world: World, tmp_path: Path
) -> None:
    without_phone(world)
    world.create_customers(12)
    assert world.relay() == 12
    send_poison(world)
    consume_until_source_empty(world)
    assert world.queue_depths()[DLQ] == 15

    # list: the right reasons, from the messages (poison) and the failures table (transient)
    [summary] = [
        d for d in cli_json("dlq", "list", "--service", "orders")["dlqs"] if d["dlq"] == DLQ
    ]
    assert summary["depth"] == 15
    by_kind: dict[str, int] = {}
    for reason in summary["reasons"]:
        by_kind[reason["kind"]] = by_kind.get(reason["kind"], 0) + reason["count"]
    assert by_kind == {"transient": 12, "permanent": 3}
    [transient] = [r for r in summary["reasons"] if r["kind"] == "transient"]
    assert "phone" in transient["reason"]
    assert "migration" in transient["reason"]
    code, text, _ = cli("dlq", "list", "--service", "orders")
    assert code == 0
    assert DLQ in text
    assert "15 message(s)" in text

    # show: pii masked unless asked, filters
    everything = cli("dlq", "show", "--service", "orders", "--json")[1]
    poison_reasons = [
        r["reason"] for r in map(json.loads, everything.splitlines()) if r["kind"] == "permanent"
    ]
    assert len(poison_reasons) == 3
    assert any("not valid JSON" in r for r in poison_reasons), poison_reasons
    shown = cli("dlq", "show", "--service", "orders", "--reason", "phone", "--json")[1]
    records = [json.loads(line) for line in shown.splitlines()]
    assert len(records) == 12
    assert {r["event"]["data"]["email"] for r in records} == {"***"}
    assert all(r["kind"] == "transient" and r["receive_count"] == 5 for r in records)
    key = records[0]["key"]
    one = cli("dlq", "show", "--service", "orders", "--key", key, "--show-pii", "--json")[1]
    [record] = [json.loads(line) for line in one.splitlines()]
    assert record["event"]["data"]["email"].endswith("@example.com")
    assert record["event"]["data"]["email"] == f"{key[:8]}@example.com"

    # export, then import into another queue: bodies and attributes exactly
    exported = tmp_path / "dlq.jsonl"
    code, text, err = cli("dlq", "export", "--service", "orders", "--out", str(exported))
    assert code == 0, text + err
    assert len(exported.read_text().splitlines()) == 15
    originals = read_all(world, DLQ)
    assert len(originals) == 15
    world.moto.client("sqs").create_queue(QueueName="scratch")
    code, text, err = cli("dlq", "import", str(exported), "--queue", "scratch")
    assert code == 0, text + err
    copies = read_all(world, "scratch")
    assert sorted((c["body"], repr(sorted(c["attributes"].items()))) for c in copies.values()) == (
        sorted((o["body"], repr(sorted(o["attributes"].items()))) for o in originals.values())
    )
    typed = [c for c in copies.values() if "blob" in c["attributes"]]
    assert typed[0]["attributes"]["blob"] == {
        "DataType": "Binary",
        "BinaryValue": bytes(range(256)),
    }

    # dry run before the fix: the twelve would fail again, the poison is still poison
    before = dry_run()
    assert sorted(before.values()) == ["invalid"] * 3 + ["retry"] * 12

    # "would fail and be retried" is what happens: replayed now, it fails again on the
    # missing column until SQS moves it back after maxReceiveCount receives
    retried = next(m for m, v in before.items() if v == "retry")
    assert cli("dlq", "replay", "--service", "orders", "--message-id", retried)[0] == 0
    assert world.queue_depths()[DLQ] == 14
    consume_until_source_empty(world)
    # Under load the DLQ was once seen one short just after the source read empty
    # (moto takes a message out of its queue, then adds it to the DLQ): wait for it.
    deadline = time.monotonic() + 10
    while world.queue_depths()[DLQ] < 15 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert world.queue_depths()[DLQ] == 15
    came_back = [
        r
        for r in map(
            json.loads, cli("dlq", "show", "--service", "orders", "--json")[1].splitlines()
        )
        if r["key"] == json.loads(unwrap_body(originals[retried]["body"]).message)["subject"]
    ]
    assert [(r["kind"], r["receive_count"]) for r in came_back] == [("transient", 5)]
    assert "phone" in came_back[0]["reason"]
    assert came_back[0]["message_id"] != retried

    migrate_phone(world)
    after = dry_run()
    assert sorted(after.values()) == ["apply"] * 12 + ["invalid"] * 3
    assert world.queue_depths()[DLQ] == 15, "a dry run moved something"
    current = read_all(world, DLQ)

    # a filtered replay moves exactly the matching ones
    code, text, err = cli("dlq", "replay", "--service", "orders", "--reason", "phone")
    assert code == 0, text + err
    assert "moved 12" in text
    left = read_all(world, DLQ)
    assert set(left) == {m for m, v in after.items() if v == "invalid"}
    consume_until_source_empty(world)
    assert world.differences() == []
    # each "would apply" applied: its event is the one the mirror row holds
    applied_events = {event_id(current[m]["body"]) for m, v in after.items() if v == "apply"}
    mirror_events = {
        str(r[0]) for r in world.rows("orders", "SELECT _event_id FROM customer_mirror")
    }
    assert applied_events == mirror_events

    # stale: events the mirror already holds, imported back into the DLQ
    stale_lines = [
        line for line in exported.read_text().splitlines() if "phone" in json.loads(line)["reason"]
    ][:4]
    again = tmp_path / "again.jsonl"
    again.write_text("\n".join(stale_lines) + "\n")
    assert cli("dlq", "import", str(again))[0] == 0
    predicted = dry_run()
    assert sorted(predicted.values()) == ["invalid"] * 3 + ["stale"] * 4
    rows_before = world.rows("orders", "SELECT id, _version, _event_id FROM customer_mirror")

    # an unfiltered replay: no move task on the emulator, so moved here; then what the dry
    # run said happens: stale ones change nothing and leave, invalid ones come back
    code, text, err = cli("dlq", "replay", "--service", "orders")
    assert code == 0, text + err
    assert "moved 7" in text
    assert "no message move task" in err
    consume_until_source_empty(world)
    assert sorted(world.rows("orders", "SELECT id, _version, _event_id FROM customer_mirror")) == (
        sorted(rows_before)
    )
    shown = cli("dlq", "show", "--service", "orders", "--json")[1]
    back = [json.loads(line) for line in shown.splitlines()]
    assert [(r["kind"], r["replays"]) for r in back] == [("permanent", 1)] * 3
    # dead-lettered again for the same reasons as the first time
    assert sorted(r["reason"] for r in back) == sorted(poison_reasons)
    assert world.differences() == []
    returned = read_all(world, DLQ)
    assert len(returned) == 3
    assert sorted(m["body"] for m in returned.values()) == sorted(b for _, b, _ in POISON)
    assert all(
        m["attributes"]["replication.replays"]["StringValue"] == "1" for m in returned.values()
    )


def test_an_interrupted_replay_never_loses_a_message(world: World, tmp_path: Path) -> None:
    """Replays SIGKILLed between any two steps of a move: every message stays somewhere."""
    world.create_customers(30)
    world.relay()
    sqs = world.moto.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=DLQ)["QueueUrl"]
    # This test reads the source queue after each kill; each read is a receive, and five
    # would make SQS move the messages back to the DLQ mid-check.
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1000})
        },
    )
    # Move the relayed events into the DLQ as they are (as SQS would after failures).
    moved = 0
    while moved < 30:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        for message in batch:
            sqs.send_message(QueueUrl=dlq_url, MessageBody=message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    events = {event_id(m["body"]) for m in read_all(world, DLQ).values()}
    assert len(events) == 30

    env = {
        **world.moto.env(),
        "PYTHONPATH": str(ROOT),
        "ORDERS_DATABASE_URL": service_url("orders"),
    }
    command = [
        sys.executable,
        "-m",
        "replication.cli",
        "dlq",
        "replay",
        "--service",
        "orders",
        "--rate",
        "5",
        "--visibility-timeout",
        "1",
        "--no-move-task",
    ]
    # At this rate the replay moves five messages at a time: it receives them, sends them to
    # the source queue, deletes them from the DLQ, receives the next five. Each replay is
    # killed once it has started sending: at that first send, the delete after it or the next
    # receive, before or after SQS does it; all six, in a random (seeded) order.
    halts = [
        Halt("SendMessageBatch", offset, done) for offset in range(3) for done in (False, True)
    ]
    random.Random(7).shuffle(halts)
    gate = RequestGate(world.moto.endpoint)
    mid_move = straddled = 0
    try:
        for halt in halts:
            gate.arm(halt)
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**env, "AWS_ENDPOINT_URL": gate.endpoint},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                held = gate.wait_halted(process)
            finally:
                process.kill()
                _, err = process.communicate(timeout=60)
                gate.release()
            assert held is not None, f"the replay ended before {halt}: {err}"
            assert process.returncode == -signal.SIGKILL, err
            settle(world)
            in_dlq = {event_id(m["body"]) for m in read_all(world, DLQ).values()}
            in_queue = {event_id(m["body"]) for m in read_all(world, QUEUE).values()}
            assert events <= in_dlq | in_queue, f"lost at {halt}: {events - in_dlq - in_queue}"
            if in_dlq and in_queue:
                mid_move += 1
            if in_dlq & in_queue:
                straddled += 1
    finally:
        gate.close()
    assert mid_move > 0, "no kill landed in the middle of a replay"
    assert straddled > 0, "no kill landed between a send and its delete"
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert world.queue_depths()[DLQ] == 0
    consume_until_source_empty(world)
    assert world.differences() == []
    assert world.rows("orders", "SELECT count(*) FROM customer_mirror") == [(30,)]
