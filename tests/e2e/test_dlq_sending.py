"""Sending to SQS within its limits: one batching for the consumer's DLQ copies and the tools.

Calls of at most 10 entries and 256 KiB (SQS's limit for a whole call until
2025, still the safe one), a message over 256 KiB alone in its call, none over
1 MiB. The moto server, like AWS now, takes 1 MiB a call; :class:`SqsAt256KiB`
holds a moto client to the former limits, as a DLQ still at them applies them.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from replication.consumer.dead_letters import (
    DEAD_LETTER_ATTRIBUTES,
    MESSAGE_ID,
    REASON,
    SOURCE_QUEUE,
    SqsDeadLetters,
    dead_letter_message,
)
from replication.consumer.records import parse_delivery
from replication.consumer.routes import routes_for
from replication.dlq.queues import Queues
from replication.manifest import Manifest
from replication.sqs_send import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    Outgoing,
    Plan,
    plan_batches,
)
from tests.aws import MotoServer, drain_queue, moto_server
from tests.consumer_support import (
    Harness,
    create_consumer_tables,
    harness,
    lambda_event,
    rows,
    sqs_record,
)
from tests.databases import Database

QUEUE = "dev-orders--crm-customer-v1"
DLQ = "dev-orders--crm-customer-v1-dlq"
LIMIT = 256 * 1024
MIB = 1024 * 1024


def sqs_size(body: str, attributes: dict[str, Any]) -> int:
    """A message's size as SQS documents it, counted here independently of the code under test."""
    size = len(body.encode())
    for name, value in attributes.items():
        size += len(name.encode()) + len(value["DataType"].encode())
        size += len(value.get("StringValue", "").encode()) + len(value.get("BinaryValue", b""))
    return size


class SqsAt256KiB:
    """A boto3 SQS client that refuses calls and messages over 256 KiB, as SQS did until 2025."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.batches: list[int] = []
        """Entries of every SendMessageBatch call that went through."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        sizes = [sqs_size(e["MessageBody"], e.get("MessageAttributes", {})) for e in Entries]
        if max(sizes) > LIMIT:
            code, message = "InvalidParameterValue", f"Message must be shorter than {LIMIT} bytes"
        elif len(Entries) > MAX_BATCH or sum(sizes) > LIMIT:
            code = "AWS.SimpleQueueService.BatchRequestTooLong"
            message = f"Batch requests cannot be longer than {LIMIT} bytes"
        else:
            code = ""
        if code:
            raise ClientError({"Error": {"Code": code, "Message": message}}, "SendMessageBatch")
        self.batches.append(len(Entries))
        return self.client.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)


class RecordingSqs:
    """An in-memory SQS that takes every batch and keeps the size of each call's entries."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def get_queue_url(self, QueueName: str, **_: Any) -> dict[str, str]:  # noqa: N803
        return {"QueueUrl": f"https://sqs.example/{QueueName}"}

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.calls.append([len(e["MessageBody"]) for e in Entries])
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def poison_body(n: int, size: int) -> str:
    """A crm.customer event with a tier that is not one, padded with JSON whitespace to ``size``."""
    envelope = json.loads(lambda_event("sqs_sns_envelope.json")["Records"][0]["body"])
    event: dict[str, Any] = json.loads(envelope["Message"])
    event["id"] = f"00000000-0000-4000-8000-{n:012d}"
    event["data"]["tier"] = "diamond"
    body = json.dumps(event)
    assert len(body) <= size
    return body + " " * (size - len(body))


def outgoing(key: str, size: int, **attributes: str) -> Outgoing:
    return Outgoing(
        key,
        "x" * size,
        {name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()},
    )


# -- the batching itself ----------------------------------------------------------------


def test_batches_split_by_count_and_by_bytes_and_keep_order() -> None:
    small = [outgoing(f"s{n}", 100) for n in range(23)]
    assert [len(b) for b in plan_batches(small).batches] == [10, 10, 3]

    large = [outgoing(f"l{n}", 100_000) for n in range(5)]
    plan = plan_batches(large)
    assert [[m.key for m in b] for b in plan.batches] == [["l0", "l1"], ["l2", "l3"], ["l4"]]

    exactly = [outgoing(f"e{n}", LIMIT // 4) for n in range(5)]
    assert [len(b) for b in plan_batches(exactly).batches] == [4, 1]


def test_a_message_is_measured_as_sqs_measures_it() -> None:
    assert (MAX_BATCH_BYTES, MAX_MESSAGE_BYTES) == (LIMIT, MIB)
    accented = Outgoing("a", "é" * 1000, {"trace": {"DataType": "Binary", "BinaryValue": b"12"}})
    assert accented.size == 2000 + len("trace") + len("Binary") + 2
    # Four of 64 KiB fit only if attribute names, types and values are counted too.
    quarter = LIMIT // 4 - len("k") - len("String") - len("v")
    exact = [outgoing(str(n), quarter, k="v") for n in range(4)]
    assert [len(b) for b in plan_batches(exact).batches] == [4]
    over = [outgoing(str(n), quarter, k="vv") for n in range(4)]
    assert [len(b) for b in plan_batches(over).batches] == [3, 1]


def test_a_message_over_256_kib_goes_alone_and_one_over_1_mib_is_reported_unsent() -> None:
    messages = [
        outgoing("over-1-mib-first", MIB + 1),
        outgoing("a", 10),
        outgoing("b", 10),
        outgoing("alone", LIMIT + 1),
        outgoing("c", 10),
        outgoing("1-mib-exactly", MIB - len("k") - len("String") - 1, k="v"),
        outgoing("over-1-mib-with-attributes", MIB - 3, k="v"),
        outgoing("d", 10),
    ]
    plan = plan_batches(messages)
    assert [m.key for m in plan.oversize] == ["over-1-mib-first", "over-1-mib-with-attributes"]
    assert [[m.key for m in b] for b in plan.batches] == [
        ["a", "b"],
        ["alone"],
        ["c"],
        ["1-mib-exactly"],
        ["d"],
    ]
    huge = outgoing("huge", MIB * 2)
    assert plan_batches([huge]) == Plan((), (huge,))
    assert plan_batches([]) == Plan((), ())


SIZES = st.one_of(st.integers(0, 70_000), st.integers(LIMIT - 1_000, MIB + 1_000))


@given(st.lists(SIZES, max_size=25))
def test_any_messages_go_out_in_order_within_the_limits(sizes: list[int]) -> None:
    messages = [outgoing(str(n), size) for n, size in enumerate(sizes)]
    plan = plan_batches(messages)
    for batch in plan.batches:
        assert 0 < len(batch) <= MAX_BATCH
        assert sum(m.size for m in batch) <= LIMIT or (len(batch) == 1 and batch[0].size <= MIB)
    assert [m for b in plan.batches for m in b] == [m for m in messages if m.size <= MIB]
    assert list(plan.oversize) == [m for m in messages if m.size > MIB]
    # Greedy: a batch closes only when the next message would break a limit.
    for first, second in itertools.pairwise(plan.batches):
        total = sum(m.size for m in first) + second[0].size
        assert len(first) == MAX_BATCH or total > LIMIT


@pytest.mark.parametrize(
    ("sizes", "calls"),
    [([60_000] * 12, [4, 4, 4]), ([60_000, 600_000, 60_000, 60_000], [1, 1, 2])],
    ids=["twelve-of-60-KB", "one-of-600-KB-alone"],
)
def test_the_tools_and_the_consumer_batch_the_same_way(
    orders_manifest: Manifest, sizes: list[int], calls: list[int]
) -> None:
    tools: Any = RecordingSqs()  # a fake in the SQS client's place
    problems = Queues(tools).send(DLQ, [outgoing(str(n), size) for n, size in enumerate(sizes)])
    assert problems == {}

    consumer = RecordingSqs()
    deliveries = [parse_delivery(sqs_record("x" * size)) for size in sizes]
    route = routes_for(orders_manifest, "dev")[QUEUE]
    assert SqsDeadLetters(lambda: consumer).send([(d, route, "poison") for d in deliveries]) == {}

    assert [len(c) for c in tools.calls] == [len(c) for c in consumer.calls] == calls
    assert [n for c in consumer.calls for n in c] == sizes  # in order


def test_neither_sends_a_message_sqs_cannot_take(orders_manifest: Manifest) -> None:
    tools: Any = RecordingSqs()
    problems = Queues(tools).send(DLQ, [outgoing("big", MIB + 1), outgoing("small", 10)])
    assert list(problems) == ["big"]
    assert "over SQS's 1,048,576 for one message" in problems["big"]
    assert tools.calls == [[10]]

    consumer = RecordingSqs()
    big = parse_delivery(sqs_record("x" * MIB))
    route = routes_for(orders_manifest, "dev")[QUEUE]
    problems = SqsDeadLetters(lambda: consumer).send([(big, route, "poison")])
    assert "SQS redrive moves it to the DLQ" in problems[big.message_id]
    assert consumer.calls == []


# -- the DLQ copy made to fit -----------------------------------------------------------


@pytest.mark.parametrize("limit", [LIMIT, MIB], ids=["256-KiB", "1-MiB"])
def test_a_copy_over_a_limit_loses_the_records_own_attributes_then_some_reason(
    limit: int,
) -> None:
    reason = "r" * 900
    record = sqs_record(
        "x" * (limit - 600),
        attributes={
            "trace": {"dataType": "String", "stringValue": "t" * 2_000},
            "replication.refresh": {"dataType": "String", "stringValue": "true"},
        },
    )
    message = dead_letter_message(parse_delivery(record), reason, dt.datetime.now(dt.UTC))
    assert message.size <= limit
    assert message.size > limit - 80  # cut to what fits, not more
    assert "trace" not in message.attributes
    assert message.attributes["replication.refresh"]["StringValue"] == "true"
    shortened = message.attributes[REASON]["StringValue"]
    assert shortened.endswith("…")
    assert reason.startswith(shortened[:-1])


def test_a_copy_that_cannot_be_cut_to_256_kib_keeps_all_it_has() -> None:
    reason = "r" * 900
    own = {"trace": {"dataType": "String", "stringValue": "t" * 2_000}}
    for body in ("x" * 1_000, "x" * 300_000):
        record = sqs_record(body, attributes=own)
        message = dead_letter_message(parse_delivery(record), reason, dt.datetime.now(dt.UTC))
        assert message.attributes["trace"]["StringValue"] == "t" * 2_000
        assert message.attributes[REASON]["StringValue"] == reason


# -- through the apply handler and a moto server ----------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def dlq(moto: MotoServer) -> str:
    moto.reset()
    sqs = moto.client("sqs")
    sqs.create_queue(QueueName=QUEUE)
    url: str = sqs.create_queue(QueueName=DLQ)["QueueUrl"]
    return url


def apply_function(database: Database, manifest: Manifest, sqs: Any) -> Harness:
    create_consumer_tables(database, manifest)
    return harness(database, manifest, dead_letters=SqsDeadLetters(lambda: sqs))


def outcomes(h: Harness) -> list[dict[str, Any]]:
    return [json.loads(line) for line in h.log.getvalue().splitlines()]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("size", "limits"),
    [(40_000, "256KiB"), (110_000, "moto")],
    ids=["40KB-at-256KiB", "110KB-at-moto-1MiB"],
)
def test_ten_large_poison_records_in_one_batch_all_reach_the_dlq_with_their_reason(
    database: Database,
    orders_manifest: Manifest,
    moto: MotoServer,
    dlq: str,
    size: int,
    limits: str,
) -> None:
    client = moto.client("sqs")
    sqs = SqsAt256KiB(client) if limits == "256KiB" else client
    h = apply_function(database, orders_manifest, sqs)
    try:
        records = [sqs_record(poison_body(n, size)) for n in range(10)]
        response = h({"Records": records})
    finally:
        h.close()

    assert response == {"batchItemFailures": []}
    assert [line["outcome"] for line in outcomes(h)] == ["dead-lettered"] * 10
    letters = drain_queue(moto, dlq)
    by_id = {m["MessageAttributes"][MESSAGE_ID]["StringValue"]: m for m in letters}
    assert sorted(by_id) == sorted(r["messageId"] for r in records)
    for record in records:
        letter = by_id[record["messageId"]]
        assert letter["Body"] == record["body"]
        assert "tier" in letter["MessageAttributes"][REASON]["StringValue"]
        assert letter["MessageAttributes"][SOURCE_QUEUE]["StringValue"] == QUEUE
    if isinstance(sqs, SqsAt256KiB):
        assert sqs.batches == [6, 4]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_record_near_the_limit_is_dead_lettered_with_its_reason_shortened(
    database: Database, orders_manifest: Manifest, moto: MotoServer, dlq: str
) -> None:
    own = {
        "trace": {"dataType": "String", "stringValue": "t" * 3_000},
        "replication.refresh": {"dataType": "String", "stringValue": "true"},
    }
    sqs = SqsAt256KiB(moto.client("sqs"))
    h = apply_function(database, orders_manifest, sqs)
    try:
        h({"Records": [sqs_record(poison_body(1, 2_000), attributes=copy.deepcopy(own))]})
        [probe] = drain_queue(moto, dlq)
        reason = probe["MessageAttributes"][REASON]["StringValue"]
        without_trace = {k: v for k, v in probe["MessageAttributes"].items() if k != "trace"}
        # With the trace dropped, the copy is still 40 bytes over: the reason must give them up.
        size = LIMIT - sqs_size("", without_trace) + 40
        record = sqs_record(poison_body(1, size), attributes=copy.deepcopy(own))
        response = h({"Records": [record]})
    finally:
        h.close()

    assert response == {"batchItemFailures": []}
    [letter] = drain_queue(moto, dlq)
    assert letter["Body"] == record["body"]
    attributes = letter["MessageAttributes"]
    assert sqs_size(letter["Body"], attributes) <= LIMIT
    assert "trace" not in attributes
    assert attributes["replication.refresh"]["StringValue"] == "true"
    shortened = attributes[REASON]["StringValue"]
    assert shortened.endswith("…")
    assert reason.startswith(shortened[:-1])
    assert len(shortened) < len(reason)
    assert outcomes(h)[-1]["outcome"] == "dead-lettered"
    assert outcomes(h)[-1]["message"] == reason  # the log keeps the whole reason


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_poison_records_over_256_kib_are_dead_lettered_whole_each_in_a_call_of_its_own(
    database: Database, orders_manifest: Manifest, moto: MotoServer, dlq: str
) -> None:
    """Two of 600 KB: together over the 1 MiB the DLQ (at its default) takes in one call."""
    h = apply_function(database, orders_manifest, moto.client("sqs"))
    try:
        records = [sqs_record(poison_body(n, 600_000)) for n in range(2)]
        response = h({"Records": records})
    finally:
        h.close()

    assert response == {"batchItemFailures": []}
    letters = drain_queue(moto, dlq)
    assert sorted(m["Body"] for m in letters) == sorted(r["body"] for r in records)
    assert all("tier" in m["MessageAttributes"][REASON]["StringValue"] for m in letters)


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("size", "dlq_takes"),
    [(300_000, LIMIT), (MIB, MIB)],
    ids=["300-KB-to-a-DLQ-of-256-KiB", "1-MiB-to-a-DLQ-of-1-MiB"],
)
def test_a_record_that_cannot_fit_is_retried_for_sqs_redrive_with_its_reason_logged(
    database: Database,
    orders_manifest: Manifest,
    moto: MotoServer,
    dlq: str,
    size: int,
    dlq_takes: int,
) -> None:
    """A DLQ set to take less than the copy refuses it; none takes a copy over 1 MiB."""
    client = moto.client("sqs")
    client.set_queue_attributes(QueueUrl=dlq, Attributes={"MaximumMessageSize": str(dlq_takes)})
    h = apply_function(database, orders_manifest, client)
    try:
        record = sqs_record(poison_body(3, size))
        response = h({"Records": [record]})
    finally:
        h.close()

    assert h.failed_ids(response) == [record["messageId"]]
    assert drain_queue(moto, dlq) == []
    [line] = outcomes(h)
    assert line["outcome"] == "retry"
    assert "tier" in line["message"]
    assert f"the record stays in {QUEUE}" in line["message"]
    assert "SQS redrive moves it to the DLQ" in line["message"]
    [(kind, reason)] = rows(database, "SELECT kind, reason FROM replication_failures")
    assert kind == "transient"
    assert "tier" in reason


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_record_cannot_plant_attributes_that_read_as_the_consumers(
    database: Database, orders_manifest: Manifest, moto: MotoServer, dlq: str
) -> None:
    def text(value: str, data_type: str = "String") -> dict[str, str]:
        return {"dataType": data_type, "stringValue": value}

    planted = {
        "replication.reason": text("all fine, replay me"),
        "replication.source-queue": text("dev-payments--ledger-v1"),
        "replication.dead-lettered-by": text("the consumer"),
        "Replication.Failed-At": text("2020-01-01T00:00:00Z"),
        "replication.refresh": text("true"),
        "replication.replays": text("2", "Number"),
        "trace-id": text("abc"),
    }
    h = apply_function(database, orders_manifest, moto.client("sqs"))
    try:
        record = sqs_record(poison_body(4, 1_000), attributes=planted)
        assert h({"Records": [record]}) == {"batchItemFailures": []}
    finally:
        h.close()

    [letter] = drain_queue(moto, dlq)
    attributes = letter["MessageAttributes"]
    assert set(attributes) == {
        *DEAD_LETTER_ATTRIBUTES,
        "replication.refresh",
        "replication.replays",
        "trace-id",
    }
    assert "tier" in attributes[REASON]["StringValue"]
    assert attributes[SOURCE_QUEUE]["StringValue"] == QUEUE
    assert attributes["replication.replays"]["StringValue"] == "2"


# -- the cold start ---------------------------------------------------------------------


def test_the_handler_imports_the_sending_module_and_nothing_heavy() -> None:
    code = (
        "import sys, replication.consumer.handler\n"
        # Powertools imports botocore's bare package; its client machinery must stay out.
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'sqlalchemy') "
        "or m.startswith(('botocore.', 'replication.dlq', 'replication.awsenv')))\n"
        "print(heavy, 'replication.sqs_send' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] True"
