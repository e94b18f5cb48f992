"""A catalogue of bad inputs delivered to the apply handler, on every dialect.

Each case sends one bad (or odd but legitimate) record between two valid ones on
the same queue, through :class:`~replication.consumer.handler.ApplyFunction` on a
real database, and checks:

- the response: every record is reported done (none in ``batchItemFailures``);
- poison sits exactly once in the DLQ, body unchanged, with a
  ``replication.reason`` naming the problem, and once in ``replication_failures``;
- a legitimate but odd value is applied and stored exactly, character for character;
- nothing wrong is written: the mirrors hold exactly what the valid events wrote,
  and every table survives;
- nothing is lost: every record has one outcome, applied or dead-lettered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from replication.consumer.dead_letters import MESSAGE_ID, REASON, SOURCE_QUEUE
from replication.manifest import Manifest
from replication.payloads import POINTER_CLASS, make_pointer
from tests.consumer_support import Harness, create_consumer_tables, harness, rows, sqs_record
from tests.databases import Database
from tests.documents import (
    BAD,
    CUSTOMER_QUEUE,
    CUSTOMER_TOPIC,
    DROP,
    HUGE,
    PRODUCT_QUEUE,
    PRODUCT_TOPIC,
    changed,
    customer,
    customer_key,
    deletion,
    event_id,
    product,
    text,
)


def with_raw(doc: dict[str, Any], attribute: str, raw: str) -> str:
    """``doc`` as JSON with ``attribute``'s value written as the literal ``raw``."""
    marker = "@@raw@@"
    return text(changed(doc, **{attribute: marker})).replace(json.dumps(marker), raw)


def sns(message: Any, **changes: Any) -> str:
    """An SNS notification envelope carrying ``message``, with fields replaced (``DROP``)."""
    envelope: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": "5f1c1c4e-0000-4000-8000-000000000001",
        "TopicArn": CUSTOMER_TOPIC,
        "Message": message,
        "Timestamp": "2026-11-27T10:00:00.200Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }
    for name, value in changes.items():
        if value is DROP:
            del envelope[name]
        else:
            envelope[name] = value
    return text(envelope)


# -- the catalogue ---------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Case:
    """One record body and what must become of it."""

    body: str
    reason: str | None = None
    """A substring of the dead-letter reason; None: the record is legitimate and applies."""
    queue: str = CUSTOMER_QUEUE
    stored: dict[str, Any] | None = None
    """For a legitimate record: the event whose state the mirror must then hold."""

    def __repr__(self) -> str:
        # Bodies run to 900 KB: show their start only.
        return f"Case(body={self.body[:60]!r}..., reason={self.reason!r}, queue={self.queue!r})"


def poison(body: str, reason: str, queue: str = CUSTOMER_QUEUE) -> Case:
    return Case(body, reason, queue)


def applies(doc: dict[str, Any], body: str | None = None, queue: str = CUSTOMER_QUEUE) -> Case:
    return Case(text(doc) if body is None else body, None, queue, doc)


_envelope = sns(text(customer()))
_duplicate_topic = _envelope.replace(
    '"TopicArn": ', '"TopicArn": "arn:aws:sns:us-east-1:999999999999:dev-attacker", "TopicArn": ', 1
)
_sql = "Robert'); DROP TABLE customer_mirror;--"
_quoting = "\\'; SELECT 1; -- %s %(name)s ? :1 $1 `x` \" \\\\ \\n"
_odd_text = "Ada \U0001f680 \U0001d504 \u6f22\u5b57 \ufeff \u200b\u202e"
_controls = "tab\there\r\nline\x01\x1b[31m\x7f"

CASES: dict[str, Case] = {
    # Not JSON, or not an object.
    "malformed-json": poison("{not json", "not valid JSON"),
    "empty-body": poison("", "not valid JSON"),
    "whitespace-only-body": poison(" \n\t ", "not valid JSON"),
    "utf8-bom-before-json": poison("\ufeff" + text(customer()), "UTF-8 BOM"),
    "nested-too-deeply": poison("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    # 2.5 KB that start like an S3 pointer and nest 1,200 deep: once a RecursionError
    # out of the handler, failing every record of the batch.
    "deep-array-shaped-like-a-pointer": poison(
        f'["{POINTER_CLASS}", ' + "[" * 1200 + "]" * 1200 + "]", "nested too deeply"
    ),
    "deep-pointer-shape-in-sns-envelope": poison(
        sns(f'["{POINTER_CLASS}", ' + "[" * 1200 + "]" * 1200 + "]"), "nested too deeply"
    ),
    "json-array": poison(text([customer()]), "must be a JSON object, got array"),
    "json-number": poison("42", "must be a JSON object, got number"),
    "json-string": poison(text(text(customer())), "must be a JSON object, got string"),
    "json-null": poison("null", "must be a JSON object, got null"),
    # Broken SNS envelopes.
    "sns-envelope-truncated": poison(_envelope[: len(_envelope) // 2], "not valid JSON"),
    "sns-envelope-without-message": poison(
        sns(text(customer()), Message=DROP), "SNS envelope without Message"
    ),
    "sns-envelope-without-topic-arn": poison(
        sns(text(customer()), TopicArn=DROP), "SNS envelope without TopicArn"
    ),
    "sns-message-is-an-object": poison(
        sns(customer()), "SNS envelope whose Message or TopicArn is not a string"
    ),
    "sns-message-is-null": poison(
        sns(None), "SNS envelope whose Message or TopicArn is not a string"
    ),
    "sns-topic-arn-is-a-number": poison(
        sns(text(customer()), TopicArn=42), "SNS envelope whose Message or TopicArn is not a string"
    ),
    "sns-message-is-not-json": poison(sns("hello"), "not valid JSON"),
    "sns-subscription-confirmation": poison(
        sns("You have chosen to subscribe", Type="SubscriptionConfirmation"),
        "SubscriptionConfirmation",
    ),
    "sns-envelope-duplicate-topic-arn": poison(_duplicate_topic, "duplicate key 'TopicArn'"),
    "sns-spoofed-topic-arn": poison(
        sns(
            text(customer()),
            TopicArn="arn:aws:sns:us-east-1:999999999999:dev-attacker-customer-v1",
        ),
        "spoofed or misrouted: published on topic "
        "'arn:aws:sns:us-east-1:999999999999:dev-attacker-customer-v1'",
    ),
    # The owner's topic name, in an account and a region that are not the owner's.
    "sns-owners-topic-name-in-another-account": poison(
        sns(
            text(customer()),
            TopicArn="arn:aws:sns:ap-south-1:666666666666:dev-crm-customer-v1",
        ),
        "spoofed or misrouted: published on topic "
        "'arn:aws:sns:ap-south-1:666666666666:dev-crm-customer-v1', but crm.customer v1 is "
        f"published by crm on '{CUSTOMER_TOPIC}'",
    ),
    "sns-owners-topic-name-in-another-account-same-region": poison(
        sns(text(customer()), TopicArn=CUSTOMER_TOPIC.replace(":123456789012:", ":666666666666:")),
        "published on topic 'arn:aws:sns:us-east-1:666666666666:dev-crm-customer-v1'",
    ),
    "sns-owners-topic-in-another-region": poison(
        sns(text(customer()), TopicArn=CUSTOMER_TOPIC.replace(":us-east-1:", ":eu-west-1:")),
        "published on topic 'arn:aws:sns:eu-west-1:123456789012:dev-crm-customer-v1'",
    ),
    "sns-topic-of-another-environment": poison(
        sns(text(customer()), TopicArn=CUSTOMER_TOPIC.replace(":dev-", ":prod-")),
        "published on topic 'arn:aws:sns:us-east-1:123456789012:prod-crm-customer-v1'",
    ),
    "misrouted-product-event-via-sns": poison(
        sns(text(product()), TopicArn=PRODUCT_TOPIC),
        "published on topic 'arn:aws:sns:us-east-1:123456789012:dev-catalog-product-v1'",
    ),
    "misrouted-product-event-raw": poison(
        text(product()),
        "a catalog.product v1 event arrived on the queue of crm.customer v1",
    ),
    # CloudEvents attributes.
    "missing-time-and-dataschema": poison(
        text(changed(customer(), time=DROP, dataschema=DROP)),
        "missing attribute(s): time, dataschema",
    ),
    "missing-data": poison(text(changed(customer(), data=DROP)), "missing attribute(s): data"),
    "unknown-extra-attribute": poison(
        text(changed(customer(), colour="blue")), "unknown attribute(s): colour"
    ),
    "wrong-specversion": poison(
        text(changed(customer(), specversion="0.3")), "specversion must be '1.0', got '0.3'"
    ),
    "specversion-as-number": poison(
        text(changed(customer(), specversion=1.0)), "specversion must be '1.0', got 1.0"
    ),
    "id-upper-case-uuid": poison(
        text(changed(customer(), id=event_id(BAD).upper().replace("0", "A"))),
        "id must be a UUID in canonical form",
    ),
    "id-not-a-uuid": poison(
        text(changed(customer(), id="order-500")), "id must be a UUID in canonical form"
    ),
    "id-empty": poison(text(changed(customer(), id="")), "attribute id must be a non-empty string"),
    # The id is the sender's text: a lone surrogate cannot be encoded in a DLQ attribute,
    # and a huge one must not become the reason's prefix or an event id in the logs.
    "id-lone-surrogate": poison(
        with_raw(customer(), "id", '"\\ud800"'), "id must be a UUID in canonical form"
    ),
    "id-huge": poison(
        text(changed(customer(), id="f" * 100_000)), "id must be a UUID in canonical form"
    ),
    "subject-a-number": poison(
        text(changed(customer(), subject=500)), "attribute subject must be a non-empty string"
    ),
    "wrong-datacontenttype": poison(
        text(changed(customer(), datacontenttype="application/xml")),
        "datacontenttype must be 'application/json'",
    ),
    "entityversion-string": poison(
        text(changed(customer(), entityversion="3")), "entityversion must be an integer, got '3'"
    ),
    "entityversion-float": poison(
        text(changed(customer(), entityversion=2.5)), "entityversion must be an integer, got 2.5"
    ),
    "entityversion-integral-float": poison(
        with_raw(customer(), "entityversion", "3.0"), "entityversion must be an integer, got 3.0"
    ),
    "entityversion-bool": poison(
        text(changed(customer(), entityversion=True)), "entityversion must be an integer"
    ),
    "entityversion-null": poison(
        text(changed(customer(), entityversion=None)), "entityversion must be an integer"
    ),
    "entityversion-zero": poison(
        text(changed(customer(), entityversion=0)), "entityversion must be positive, got 0"
    ),
    "entityversion-negative": poison(
        text(changed(customer(), entityversion=-5)), "entityversion must be positive, got -5"
    ),
    "entityversion-over-int64": poison(
        text(changed(customer(), entityversion=2**63)),
        f"entityversion must be at most {2**63 - 1}, got {2**63}",
    ),
    "entityversion-overflows-to-infinity": poison(
        with_raw(customer(), "entityversion", "1e400"), "1e400 overflows to Infinity"
    ),
    "entityversion-5000-digits": poison(
        with_raw(customer(), "entityversion", "9" * 5000), "Exceeds the limit (4300 digits)"
    ),
    "unknown-contract-version-v9": poison(
        text(changed(customer(), dataschema="contract:crm.customer/v9")),
        "unknown contract crm.customer v9",
    ),
    "unknown-entity": poison(
        text(
            changed(customer(), dataschema="contract:crm.unicorn/v1", type="crm.unicorn.upserted")
        ),
        "unknown contract crm.unicorn v1",
    ),
    "dataschema-malformed": poison(
        text(changed(customer(), dataschema="https://example.org/customer.json")),
        "dataschema must look like 'contract:<owner>.<entity>/v<major>'",
    ),
    "dataschema-leading-zero-major": poison(
        text(changed(customer(), dataschema="contract:crm.customer/v01")),
        "dataschema must look like 'contract:<owner>.<entity>/v<major>'",
    ),
    "type-not-matching-dataschema": poison(
        text(changed(customer(), type="catalog.product.upserted")),
        "type must be 'crm.customer.upserted' or 'crm.customer.deleted'",
    ),
    "source-not-the-owner": poison(
        text(changed(customer(), source="billing")),
        "source 'billing' is not the owner of crm.customer (owner: 'crm')",
    ),
    "subject-not-matching-key": poison(
        text(changed(customer(), subject=customer_key(BAD + 1))),
        "does not match the key in data",
    ),
    "subject-upper-case-on-delete": poison(
        text(changed(deletion(customer()), subject=customer_key(BAD).upper())),
        "not in canonical form",
    ),
    "duplicate-top-level-key": poison(
        text(customer())[:-1] + ', "entityversion": 7}', "duplicate key 'entityversion'"
    ),
    "duplicate-data-key": poison(
        text(customer()).replace('"name": ', '"name": "Mallory", "name": ', 1),
        "duplicate key 'name'",
    ),
    "time-invalid-rfc3339": poison(
        text(changed(customer(), time="2026-13-45T99:00:00Z")),
        "time must be an RFC 3339 timestamp",
    ),
    "time-not-rfc3339-at-all": poison(
        text(changed(customer(), time="27/11/2026 10:00")), "time must be an RFC 3339 timestamp"
    ),
    "time-naive": poison(
        text(changed(customer(), time="2026-11-27T10:00:00")), "has no UTC offset"
    ),
    "time-out-of-range-in-utc": poison(
        text(changed(customer(), time="0001-01-01T00:00:00+01:00")),
        "out of range once converted to UTC",
    ),
    "deleted-event-carrying-data": poison(
        text(changed(deletion(customer()), data=customer()["data"])),
        "data must be null on a deleted event",
    ),
    "upserted-event-with-null-data": poison(
        text(changed(customer(), data=None)),
        "data of an upserted event must be a JSON object, got null",
    ),
    "data-as-list": poison(
        text(changed(customer(), data=[customer()["data"]])),
        "data of an upserted event must be a JSON object, got array",
    ),
    "data-as-string": poison(
        text(changed(customer(), data="Customer 500")),
        "data of an upserted event must be a JSON object, got string",
    ),
    # Data violating the contract.
    "data-bad-enum": poison(text(customer(tier="diamond")), "violates crm.customer v1: tier"),
    "data-negative-credit-limit": poison(
        text(customer(credit_limit="-1.00")),
        "violates crm.customer v1: credit_limit: Input should be greater than or equal to 0",
    ),
    "data-too-many-decimals": poison(
        text(customer(credit_limit="1.005")), "violates crm.customer v1: credit_limit"
    ),
    "data-nan-number": poison(
        with_raw(customer(), "data", text(customer()["data"]).replace('"1500.00"', "NaN")),
        "NaN is not a JSON number",
    ),
    "data-bad-email": poison(
        text(customer(email="not-an-email")), "violates crm.customer v1: email"
    ),
    "data-missing-required-field": poison(
        text(
            changed(customer(), data={k: v for k, v in customer()["data"].items() if k != "email"})
        ),
        "email: Field required",
    ),
    # A consumer is a tolerant reader: a field it does not know (the owner added it
    # before this consumer's contracts were updated) is ignored, the rest applies.
    "data-unknown-field-ignored": applies(customer(is_admin=True)),
    "data-naive-datetime": poison(text(customer(created_at="2026-01-02T03:04:05")), "created_at"),
    "data-name-over-max-length": poison(
        text(customer(name="x" * 201)), "name: String should have at most 200 characters"
    ),
    "data-name-of-900-kb": poison(
        text(customer(name="x" * HUGE)), "name: String should have at most 200 characters"
    ),
    "data-stock-over-int64": poison(text(product(stock=2**63)), "stock", queue=PRODUCT_QUEUE),
    "data-price-negative": poison(
        text(product(price="-0.01")), "violates catalog.product v1: price", queue=PRODUCT_QUEUE
    ),
    "delete-key-over-max-length": poison(
        text(deletion(changed(product(), subject="SKU-" + "9" * 100))),
        "key field sku",
        queue=PRODUCT_QUEUE,
    ),
    # NUL and other text no database stores faithfully: refused by the decoder, so the
    # outcome is the same on every dialect (PostgreSQL could not store it at all).
    "nul-in-name": poison(text(customer(name="nul\x00here")), "name: contains a NUL character"),
    "nul-in-tag": poison(text(customer(tags=["ok", "a\x00b"])), "tags: contains a NUL character"),
    "nul-in-nested-address": poison(
        text(customer(address={**customer()["data"]["address"], "street": "1\x00 Main St"})),
        "address: contains a NUL character",
    ),
    "nul-in-key-of-delete": poison(
        text(deletion(changed(product(), subject="SKU-\x00"))),
        "key field sku contains a NUL character",
        queue=PRODUCT_QUEUE,
    ),
    "lone-surrogate-in-name": poison(
        text(customer(name="half \ud800 a pair")), "name: Input should be a valid string"
    ),
    # Offloaded payloads, with no S3 configured.
    "s3-pointer-without-s3": poison(
        make_pointer("payloads", "events/crm/x.json"), "this consumer has no S3 access configured"
    ),
    "s3-pointer-in-sns-envelope-without-s3": poison(
        sns(make_pointer("payloads", "events/crm/x.json")),
        "this consumer has no S3 access configured",
    ),
    # Pointers that would make the consumer read, with its credentials, what they name:
    # refused before any S3 call, saying nothing of whether such an object exists.
    "s3-pointer-to-another-bucket": poison(
        make_pointer("company-secrets", "events/crm/x.json"),
        "outside s3://payloads/events/crm/: not read",
    ),
    "s3-pointer-to-another-owners-prefix": poison(
        make_pointer("payloads", "events/catalog/x.json"),
        "outside s3://payloads/events/crm/: not read",
    ),
    "s3-pointer-climbing-out-of-the-prefix": poison(
        sns(make_pointer("payloads", "private/keys.json")),
        "outside s3://payloads/events/crm/: not read",
    ),
    # Odd but legitimate: applied, and stored exactly.
    "sql-fragment-in-name": applies(customer(name=_sql)),
    "sql-fragments-quotes-backslashes-placeholders": applies(
        customer(
            name=_quoting,
            tags=["'; DROP TABLE product_mirror; --", _quoting],
            address={**customer()["data"]["address"], "street": "1'); DELETE FROM x; --"},
        )
    ),
    "astral-plane-and-invisible-characters": applies(customer(name=_odd_text, tags=[_odd_text])),
    "control-characters-other-than-nul": applies(customer(name=_controls, tags=[_controls])),
    "name-of-exactly-200-multibyte-characters": applies(customer(name="\u00e9\u6f22" * 100)),
    "tag-of-900-kb": applies(customer(tags=["ab" * (HUGE // 2)])),
    "entityversion-max-int64": applies(changed(customer(), entityversion=2**63 - 1)),
    "deleted-event-for-a-never-seen-key": applies(deletion(customer(), version=5)),
    "leading-whitespace-around-event": applies(customer(), body=f"\n  {text(customer())}\n"),
    "valid-event-in-sns-envelope": applies(customer(), body=sns(text(customer()))),
    "product-with-sql-title": applies(
        product(title="x'); DROP TABLE product_mirror; --"), queue=PRODUCT_QUEUE
    ),
}

XFAIL: dict[str, str] = {}
"""Cases the library gets wrong and this task may not fix, with the bug described."""

PARAMS = [
    pytest.param(
        case,
        id=name,
        marks=[pytest.mark.xfail(strict=True, reason=XFAIL[name])] if name in XFAIL else [],
    )
    for name, case in CASES.items()
]


# -- reading the database back ---------------------------------------------------------


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def customers(db: Database) -> dict[str, dict[str, Any]]:
    found = rows(
        db,
        "SELECT id, name, email, tier, credit_limit, tags, address, phone, "
        "_version, _deleted, _event_id FROM customer_mirror",
    )
    return {
        str(r[0]): {
            "name": r[1],
            "email": r[2],
            "tier": r[3],
            "credit_limit": None if r[4] is None else Decimal(str(r[4])),
            "tags": _json(r[5]),
            "address": _json(r[6]),
            "phone": r[7],
            "_version": int(r[8]),
            "_deleted": bool(r[9]),
            "_event_id": str(r[10]),
        }
        for r in found
    }


def products(db: Database) -> dict[str, dict[str, Any]]:
    found = rows(
        db,
        "SELECT sku, title, price, active, stock, _version, _deleted, _event_id "
        "FROM product_mirror",
    )
    return {
        str(r[0]): {
            "title": r[1],
            "price": None if r[2] is None else Decimal(str(r[2])),
            "active": None if r[3] is None else bool(r[3]),
            "stock": None if r[4] is None else int(r[4]),
            "_version": int(r[5]),
            "_deleted": bool(r[6]),
            "_event_id": str(r[7]),
        }
        for r in found
    }


def expected_row(doc: dict[str, Any]) -> dict[str, Any]:
    """What the mirror row of ``doc``'s key holds once ``doc`` applied (tombstones: metadata)."""
    meta = {
        "_version": doc["entityversion"],
        "_deleted": doc["data"] is None,
        "_event_id": doc["id"],
    }
    data = doc["data"]
    if data is None:
        return meta
    if doc["type"].startswith("crm.customer."):
        return {
            "name": data["name"],
            "email": data["email"],
            "tier": data["tier"],
            "credit_limit": Decimal(data["credit_limit"]),
            "tags": data["tags"],
            "address": data["address"],
            "phone": data["phone"],
            **meta,
        }
    return {
        "title": data["title"],
        "price": Decimal(data["price"]),
        "active": data["active"],
        "stock": data["stock"],
        **meta,
    }


def mirrors(db: Database) -> dict[str, dict[str, dict[str, Any]]]:
    """Both mirrors' rows by key; tombstones keep only their metadata."""
    found = {"crm.customer": customers(db), "catalog.product": products(db)}
    for table in found.values():
        for key, row in table.items():
            if row["_deleted"]:
                table[key] = {k: v for k, v in row.items() if k.startswith("_")}
    return found


def failures(db: Database) -> list[tuple[Any, ...]]:
    return rows(
        db,
        "SELECT queue, message_id, kind, reason, receive_count, dead_lettered, entity "
        "FROM replication_failures",
    )


# -- the test --------------------------------------------------------------------------


@pytest.fixture
def orders(database: Database, orders_manifest: Manifest) -> Iterator[Harness]:
    create_consumer_tables(database, orders_manifest)
    h = harness(database, orders_manifest)
    try:
        yield h
    finally:
        h.close()


def test_the_catalogue_is_large_and_covers_both_outcomes() -> None:
    assert len(CASES) >= 25
    assert sum(1 for c in CASES.values() if c.reason is None) >= 5


@pytest.mark.parametrize("case", PARAMS)
def test_bad_input(database: Database, orders: Harness, case: Case) -> None:
    valid = [customer(1), customer(2)] if case.queue == CUSTOMER_QUEUE else [product(1), product(2)]
    entity = valid[0]["type"].rsplit(".", 1)[0]
    records = [
        sqs_record(text(valid[0]), queue=case.queue),
        sqs_record(case.body, queue=case.queue),
        sqs_record(text(valid[1]), queue=case.queue),
    ]
    bad = records[1]["messageId"]

    response = orders({"Records": records})

    # Every record is done: the valid ones applied, the bad one applied or dead-lettered.
    assert response == {"batchItemFailures": []}
    outcomes: dict[str, list[str]] = {}
    for line in orders.log.getvalue().splitlines():
        logged = json.loads(line)
        outcomes.setdefault(logged["message_id"], []).append(logged["outcome"])
    # Nothing lost: one outcome per record, none silently dropped.
    assert sorted(outcomes) == sorted(r["messageId"] for r in records)
    assert outcomes[records[0]["messageId"]] == ["applied"]
    assert outcomes[records[2]["messageId"]] == ["applied"]

    # Nothing wrong written, every table still there: the mirrors hold exactly the valid
    # events (and the odd-but-legitimate one), stored exactly.
    applied = [*valid, *([case.stored] if case.stored is not None else [])]
    expected: dict[str, dict[str, dict[str, Any]]] = {"crm.customer": {}, "catalog.product": {}}
    for doc in applied:
        expected[doc["type"].rsplit(".", 1)[0]][doc["subject"]] = expected_row(doc)
    assert mirrors(database) == expected

    letters = orders.dead_letters.messages
    found = failures(database)
    if case.reason is None:
        assert outcomes[bad] == [
            "deleted" if case.stored and case.stored["data"] is None else "applied"
        ]
        assert letters == []
        assert found == []
        return

    # Poison: reported done, in the DLQ exactly once with its reason, and recorded.
    assert outcomes[bad] == ["dead-lettered"]
    [letter] = letters
    assert letter["queue"] == f"{case.queue}-dlq"
    assert letter["body"] == case.body
    attributes = letter["attributes"]
    assert attributes[MESSAGE_ID]["StringValue"] == bad
    assert attributes[SOURCE_QUEUE]["StringValue"] == case.queue
    reason = attributes[REASON]["StringValue"]
    assert case.reason in reason
    assert "example.com" not in reason  # reasons never echo data values
    [failure] = found
    queue, message_id, kind, recorded, receive_count, dead_lettered, failed_entity = failure
    assert (queue, message_id, kind) == (case.queue, bad, "permanent")
    assert case.reason in recorded
    assert (receive_count, bool(dead_lettered), failed_entity) == (1, True, entity)
