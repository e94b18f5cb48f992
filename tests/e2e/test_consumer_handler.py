"""The apply handler on Lambda events in the exact shapes AWS delivers, on real databases."""

from __future__ import annotations

import copy
import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replication.consumer.dead_letters import MESSAGE_ID, REASON, RECEIVE_COUNT, SOURCE_QUEUE
from replication.consumer.handler import lambda_handler
from replication.consumer.wiring import ConsumerSettings
from replication.errors import ConfigurationError
from replication.manifest import Manifest, load_manifest
from tests.consumer_support import (
    Harness,
    create_consumer_tables,
    harness,
    lambda_event,
    rows,
    sqs_record,
)
from tests.databases import Database

SERVER_DIALECTS = ["postgresql", "mysql"]


@pytest.fixture
def orders(database: Database, orders_manifest: Manifest) -> Iterator[Harness]:
    create_consumer_tables(database, orders_manifest)
    h = harness(database, orders_manifest)
    try:
        yield h
    finally:
        h.close()


def customers(db: Database) -> dict[str, tuple[Any, ...]]:
    found = rows(db, "SELECT id, name, _version, _deleted FROM customer_mirror ORDER BY id")
    return {str(r[0]): (r[1], int(r[2]), bool(r[3])) for r in found}


def products(db: Database) -> dict[str, tuple[Any, ...]]:
    found = rows(db, "SELECT sku, title, price, _version FROM product_mirror ORDER BY sku")
    return {r[0]: (r[1], str(r[2]), int(r[3])) for r in found}


def failures(db: Database) -> list[tuple[Any, ...]]:
    return rows(
        db,
        "SELECT message_id, kind, reason, receive_count, dead_lettered, entity "
        "FROM replication_failures ORDER BY message_id",
    )


def test_sns_envelope_records_are_applied(database: Database, orders: Harness) -> None:
    response = orders(lambda_event("sqs_sns_envelope.json"))
    assert response == {"batchItemFailures": []}
    assert customers(database) == {
        "0b7c2a01-5d1e-4c6f-9a7b-3e2f1d0c9b8a": ("Ada King", 2, False),
        "0b7c2a02-5d1e-4c6f-9a7b-3e2f1d0c9b8a": (None, 3, True),
    }
    # One log line per record, with the outcome; never the data (email is pii).
    lines = [json.loads(line) for line in orders.log.getvalue().splitlines()]
    assert sorted(line["outcome"] for line in lines) == [
        "applied",
        "collapsed",
        "collapsed",
        "deleted",
    ]
    assert all(line["entity"] == "crm.customer" and line["event_id"] for line in lines)
    assert "example.com" not in orders.log.getvalue()


def test_raw_delivery_records_are_applied(database: Database, orders: Harness) -> None:
    response = orders(lambda_event("sqs_raw_delivery.json"))
    assert response == {"batchItemFailures": []}
    assert products(database) == {
        "SKU-1": ("Blue mug XL", "24.00", 2),
        "SKU-2": ("Red mug", "9.50", 1),
        "SKU-3": ("Teapot", "35.00", 1),
    }
    # Delivered again (SQS is at least once): every record is stale, nothing changes.
    orders.log.truncate(0)
    orders.log.seek(0)
    assert orders(lambda_event("sqs_raw_delivery.json")) == {"batchItemFailures": []}
    assert products(database)["SKU-1"] == ("Blue mug XL", "24.00", 2)
    outcomes = [json.loads(line)["outcome"] for line in orders.log.getvalue().splitlines()]
    assert sorted(outcomes) == ["collapsed", "stale", "stale", "stale"]


@pytest.fixture
def fifo_manifest(tmp_path: Path) -> Manifest:
    path = tmp_path / "replication.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            service: orders
            database:
              url_env: ORDERS_DATABASE_URL
            mirrors:
              - entity: crm.customer
                version: 1
                table: customer_mirror
                fields: [id, name, tier]
                fifo: true
            """
        )
    )
    return load_manifest(path)


@pytest.mark.parametrize("database", SERVER_DIALECTS, indirect=True)
def test_fifo_records_are_applied_in_group_order(
    database: Database, fifo_manifest: Manifest
) -> None:
    create_consumer_tables(database, fifo_manifest)
    h = harness(database, fifo_manifest)
    try:
        assert h(lambda_event("sqs_fifo.json")) == {"batchItemFailures": []}
    finally:
        h.close()
    assert customers(database) == {
        "0b7c2a03-5d1e-4c6f-9a7b-3e2f1d0c9b8a": ("Alan Mathison Turing", 3, False),
        "0b7c2a04-5d1e-4c6f-9a7b-3e2f1d0c9b8a": ("Edsger Dijkstra", 1, False),
    }


@pytest.mark.parametrize("database", SERVER_DIALECTS, indirect=True)
def test_fifo_group_stops_at_its_first_failure(database: Database, fifo_manifest: Manifest) -> None:
    """A record that fails transiently holds back the rest of its message group only."""
    create_consumer_tables(database, fifo_manifest)
    event = lambda_event("sqs_fifo.json")
    # The first record of Alan's group points at an offloaded payload it cannot fetch now
    # (no S3 access is a permanent problem; an unreadable bucket is transient: see below).
    first = event["Records"][0]
    h = harness(database, fifo_manifest)

    def unreachable() -> Any:
        raise ConnectionError("S3 endpoint does not answer")

    h.function.consumer._s3_client = unreachable
    first["body"] = json.dumps(
        [
            "software.amazon.payloadoffloading.PayloadS3Pointer",
            {"s3BucketName": "payloads", "s3Key": "events/crm/x.json"},
        ]
    )
    try:
        response = h(event)
    finally:
        h.close()
    alan = [
        r["messageId"]
        for r in event["Records"]
        if r["attributes"]["MessageGroupId"] == "0b7c2a03-5d1e-4c6f-9a7b-3e2f1d0c9b8a"
    ]
    assert h.failed_ids(response) == alan
    # Edsger's group went through; none of Alan's did.
    assert customers(database) == {
        "0b7c2a04-5d1e-4c6f-9a7b-3e2f1d0c9b8a": ("Edsger Dijkstra", 1, False),
    }


def _customer_event(n: int, *, name: str | None = None, version: int = 1) -> dict[str, Any]:
    body = json.loads(lambda_event("sqs_sns_envelope.json")["Records"][0]["body"])
    event: dict[str, Any] = json.loads(body["Message"])
    key = f"0b7c2a01-5d1e-4c6f-9a7b-{n:012d}"
    event["id"] = f"00000000-0000-4000-8000-{n:012d}"
    event["subject"] = key
    event["data"]["id"] = key
    event["data"]["name"] = name if name is not None else f"Customer {n}"
    event["entityversion"] = version
    return event


def test_one_poison_record_in_ten_costs_one_receive(database: Database, orders: Harness) -> None:
    records = [sqs_record(json.dumps(_customer_event(n))) for n in range(10)]
    poison = copy.deepcopy(_customer_event(4))
    poison["data"]["tier"] = "diamond"  # not a Tier
    records[4] = sqs_record(json.dumps(poison))
    response = orders({"Records": records})
    # Reported done: SQS deletes it now instead of redelivering it maxReceiveCount times.
    assert response == {"batchItemFailures": []}
    assert len(customers(database)) == 9
    assert f"0b7c2a01-5d1e-4c6f-9a7b-{4:012d}" not in customers(database)
    [letter] = orders.dead_letters.messages
    assert letter["queue"] == "dev-orders--crm-customer-v1-dlq"
    assert letter["body"] == records[4]["body"]
    attributes = letter["attributes"]
    assert "tier" in attributes[REASON]["StringValue"]
    assert attributes[MESSAGE_ID]["StringValue"] == records[4]["messageId"]
    assert attributes[SOURCE_QUEUE]["StringValue"] == "dev-orders--crm-customer-v1"
    assert attributes[RECEIVE_COUNT]["StringValue"] == "1"
    [failure] = failures(database)
    assert failure[0] == records[4]["messageId"]
    assert failure[1] == "permanent"
    assert "violates crm.customer v1" in failure[2]
    assert "tier" in failure[2]
    assert (failure[3], bool(failure[4]), failure[5]) == (1, True, "crm.customer")


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_value_the_database_refuses_is_isolated(database: Database, orders: Harness) -> None:
    """PostgreSQL refuses NUL in text: bisecting finds the record; the other nine apply."""
    records = [sqs_record(json.dumps(_customer_event(n))) for n in range(10)]
    records[7] = sqs_record(json.dumps(_customer_event(7, name="nul\x00here")))
    response = orders({"Records": records})
    assert response == {"batchItemFailures": []}
    assert len(customers(database)) == 9
    [letter] = orders.dead_letters.messages
    assert "NUL" in letter["attributes"][REASON]["StringValue"]
    [failure] = failures(database)
    assert failure[0] == records[7]["messageId"]
    assert failure[1] == "permanent"


def test_a_pending_migration_is_transient_and_names_the_column(
    database: Database, orders: Harness
) -> None:
    cursor = database.connection.cursor()
    cursor.execute("ALTER TABLE customer_mirror DROP COLUMN phone")
    database.connection.commit()
    cursor.close()
    records = [sqs_record(json.dumps(_customer_event(n)), receive_count=2) for n in range(3)]
    response = orders({"Records": records})
    assert orders.failed_ids(response) == [r["messageId"] for r in records]
    assert customers(database) == {}
    assert orders.dead_letters.messages == []
    found = failures(database)
    assert [f[1] for f in found] == ["transient"] * 3
    assert all("phone" in f[2] and "migration" in f[2] for f in found)
    assert {f[3] for f in found} == {2}


def test_spoofed_topic_is_dead_lettered(database: Database, orders: Harness) -> None:
    event = lambda_event("sqs_sns_envelope.json")
    record = event["Records"][0]
    body = json.loads(record["body"])
    body["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:dev-attacker-customer-v1"
    record["body"] = json.dumps(body)
    response = orders({"Records": [record]})
    assert response == {"batchItemFailures": []}
    assert customers(database) == {}
    [letter] = orders.dead_letters.messages
    assert "spoofed" in letter["attributes"][REASON]["StringValue"]


def test_an_owner_in_another_account_is_checked_by_its_full_topic_arn(
    database: Database, orders_manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REPLICATION_OWNER_ACCOUNTS (rendered by the template) names crm's account: the
    envelope of crm's topic there applies; the same topic name in the queue's account,
    crm's own default, is now someone else's and is dead-lettered."""
    monkeypatch.setenv("REPLICATION_OWNER_ACCOUNTS", "crm=111111111111,catalog=222222222222")
    create_consumer_tables(database, orders_manifest)
    h = harness(
        database,
        orders_manifest,
        owner_accounts=ConsumerSettings.from_environment().owner_accounts,
    )
    event = lambda_event("sqs_sns_envelope.json")
    owners, others = copy.deepcopy(event["Records"][:1]), copy.deepcopy(event["Records"][1:2])
    for record, account in ((owners[0], "111111111111"), (others[0], "123456789012")):
        body = json.loads(record["body"])
        assert body["TopicArn"] == "arn:aws:sns:us-east-1:123456789012:dev-crm-customer-v1"
        body["TopicArn"] = body["TopicArn"].replace("123456789012", account)
        record["body"] = json.dumps(body)
    try:
        assert h({"Records": owners + others}) == {"batchItemFailures": []}
    finally:
        h.close()
    [letter] = h.dead_letters.messages
    assert letter["attributes"][MESSAGE_ID]["StringValue"] == others[0]["messageId"]
    assert (
        "published on topic 'arn:aws:sns:us-east-1:123456789012:dev-crm-customer-v1', but "
        "crm.customer v1 is published by crm on "
        "'arn:aws:sns:us-east-1:111111111111:dev-crm-customer-v1'"
    ) in letter["attributes"][REASON]["StringValue"]
    assert len(customers(database)) == 1


@pytest.mark.parametrize("value", ["crm", "crm=1111", "Crm=111111111111", "crm=1111111111112"])
def test_a_malformed_owner_accounts_variable_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("REPLICATION_OWNER_ACCOUNTS", value)
    with pytest.raises(
        ConfigurationError, match=r"REPLICATION_OWNER_ACCOUNTS: .* is not <service>="
    ):
        ConsumerSettings.from_environment()


def test_a_failed_dead_letter_send_leaves_the_record_for_sqs(
    database: Database, orders: Harness
) -> None:
    record = sqs_record("{not json")
    orders.dead_letters.refuse.add(record["messageId"])
    response = orders({"Records": [record]})
    assert orders.failed_ids(response) == [record["messageId"]]


def test_keep_warm_answers_without_the_database(
    database: Database, orders: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert orders({"replication": "keep-warm"}) == {"warm": True}
    assert orders.connections == []
    # The module's entry point answers before building anything: no configuration needed.
    monkeypatch.delenv("REPLICATION_MANIFEST", raising=False)
    assert lambda_handler({"replication": "keep-warm"}, None) == {"warm": True}


def test_metrics_are_embedded_metric_format_per_entity(
    database: Database, orders_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    create_consumer_tables(database, orders_manifest)
    h = harness(database, orders_manifest, metrics=True)
    try:
        capsys.readouterr()
        h(lambda_event("sqs_sns_envelope.json"))
    finally:
        h.close()
    [blob] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert blob["entity"] == "crm.customer"
    counts = (blob["Applied"], blob["Deleted"], blob["Stale"], blob["Failed"], blob["DeadLettered"])
    assert counts == ([1.0], [1.0], [2.0], [0.0], [0.0])
    assert blob["ReplicationLag"][0] > 0
    names = {m["Name"] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"Applied", "Stale", "Deleted", "Failed", "DeadLettered", "ReplicationLag"} <= names


def test_importing_the_handler_imports_no_boto3_nor_sqlalchemy() -> None:
    import subprocess

    code = (
        "import sys, replication.consumer.handler\n"
        "heavy = [m for m in ('boto3', 'sqlalchemy', 'psycopg2', 'pymysql') if m in sys.modules]\n"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


REFRESH_ATTRIBUTE = {"replication.refresh": {"stringValue": "true", "dataType": "String"}}


def _snapshot(name: str, version: int, *, refresh: bool, deleted: bool = False) -> dict[str, Any]:
    event = _customer_event(1, name=name, version=version)
    event["id"] = str(uuid.uuid4())
    if deleted:
        event["type"] = "crm.customer.deleted"
        event["data"] = None
    attributes = REFRESH_ATTRIBUTE if refresh else None
    return sqs_record(json.dumps(event), attributes=attributes)


def test_a_refresh_rewrites_a_row_at_the_same_version_and_nothing_else(
    database: Database, orders: Harness
) -> None:
    key = f"0b7c2a01-5d1e-4c6f-9a7b-{1:012d}"
    assert orders({"Records": [_snapshot("Ada", 2, refresh=False)]}) == {"batchItemFailures": []}

    orders({"Records": [_snapshot("Grace", 2, refresh=False)]})
    assert customers(database)[key][0] == "Ada"  # an ordinary event at the same version: stale
    orders({"Records": [_snapshot("Grace", 2, refresh=True)]})
    assert customers(database)[key][:2] == ("Grace", 2)  # a refresh at the same version
    orders({"Records": [_snapshot("Old", 1, refresh=True)]})
    assert customers(database)[key][:2] == ("Grace", 2)  # never lowers a version

    orders({"Records": [_snapshot("", 3, refresh=False, deleted=True)]})
    orders({"Records": [_snapshot("Back", 3, refresh=True)]})
    assert customers(database)[key] == (None, 3, True)  # a tombstone is never refreshed


def test_an_offloaded_payload_is_read_from_the_owners_prefix_up_to_the_size_cap(
    database: Database, orders_manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The payload a pointer names is read when it is in the bucket, under the owner's
    prefix and within the cap; one over the cap is dead-lettered, not read whole."""
    import boto3
    from moto import mock_aws

    from replication.payloads import make_pointer

    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    create_consumer_tables(database, orders_manifest)
    small, large = _customer_event(1), _customer_event(2)
    large["data"]["tags"] = ["x" * 100] * 40  # about 4.5 KB
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="payloads")
        for name, event in (("small", small), ("large", large)):
            s3.put_object(Bucket="payloads", Key=f"events/crm/{name}.json", Body=json.dumps(event))
        h = harness(database, orders_manifest, payload_max_bytes=4096)
        h.function.consumer._s3_client = lambda: s3
        records = [
            sqs_record(make_pointer("payloads", "events/crm/small.json")),
            sqs_record(make_pointer("payloads", "events/crm/large.json")),
        ]
        try:
            response = h({"Records": records})
        finally:
            h.close()
    assert response == {"batchItemFailures": []}
    assert list(customers(database).values()) == [("Customer 1", 1, False)]
    [letter] = h.dead_letters.messages
    assert (
        "is over the 4096 bytes this consumer reads" in letter["attributes"][REASON]["StringValue"]
    )
