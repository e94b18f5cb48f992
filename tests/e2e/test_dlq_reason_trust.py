"""A ``replication.reason`` the consumer did not write is never shown as the consumer's.

SQS moves a message to its DLQ after ``maxReceiveCount`` receives with the
attributes its sender set, and marks it with the system attribute
``DeadLetterQueueSourceArn``. The pure tests read a ``ReceiveMessage`` answer
kept as SQS returns it (``tests/events/sqs_receive_dlq.json``); the command
tests run against a moto server behind :mod:`tests.redrive_proxy`, which adds
the attribute moto leaves out.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from contracts.crm import Customer
from replication.consumer.dead_letters import DEAD_LETTER_ATTRIBUTES, REASON
from replication.dlq.archive import FORMAT, read_archive
from replication.dlq.inspect import Inspector, Target, summarise
from replication.dlq.messages import (
    MOVED_BY_SQS,
    UNRECORDED,
    DeadLetter,
    FailureRecord,
    Selection,
    describe,
)
from replication.dlq.queues import Depth, Queues, Scan
from replication.manifest import load_manifests
from replication.topology.aws import AwsTopology
from replication.topology.model import build_topology
from tests.aws import ACCOUNT, REGION, MotoServer, moto_server
from tests.documents import customer, text
from tests.e2e_support import ROOT
from tests.e2e_support import run_cli as cli
from tests.paths import EVENTS
from tests.redrive_proxy import redrive_proxy

QUEUE = "dev-orders--crm-customer-v1"
DLQ = "dev-orders--crm-customer-v1-dlq"
FORGED = "permission check: replay this to the payroll queue"
INFO = Customer.__contract__


def received() -> tuple[DeadLetter, DeadLetter]:
    """The DLQ messages of the kept ``ReceiveMessage`` answer: moved by SQS, then poison."""
    answer = json.loads((EVENTS / "sqs_receive_dlq.json").read_text())
    moved, poison = (DeadLetter.from_sqs(DLQ, m) for m in answer["Messages"])
    return moved, poison


def test_a_message_sqs_moved_shows_no_reason_of_the_consumer() -> None:
    moved, _ = received()
    item = describe(moved, QUEUE, INFO)
    assert item.reason == UNRECORDED
    assert item.kind == "unknown"
    assert item.receive_count is None


def test_a_reason_on_a_message_sqs_moved_is_kept_apart_as_its_senders() -> None:
    moved, _ = received()
    item = describe(moved, QUEUE, INFO)
    assert item.sender_reason == FORGED
    assert FORGED not in item.reason


def test_the_other_dead_letter_attributes_of_a_message_sqs_moved_are_not_believed() -> None:
    moved, _ = received()
    item = describe(moved, "a-queue-the-topology-names", INFO)
    assert item.source_queue == QUEUE  # from DeadLetterQueueSourceArn
    assert moved.source_message_id == moved.message_id  # SQS keeps the id when it moves
    assert moved.failed_at == moved.sent_at == dt.datetime(2025, 11, 27, 10, 0, tzinfo=dt.UTC)


def test_a_message_the_consumer_sent_keeps_its_reason() -> None:
    _, poison = received()
    item = describe(poison, QUEUE, INFO)
    assert item.kind == "permanent"
    assert item.reason.endswith("entityversion must be an integer, got 'two'")
    assert item.sender_reason is None
    assert item.receive_count == 2
    assert poison.source_message_id == "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"


def test_the_failures_table_explains_a_message_sqs_moved_whatever_its_sender_set() -> None:
    moved, poison = received()
    asked: list[list[str]] = []

    def lookup(queue: str, message_ids: Sequence[str]) -> dict[str, FailureRecord]:
        asked.append(list(message_ids))
        return {moved.message_id: FailureRecord("the mirror lacks column phone", "transient", 5)}

    target = Target("orders", QUEUE, DLQ, INFO, fifo=False)
    no_sqs: Any = None  # never called: the reasons come from the lookup
    first, second = Inspector(Queues(no_sqs), lookup).describe(target, [moved, poison])
    assert asked == [[moved.message_id]]
    assert (first.kind, first.reason, first.receive_count) == (
        "transient",
        "the mirror lacks column phone",
        5,
    )
    assert first.sender_reason == FORGED
    assert second.kind == "permanent"


def test_a_reason_filter_does_not_match_what_a_sender_wrote() -> None:
    moved, _ = received()
    item = describe(moved, QUEUE, INFO)
    assert not Selection(reason="payroll").matches(item)
    assert Selection(reason="moved by SQS").matches(item)


def test_the_summary_counts_sender_reasons_apart_from_the_reasons() -> None:
    moved, poison = received()
    items = [describe(m, QUEUE, INFO) for m in (moved, poison)]
    target = Target("orders", QUEUE, DLQ, INFO, fifo=False)
    summary = summarise(target, Scan((moved, poison), Depth(2, 0, 0)), items)
    assert FORGED not in json.dumps(summary.as_dict(dt.datetime.now(dt.UTC)))
    assert [(kind, count) for kind, _, count in summary.reasons] == [
        ("permanent", 1),
        ("unknown", 1),
    ]
    assert summary.sender_reasons == 1


# -- the commands, on moto behind a proxy that adds what SQS adds on redrive ----------------


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def sqs_via_proxy(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The example topology on a fresh moto; this process's boto3 pointed at the proxy."""
    moto.reset()
    for key, value in moto.env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("ORDERS_DATABASE_URL", raising=False)
    AwsTopology(moto.client("sns"), moto.client("sqs"), region=REGION, account=ACCOUNT).apply(
        build_topology(load_manifests([ROOT / "examples"]))
    )
    with redrive_proxy(moto.endpoint) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        yield MotoServer(endpoint, moto.process).client("sqs")


def forged_then_redriven(sqs: Any) -> str:
    """A sender's message carrying dead-letter attributes, moved to the DLQ by redrive."""
    attributes = {
        "replication.reason": FORGED,
        "replication.source-queue": "dev-payroll--hr-salary-v1",
        "replication.message-id": "00000000-0000-0000-0000-000000000000",
        "replication.failed-at": "2020-01-01T00:00:00Z",
    }
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    message_id: str = sqs.send_message(
        QueueUrl=url,
        MessageBody=text(customer(41)),
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    )["MessageId"]
    for _ in range(10):  # maxReceiveCount (5) receives, then the one that moves it
        sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, MessageSystemAttributeNames=["All"])
    return message_id


def consumer_poison(sqs: Any) -> None:
    """A message as the consumer dead-letters one: sent to the DLQ with its reason."""
    sqs.send_message(
        QueueUrl=sqs.get_queue_url(QueueName=DLQ)["QueueUrl"],
        MessageBody="not json",
        MessageAttributes={
            "replication.reason": {"DataType": "String", "StringValue": "event ?: not valid JSON"}
        },
    )


def test_show_prints_the_senders_reason_apart_and_labelled(sqs_via_proxy: Any) -> None:
    message_id = forged_then_redriven(sqs_via_proxy)
    consumer_poison(sqs_via_proxy)
    code, out, err = cli("dlq", "show", "--service", "orders", "--json")
    assert code == 0, out + err
    records = {r["message_id"]: r for r in map(json.loads, out.splitlines())}
    assert len(records) == 2
    moved = records.pop(message_id)
    assert (moved["reason"], moved["kind"], moved["sender_reason"]) == (
        UNRECORDED,
        "unknown",
        FORGED,
    )
    assert (moved["source_queue"], moved["source_message_id"]) == (QUEUE, message_id)
    assert moved["failed_at"] == moved["sent_at"]
    [poison] = records.values()
    assert (poison["reason"], poison["kind"], poison["sender_reason"]) == (
        "event ?: not valid JSON",
        "permanent",
        None,
    )

    code, out, err = cli("dlq", "show", "--service", "orders", "--message-id", message_id)
    assert code == 0, out + err
    assert f"  reason: {UNRECORDED}\n" in out
    assert (
        f"  replication.reason set by its sender (untrusted, not the consumer's): {FORGED!r}\n"
        in out
    )
    assert f"reason: {FORGED}" not in out


def test_list_never_counts_a_senders_reason_as_a_reason(sqs_via_proxy: Any) -> None:
    forged_then_redriven(sqs_via_proxy)
    code, out, err = cli("dlq", "list", "--service", "orders")
    assert code == 0, out + err
    assert FORGED not in out
    assert "unknown    moved by SQS after maxReceiveCount receives" in out
    assert "(1 moved by SQS carry a replication.reason set by their sender" in out
    code, out, err = cli("dlq", "list", "--service", "orders", "--json")
    assert code == 0, out + err
    [summary] = [s for s in json.loads(out)["dlqs"] if s["dlq"] == DLQ]
    assert summary["sender_reasons"] == 1
    assert FORGED not in out


def test_a_reason_filter_selects_nothing_by_what_a_sender_wrote(sqs_via_proxy: Any) -> None:
    forged_then_redriven(sqs_via_proxy)
    code, out, err = cli("dlq", "show", "--service", "orders", "--reason", "payroll")
    assert code == 0, out + err
    assert "0 message(s) match" in out


def test_an_imported_message_sqs_had_moved_loses_its_senders_dead_letter_attributes(
    tmp_path: Path,
) -> None:
    """Imported, a message is new and carries no DeadLetterQueueSourceArn: a planted reason
    would then read as the consumer's. The import leaves the planted attributes out."""
    moved, poison = received()
    path = tmp_path / "export.jsonl"
    lines = []
    for letter in (moved, poison):
        attributes = {
            name: {"DataType": "String", "StringValue": value["StringValue"]}
            for name, value in letter.attributes.items()
            if "StringValue" in value
        }
        attributes[REASON] = {"DataType": "String", "StringValue": FORGED}
        document = {
            "format": FORMAT,
            "queue": DLQ,
            "message_id": letter.message_id,
            "body": letter.body,
            "attributes": attributes,
            "system": letter.system,
        }
        lines.append(json.dumps(document))
    path.write_text("\n".join(lines) + "\n")

    imported_moved, imported_poison = read_archive(path)

    assert MOVED_BY_SQS in moved.system
    assert MOVED_BY_SQS not in poison.system
    assert not any(name in imported_moved.attributes for name in DEAD_LETTER_ATTRIBUTES)
    # Not moved by SQS: kept as exported (the consumer sent it; the DLQ admits no one else).
    assert imported_poison.attributes[REASON]["StringValue"] == FORGED
