"""The apply handler under hostile and broken records, on every dialect (property-based).

Each example is one Lambda batch of SQS records built from valid change
events and then mutated: odd values in any field, fields dropped or added,
versions out of range, bodies cut short, nested thousands deep, replaced by
claim-check pointers or by noise, wrapped in SNS envelopes from the owner's
topic or someone else's, delivered from the right queue, another mirror's
queue or a queue the consumer does not have. Whatever arrives:

- no exception escapes the handler;
- every record has exactly one outcome: ``batchItemFailures`` lists exactly
  the records to retry, the DLQ holds exactly the dead-lettered ones (once
  each), and every record is logged once;
- every live mirror row validates against its contract, and no key's
  version ever goes down, across all the examples of the run.

300 batches per dialect by default; ``HYPOTHESIS_PROFILE=thorough`` runs
3,000 (``REPLICATION_THOROUGH_EXAMPLES``); ``--hypothesis-show-statistics``
shows how often each outcome occurred.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from contracts import Customer
from replication.consumer.dead_letters import MESSAGE_ID
from replication.manifest import Manifest
from replication.mirror.render import statements_for
from replication.mirror.tables import DELETED, VERSION
from tests.conftest import DIALECTS
from tests.consumer_support import Harness, create_consumer_tables, harness, sqs_record
from tests.databases import Database, connect
from tests.documents import changed, customer, deletion
from tests.mirror_state import read_mirror

ACCOUNT = "123456789012"
CUSTOMER_QUEUE = "dev-orders--crm-customer-v1"
PRODUCT_QUEUE = "dev-orders--catalog-product-v1"
CUSTOMER_TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:dev-crm-customer-v1"
KEYS = range(1, 6)
"""The key numbers events are drawn for (few, so that events of one key meet)."""
POINTER = "software.amazon.payloadoffloading.PayloadS3Pointer"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
odd_values = (
    json_values
    | st.sampled_from(["", "\x00", "\ud800", "x" * 5000, "NaN", "1e400", "-0", " gold", "GOLD"])
    | st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64, 1.5, True, [], {}])
)


@st.composite
def change_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid crm.customer change event as the owner publishes it."""
    document = changed(
        customer(
            draw(st.sampled_from(KEYS)),
            name=draw(st.text(min_size=1, max_size=20)),
            email=draw(st.sampled_from(["ada@example.com", "Bob@Example.COM"])),
            tier=draw(st.sampled_from(["bronze", "silver", "gold", "platinum"])),
            credit_limit=draw(st.sampled_from(["0", "10.5", "1500.00", "9999999999.99"])),
            tags=draw(st.lists(st.text(max_size=5), max_size=3)),
            phone=draw(st.none() | st.just("+33123456")),
        ),
        id=str(uuid.UUID(int=draw(st.integers(1, 2**122)), version=4)),
        entityversion=draw(st.integers(1, 8)),
    )
    if draw(st.integers(0, 5)) == 0:
        document = deletion(document, document["entityversion"])
    return document


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with one of the changes a broken or hostile sender might make."""
    change = draw(
        st.sampled_from(["none", "none", "field", "top", "drop", "extra", "version", "nest"])
    )
    document = json.loads(json.dumps(document))
    data = document.get("data")
    if change == "field" and isinstance(data, dict):
        data[draw(st.sampled_from(sorted(data)))] = draw(odd_values)
    elif change == "top":
        document[draw(st.sampled_from(sorted(document)))] = draw(odd_values)
    elif change == "drop":
        del document[draw(st.sampled_from(sorted(document)))]
    elif change == "extra":
        target = data if isinstance(data, dict) and draw(st.booleans()) else document
        target[draw(st.text(min_size=1, max_size=10))] = draw(odd_values)
    elif change == "version":
        document["entityversion"] = draw(odd_values)
    elif change == "nest" and isinstance(data, dict):
        depth = draw(st.integers(1, 200))
        value: Any = "x"
        for _ in range(depth):
            value = {"a": value}
        data["address"] = value
    return document


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """A record body: an event, mutated, encoded, and maybe broken or replaced."""
    text = json.dumps(draw(mutated(draw(change_documents()))), allow_nan=True)
    shape = draw(st.sampled_from(["as-is", "as-is", "as-is", "cut", "deep", "pointer", "noise"]))
    if shape == "cut":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if shape == "deep":
        depth = draw(st.integers(500, 3000))
        head = f'["{POINTER}", ' if draw(st.booleans()) else ""
        return head + "[" * depth + "]" * depth + ("]" if head else "")
    if shape == "pointer":
        bucket = draw(st.sampled_from(["replication-payloads", "someone-elses-bucket", ""]))
        key = draw(st.sampled_from(["events/crm/x.json", "events/catalog/x.json", "../x", ""]))
        return json.dumps([POINTER, {"s3BucketName": bucket, "s3Key": key}])
    if shape == "noise":
        return draw(st.text(max_size=60))
    return text


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """One SQS record as Lambda delivers it, through SNS or raw, from some queue."""
    body = draw(bodies())
    if draw(st.booleans()):
        topic = draw(
            st.sampled_from(
                [
                    CUSTOMER_TOPIC,
                    CUSTOMER_TOPIC,
                    CUSTOMER_TOPIC.replace(ACCOUNT, "666666666666"),
                    CUSTOMER_TOPIC.replace("us-east-1", "ap-south-1"),
                    CUSTOMER_TOPIC.replace("crm-customer", "catalog-product"),
                ]
            )
        )
        envelope = {
            "Type": draw(
                st.sampled_from(["Notification", "Notification", "SubscriptionConfirmation"])
            ),
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": body,
            "Timestamp": "2026-11-27T10:00:00.000Z",
        }
        body = json.dumps(envelope)
    queue = draw(st.sampled_from([CUSTOMER_QUEUE] * 6 + [PRODUCT_QUEUE, "dev-orders--unknown-v1"]))
    attributes = {}
    if draw(st.integers(0, 4)) == 0:
        attributes["replication.refresh"] = {"stringValue": "true", "dataType": "String"}
    return sqs_record(
        body, queue=queue, receive_count=draw(st.integers(1, 6)), attributes=attributes
    )


class Run:
    """One dialect's handler, its mirror and the highest version seen of each key."""

    def __init__(self, db: Database, manifest: Manifest) -> None:
        self.db = db
        self.manifest = manifest
        self.harness: Harness = harness(db, manifest)
        self.statements = statements_for(manifest.mirror("crm.customer"), db.dialect)
        self.highest: dict[Any, int] = {}


@pytest.fixture(scope="module", params=DIALECTS)
def run(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    orders_manifest: Manifest,
) -> Iterator[Run]:
    db = connect(request.param, Path(tmp_path_factory.mktemp(request.param)))
    create_consumer_tables(db, orders_manifest)
    state = Run(db, orders_manifest)
    try:
        yield state
    finally:
        state.harness.close()
        db.close()


@given(batch=st.lists(records(), min_size=1, max_size=10))
def test_no_record_escapes_its_one_outcome_and_the_mirror_stays_valid(
    run: Run, batch: list[dict[str, Any]]
) -> None:
    h = run.harness
    h.log.seek(0)
    h.log.truncate(0)
    h.dead_letters.messages.clear()

    response = h({"Records": batch})

    ids = [r["messageId"] for r in batch]
    # Split on newlines only: a reason may carry U+2028, which splitlines() would cut at.
    logged = [json.loads(line) for line in h.log.getvalue().split("\n") if line]
    outcomes = {line["message_id"]: line["outcome"] for line in logged}
    assert sorted(line["message_id"] for line in logged) == sorted(ids)
    retried = sorted(i["itemIdentifier"] for i in response["batchItemFailures"])
    assert retried == sorted(i for i in ids if outcomes[i] == "retry")
    lettered = sorted(m["attributes"][MESSAGE_ID]["StringValue"] for m in h.dead_letters.messages)
    assert lettered == sorted(i for i in ids if outcomes[i] == "dead-lettered")
    for outcome in outcomes.values():
        event(outcome)

    run.db.connection.rollback()
    for key, row in read_mirror(run.db, run.statements).items():
        assert row[VERSION] >= run.highest.get(key, 0), key
        run.highest[key] = row[VERSION]
        if not row[DELETED]:
            values = {c: v for c, v in row.items() if c not in (VERSION, DELETED)}
            Customer.model_validate(values)
    run.db.connection.rollback()
