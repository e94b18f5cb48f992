"""The change event codec: faithful round trips, and a precise reason for every bad input.

Every rejected input is also taken down the consumer's path (decode, and apply
only what decoded) into real SQLite mirrors, which must stay empty: an event
that can never be valid never reaches a mirror (ARCHITECTURE section 4, rule 6).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field, field_validator

from contracts import Address, Customer, Product, Tier
from replication.contracts import Contract, ContractRegistry
from replication.errors import InvalidEventError, ReplicationError
from replication.events import (
    ChangeEvent,
    decode_event,
    deleted,
    encode_event,
    to_document,
    upserted,
)
from replication.keys import decode_subject, encode_subject
from replication.manifest import Manifest, MirrorDeclaration
from replication.mirror import apply_changes
from replication.mirror.statements import MirrorStatements
from replication.wire import RFC3339_RE, StrictJSONError, _from_groups, loads_strict, parse_rfc3339
from tests.conftest import create_mirror, fetch_all
from tests.databases import Database, connect


class OrderLine(Contract, entity="testkit.order_line", version=1, key=("order_id", "line_no")):
    """A composite-key contract: a line is identified by its order and its number."""

    order_id: str
    line_no: int
    quantity: int = Field(ge=1)
    created_at: dt.datetime


ORDER_LINE_MIRROR = MirrorDeclaration(
    service="testkit_consumer",
    contract=OrderLine.__contract__,
    table="order_line_mirror",
    fields=tuple(OrderLine.__contract__.fields),
)

EMAIL = "pii.alice@example.com"
PII_MARK = "pii.alice"
"""Part of every email used here, valid or not: it must never show in a message."""

CUSTOMER_ID = uuid.UUID("0b5c6a5e-8d1f-4c1a-9a53-2f7e3c7d9b10")
OTHER_ID = uuid.UUID("7d2f1e0a-3c4b-4a5d-8e6f-9a0b1c2d3e4f")
EVENT_ID = uuid.UUID("5f0e6d1c-2b3a-4c9d-8e7f-6a5b4c3d2e1f")
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
MAX_VERSION = 2**63 - 1

CUSTOMER = Customer(
    id=CUSTOMER_ID,
    name="Alice Martin",
    email=EMAIL,
    tier=Tier.GOLD,
    credit_limit=Decimal("1500.50"),
    created_at=dt.datetime(2023, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    tags=["vip", "emea"],
    address=Address(street="1 rue de la Paix", city="Paris", postal_code="75002", country="FR"),
    phone="+33123456789",
)
PRODUCT = Product(sku="SKU-1", title="Teapot", price=Decimal("19.90"), active=True, stock=7)
ORDER_LINE = OrderLine(
    order_id="A/1 100% ünïcödé",
    line_no=3,
    quantity=2,
    created_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
)


# --- wire documents ---------------------------------------------------------------------


def document(event: ChangeEvent, **attributes: Any) -> dict[str, Any]:
    """The wire document of ``event`` as a dict, with some attributes replaced."""
    doc: dict[str, Any] = json.loads(encode_event(event))
    doc.update(attributes)
    return doc


def without(doc: dict[str, Any], *names: str) -> dict[str, Any]:
    """``doc`` without the named attributes."""
    return {name: value for name, value in doc.items() if name not in names}


def with_data(doc: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``doc`` with some fields of its ``data`` replaced."""
    return {**doc, "data": {**doc["data"], **fields}}


def data_without(doc: dict[str, Any], *names: str) -> dict[str, Any]:
    """``doc`` with some fields of its ``data`` left out."""
    return {**doc, "data": without(doc["data"], *names)}


def wire(doc: Any) -> bytes:
    """A JSON value as wire bytes."""
    return json.dumps(doc).encode()


def edited(doc: dict[str, Any], old: str, new: str) -> bytes:
    """The wire bytes of ``doc`` with one piece of its JSON text replaced."""
    text = json.dumps(doc)
    assert old in text, f"{old!r} is not in the document"
    return text.replace(old, new, 1).encode()


def customer_upsert(**attributes: Any) -> dict[str, Any]:
    """An upsert of CUSTOMER, with some attributes replaced."""
    return document(upserted(CUSTOMER, 3, time=WHEN, event_id=EVENT_ID), **attributes)


def customer_delete(**attributes: Any) -> dict[str, Any]:
    """A delete of CUSTOMER's key, with some attributes replaced."""
    return document(deleted(Customer, CUSTOMER_ID, 4, time=WHEN, event_id=EVENT_ID), **attributes)


def product_upsert(**attributes: Any) -> dict[str, Any]:
    """An upsert of PRODUCT, with some attributes replaced."""
    return document(upserted(PRODUCT, 2, time=WHEN, event_id=EVENT_ID), **attributes)


def product_delete(**attributes: Any) -> dict[str, Any]:
    """A delete of PRODUCT's key, with some attributes replaced."""
    return document(deleted(Product, "SKU-1", 2, time=WHEN, event_id=EVENT_ID), **attributes)


def order_line_upsert(**attributes: Any) -> dict[str, Any]:
    """An upsert of ORDER_LINE, with some attributes replaced."""
    return document(upserted(ORDER_LINE, 1, time=WHEN, event_id=EVENT_ID), **attributes)


def order_line_delete(**attributes: Any) -> dict[str, Any]:
    """A delete of ORDER_LINE's key, with some attributes replaced."""
    key = ORDER_LINE.key_values()
    return document(deleted(OrderLine, key, 2, time=WHEN, event_id=EVENT_ID), **attributes)


# --- mirrors ------------------------------------------------------------------------------


@dataclass
class Mirrors:
    """Real SQLite mirrors of every entity these tests send events for."""

    db: Database
    statements: dict[str, MirrorStatements]

    def apply(self, event: ChangeEvent) -> None:
        """Apply one decoded event to its entity's mirror, as a consumer would."""
        apply_changes(self.db.connection, self.statements[event.entity], [event])

    def rows(self, entity: str) -> list[tuple[Any, ...]]:
        """Every row of the entity's mirror table."""
        return fetch_all(self.db, f"SELECT * FROM {self.statements[entity].table}")

    def row_count(self) -> int:
        """The number of rows across all mirror tables."""
        return sum(len(self.rows(entity)) for entity in self.statements)


@pytest.fixture
def mirrors(tmp_path: Path, orders_manifest: Manifest) -> Iterator[Mirrors]:
    db = connect("sqlite", tmp_path)
    declarations = [
        orders_manifest.mirror("crm.customer"),
        orders_manifest.mirror("catalog.product"),
        ORDER_LINE_MIRROR,
    ]
    statements = {d.contract.entity: create_mirror(db, d) for d in declarations}
    try:
        yield Mirrors(db, statements)
    finally:
        db.close()


def rejection(raw: bytes | str, mirrors: Mirrors) -> InvalidEventError:
    """Take ``raw`` down the consumer's path; it must be rejected and leave the mirrors empty."""
    error: InvalidEventError | None = None
    try:
        event = decode_event(raw)
    except InvalidEventError as exc:
        error = exc
    else:
        mirrors.apply(event)
    assert mirrors.row_count() == 0, "an invalid event reached a mirror"
    assert error is not None, "an invalid event was accepted"
    return error


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(upserted(CUSTOMER, 3, time=WHEN, event_id=EVENT_ID), id="customer-upserted"),
        pytest.param(deleted(Customer, CUSTOMER_ID, 4, time=WHEN), id="customer-deleted"),
        pytest.param(upserted(PRODUCT, 1, time=WHEN), id="product-upserted"),
        pytest.param(deleted(Product, "SKU-1", 2, time=WHEN), id="product-deleted"),
        pytest.param(upserted(ORDER_LINE, 5, time=WHEN), id="order-line-upserted"),
        pytest.param(
            deleted(OrderLine, ("A/1", 2), MAX_VERSION, time=WHEN), id="order-line-deleted"
        ),
    ],
)
def test_an_encoded_event_decodes_to_an_equal_event(event: ChangeEvent) -> None:
    decoded = decode_event(encode_event(event))

    assert decoded == event  # id, contract, op, typed key, version, time and data
    assert type(decoded.data) is type(event.data)


def test_the_wire_form_is_a_cloudevents_document() -> None:
    doc = customer_upsert()

    assert without(doc, "data") == {
        "specversion": "1.0",
        "id": str(EVENT_ID),
        "source": "crm",
        "type": "crm.customer.upserted",
        "subject": str(CUSTOMER_ID),
        "time": "2024-05-06T05:08:09.123456Z",
        "dataschema": "contract:crm.customer/v1",
        "datacontenttype": "application/json",
        "entityversion": 3,
    }
    assert doc["data"]["credit_limit"] == "1500.50"
    assert customer_delete()["data"] is None
    assert customer_delete()["type"] == "crm.customer.deleted"


def test_a_decoded_customer_keeps_its_typed_values() -> None:
    decoded = decode_event(encode_event(upserted(CUSTOMER, 3, time=WHEN)))

    assert isinstance(decoded.data, Customer)
    assert decoded.key == (CUSTOMER_ID,)
    assert decoded.data.tier is Tier.GOLD
    assert decoded.data.credit_limit == Decimal("1500.50")
    assert decoded.data.created_at == dt.datetime(2023, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "order_id",
    [
        "A/1",
        "100%",
        "%2F",
        "with space",
        "ünïcödé ✓",
        "日本語/注文 🎉",
        "a/b%c d/",
        "/",
        "%",
        "",
        "+?#&=",
    ],
)
@pytest.mark.parametrize("line_no", [0, 1, -7, MAX_VERSION])
def test_a_composite_key_round_trips_through_its_subject(order_id: str, line_no: int) -> None:
    info = OrderLine.__contract__
    subject = encode_subject((order_id, line_no))

    assert subject.count("/") == 1
    assert decode_subject(info, subject) == (order_id, line_no)

    line = OrderLine(order_id=order_id, line_no=line_no, quantity=1, created_at=WHEN)
    for event in (upserted(line, 1, time=WHEN), deleted(OrderLine, (order_id, line_no), 2)):
        decoded = decode_event(encode_event(event))
        assert decoded.key == (order_id, line_no)
        assert decoded.subject == subject


class Note(Contract, entity="testkit.note", version=1, key="title", register=False):
    """A free-form text key: no pattern to satisfy."""

    title: str


def test_a_single_key_subject_is_its_canonical_text() -> None:
    assert encode_subject((CUSTOMER_ID,)) == "0b5c6a5e-8d1f-4c1a-9a53-2f7e3c7d9b10"
    assert encode_subject(("a/b c%",)) == "a/b c%"
    assert decode_subject(Note.__contract__, "a/b c%") == ("a/b c%",)
    assert decode_subject(Customer.__contract__, str(CUSTOMER_ID)) == (CUSTOMER_ID,)


@pytest.mark.parametrize(
    ("entity", "doc"),
    [
        ("crm.customer", customer_upsert()),
        ("crm.customer", customer_delete()),
        ("catalog.product", product_upsert()),
        ("catalog.product", product_delete()),
        ("testkit.order_line", order_line_upsert()),
        ("testkit.order_line", order_line_delete()),
    ],
)
def test_a_valid_event_reaches_its_mirror(
    mirrors: Mirrors, entity: str, doc: dict[str, Any]
) -> None:
    # The control for every rejection below: the same path does write valid events.
    mirrors.apply(decode_event(wire(doc)))

    assert len(mirrors.rows(entity)) == 1
    assert mirrors.row_count() == 1


# --- rejections -------------------------------------------------------------------------------

NOT_AN_OBJECT = "a change event must be a JSON object"
CUSTOMER_TYPES = "type must be 'crm.customer.upserted' or 'crm.customer.deleted'"
NOT_AN_INTEGER = "entityversion must be an integer"

BAD_ENVELOPES = [
    pytest.param(b"{", "not valid JSON", id="truncated-json"),
    pytest.param(b"", "not valid JSON", id="empty"),
    pytest.param(b'{"id": "\xff\xfe"}', "not valid JSON", id="not-utf8"),
    pytest.param("[" * 100_000 + "]" * 100_000, "not valid JSON", id="nested-too-deep"),
    pytest.param(wire([customer_upsert()]), NOT_AN_OBJECT, id="json-array"),
    pytest.param(b'"crm.customer"', NOT_AN_OBJECT, id="json-string"),
    pytest.param(b"null", NOT_AN_OBJECT, id="json-null"),
    pytest.param(
        wire(without(customer_upsert(), "subject")),
        "missing attribute(s): subject",
        id="missing-subject",
    ),
    pytest.param(
        wire(without(customer_delete(), "data")), "missing attribute(s): data", id="missing-data"
    ),
    pytest.param(
        wire(without(customer_upsert(), "time", "subject")),
        "missing attribute(s): subject, time",
        id="missing-two",
    ),
    pytest.param(
        wire(customer_upsert(foo="bar")), "unknown attribute(s): foo", id="unknown-attribute"
    ),
    pytest.param(
        wire(customer_upsert(specversion="0.3")), "specversion must be '1.0'", id="specversion"
    ),
    pytest.param(
        wire(customer_upsert(specversion=1.0)),
        "specversion must be '1.0'",
        id="specversion-number",
    ),
    pytest.param(wire(customer_upsert(id="42")), "id must be a UUID", id="id-not-uuid"),
    pytest.param(
        wire(customer_upsert(id=42)), "attribute id must be a non-empty string", id="id-number"
    ),
    pytest.param(
        wire(customer_upsert(source="")),
        "attribute source must be a non-empty string",
        id="source-empty",
    ),
    pytest.param(
        wire(customer_upsert(datacontenttype="text/plain")),
        "datacontenttype must be 'application/json'",
        id="content-type",
    ),
    pytest.param(
        wire(customer_upsert(dataschema="crm.customer")),
        "dataschema must look like 'contract:<owner>.<entity>/v<major>'",
        id="dataschema-shape",
    ),
    pytest.param(
        wire(customer_upsert(dataschema="contract:crm.customer/v\u00b2")),
        "dataschema must look like",
        id="dataschema-superscript-major",
    ),
    pytest.param(
        wire(customer_upsert(dataschema="contract:crm.customer/v" + "1" * 5000)),
        "dataschema must look like",
        id="dataschema-huge-major",
    ),
    pytest.param(
        wire(customer_upsert(dataschema="contract:crm.nothing/v1")),
        "unknown contract crm.nothing v1",
        id="unknown-entity",
    ),
    pytest.param(
        wire(customer_upsert(dataschema="contract:crm.customer/v9")),
        "unknown contract crm.customer v9",
        id="unknown-version",
    ),
    pytest.param(
        wire(customer_upsert(source="orders")),
        "source 'orders' is not the owner of crm.customer (owner: 'crm')",
        id="spoofed-source",
    ),
    pytest.param(
        wire(customer_upsert(source="catalog")),
        "source 'catalog' is not the owner of crm.customer",
        id="another-owner",
    ),
    pytest.param(
        wire(customer_upsert(type="crm.customer.created")), CUSTOMER_TYPES, id="type-unknown-op"
    ),
    pytest.param(
        wire(customer_upsert(type="catalog.product.upserted")),
        CUSTOMER_TYPES,
        id="type-of-another-entity",
    ),
    pytest.param(wire(customer_upsert(entityversion="3")), NOT_AN_INTEGER, id="version-string"),
    pytest.param(wire(customer_upsert(entityversion=2.5)), NOT_AN_INTEGER, id="version-float"),
    pytest.param(wire(customer_upsert(entityversion=True)), NOT_AN_INTEGER, id="version-bool"),
    pytest.param(wire(customer_upsert(entityversion=None)), NOT_AN_INTEGER, id="version-null"),
    pytest.param(
        wire(customer_upsert(entityversion=0)), "entityversion must be positive", id="version-0"
    ),
    pytest.param(
        wire(customer_delete(entityversion=-1)),
        "entityversion must be positive",
        id="version-negative",
    ),
    pytest.param(
        wire(customer_upsert(entityversion=MAX_VERSION + 1)),
        f"entityversion must be at most {MAX_VERSION}",
        id="version-beyond-bigint",
    ),
    pytest.param(
        wire(customer_upsert(time="yesterday")),
        "time must be an RFC 3339 timestamp",
        id="time-not-a-time",
    ),
    pytest.param(
        wire(customer_upsert(time="2024-05-06T07:08:09")),
        "time '2024-05-06T07:08:09' has no UTC offset",
        id="time-naive",
    ),
    pytest.param(
        wire(customer_upsert(time="0001-01-01T00:00:00+01:00")),
        "time '0001-01-01T00:00:00+01:00' is out of range",
        id="time-out-of-range",
    ),
    pytest.param(
        wire(customer_delete(data=customer_upsert()["data"])),
        "data must be null on a deleted event",
        id="delete-with-data",
    ),
    pytest.param(
        wire(customer_upsert(data="a customer")),
        "data of an upserted event must be a JSON object, got string",
        id="data-string",
    ),
    pytest.param(
        wire(customer_upsert(data=None)),
        "data of an upserted event must be a JSON object, got null",
        id="data-null",
    ),
    pytest.param(
        wire(customer_upsert(data=[])),
        "data of an upserted event must be a JSON object, got array",
        id="data-array",
    ),
    pytest.param(
        wire(customer_upsert(entityversion=float("nan"))),
        "not valid JSON: NaN is not a JSON number",
        id="nan-token",
    ),
    pytest.param(
        wire(with_data(product_upsert(), stock=float("inf"))),
        "not valid JSON: Infinity is not a JSON number",
        id="infinity-token-in-data",
    ),
    pytest.param(
        wire(with_data(product_upsert(), stock=float("-inf"))),
        "not valid JSON: -Infinity is not a JSON number",
        id="minus-infinity-token-in-data",
    ),
    pytest.param(
        edited(customer_upsert(), '"entityversion": 3', '"entityversion": 1e999'),
        "not valid JSON: 1e999 overflows to Infinity",
        id="number-overflowing-to-infinity",
    ),
    pytest.param(
        edited(customer_upsert(), '"entityversion": 3', '"entityversion": 3, "entityversion": 9'),
        "duplicate key 'entityversion'",
        id="duplicate-attribute",
    ),
    pytest.param(
        edited(customer_upsert(), '"name": "Alice Martin"', '"name": "Alice", "name": "Mallory"'),
        "duplicate key 'name'",
        id="duplicate-field-in-data",
    ),
    pytest.param(
        edited(customer_upsert(), '"city": "Paris"', '"city": "Paris", "city": "Lyon"'),
        "duplicate key 'city'",
        id="duplicate-field-in-nested-data",
    ),
    pytest.param(
        wire(customer_upsert(id="{" + str(EVENT_ID) + "}")),
        "id must be a UUID in canonical form",
        id="id-in-braces",
    ),
    pytest.param(
        wire(customer_upsert(id=EVENT_ID.urn)),
        "id must be a UUID in canonical form",
        id="id-urn",
    ),
    pytest.param(
        wire(customer_upsert(id=str(EVENT_ID).upper())),
        "id must be a UUID in canonical form",
        id="id-upper-case",
    ),
    pytest.param(
        wire(customer_upsert(id=EVENT_ID.hex)),
        "id must be a UUID in canonical form",
        id="id-without-hyphens",
    ),
    pytest.param(
        wire(customer_upsert(id=EVENT_ID.hex[:12] + "-" + str(EVENT_ID)[13:])),
        "id must be a UUID in canonical form",
        id="id-misplaced-hyphens",
    ),
    pytest.param(
        wire(customer_upsert(dataschema="contract:crm.customer/v01")),
        "dataschema must look like",
        id="dataschema-major-leading-zero",
    ),
    pytest.param(
        wire(customer_upsert(dataschema="contract:crm.customer/v0001")),
        "dataschema must look like",
        id="dataschema-major-leading-zeros",
    ),
]

SUBJECT_MISMATCH = "does not match the key in data"

BAD_UPSERTS = [
    pytest.param(
        wire(customer_upsert(subject=str(OTHER_ID))), SUBJECT_MISMATCH, id="subject-other-key"
    ),
    pytest.param(
        wire(customer_upsert(subject=str(CUSTOMER_ID).upper())),
        SUBJECT_MISMATCH,
        id="subject-upper-case",
    ),
    pytest.param(
        wire(order_line_upsert(subject="A/1 100% ünïcödé/3")),
        SUBJECT_MISMATCH,
        id="subject-composite-not-encoded",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), email="pii.alice-at-example.com")),
        "email: value is not a valid email address",
        id="bad-email",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), email="pii.alice@@example.com")),
        "email: value is not a valid email address",
        id="bad-email-two-at-signs",
    ),
    pytest.param(
        wire(data_without(customer_upsert(), "name")), "name: Field required", id="missing-field"
    ),
    pytest.param(
        wire(with_data(customer_upsert(), name=5)),
        "name: Input should be a valid string",
        id="wrong-type",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), foo="bar")),
        "foo: Extra inputs are not permitted",
        id="extra-field",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), credit_limit="12.345")),
        "credit_limit: Decimal input should have no more than 2 decimal places",
        id="credit-limit-3-decimals",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), tier="diamond")),
        "tier: Input should be 'bronze', 'silver', 'gold' or 'platinum'",
        id="unknown-tier",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), address={**CUSTOMER.address.model_dump(), "zip": 1})),
        "address.zip: Extra inputs are not permitted",
        id="nested-extra-field",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), created_at="2023-01-02T03:04:05")),
        "created_at: Input should have timezone info",
        id="aware-datetime-without-offset",
    ),
    pytest.param(
        wire(with_data(order_line_upsert(), created_at="2024-01-01T00:00:00")),
        "created_at: naive datetime: a UTC offset is required",
        id="naive-datetime",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), created_at="0001-01-01T00:00:00+01:00")),
        "created_at: is out of range once converted to UTC",
        id="datetime-out-of-range",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), name="Alice\x00Martin")),
        "name: contains a NUL character",
        id="nul-character",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), tags=["vip", "\x00"])),
        "tags: contains a NUL character",
        id="nul-character-in-list",
    ),
    pytest.param(
        wire(with_data(customer_upsert(), tags=["vip", "\ud800"])),
        "tags: contains a lone surrogate",
        id="lone-surrogate-in-list",
    ),
    pytest.param(
        wire(with_data(product_upsert(), stock=2**63)),
        "stock: is outside the 64-bit integer range",
        id="int-beyond-bigint",
    ),
    pytest.param(
        wire(with_data(product_upsert(), sku="A" * 65, subject="A" * 65)),
        "sku: String should have at most 64 characters",
        id="product-key-too-long",
    ),
    pytest.param(
        wire(
            with_data(order_line_upsert(subject=encode_subject(("x" * 256, 3))), order_id="x" * 256)
        ),
        "key field order_id is longer than 255 characters",
        id="composite-key-too-long",
    ),
]

NOT_CANONICAL = "is not in canonical form"

BAD_DELETES = [
    pytest.param(
        wire(customer_delete(subject=str(CUSTOMER_ID).upper())),
        f"{NOT_CANONICAL} for key field id (expected '{CUSTOMER_ID}')",
        id="uuid-upper-case",
    ),
    pytest.param(
        wire(customer_delete(subject="{" + str(CUSTOMER_ID) + "}")),
        f"{NOT_CANONICAL} for key field id",
        id="uuid-in-braces",
    ),
    pytest.param(
        wire(customer_delete(subject=CUSTOMER_ID.hex)),
        f"{NOT_CANONICAL} for key field id",
        id="uuid-without-hyphens",
    ),
    pytest.param(
        wire(customer_delete(subject="not-a-uuid")),
        "is not a valid uuid for key field id",
        id="not-a-uuid",
    ),
    pytest.param(
        wire(product_delete(subject="A" * 65)),
        "key field sku: String should have at most 64 characters",
        id="key-too-long",
    ),
    pytest.param(
        wire(product_delete(subject="lower-case")),
        "key field sku: String should match pattern",
        id="key-violating-its-field-constraint",
    ),
    pytest.param(
        wire(product_delete(subject="SKU\x001")),
        "key field sku contains a NUL character",
        id="key-with-nul",
    ),
    pytest.param(
        wire(product_delete(subject="SKU\ud8001")),
        "key field sku contains a lone surrogate",
        id="key-with-lone-surrogate",
    ),
    pytest.param(
        wire(order_line_delete(subject="A-1")),
        "has 1 part(s), the key of testkit.order_line v1 has 2 (order_id, line_no)",
        id="composite-too-few-parts",
    ),
    pytest.param(
        wire(order_line_delete(subject="A/1/2")),
        "has 3 part(s)",
        id="composite-too-many-parts",
    ),
    pytest.param(
        wire(order_line_delete(subject="A-1/x")),
        "is not a valid int for key field line_no",
        id="composite-int-not-a-number",
    ),
    pytest.param(
        wire(order_line_delete(subject="A-1/01")),
        f"{NOT_CANONICAL} for key field line_no",
        id="composite-int-leading-zero",
    ),
    pytest.param(
        wire(order_line_delete(subject="A-1/9223372036854775808")),
        "key field line_no is outside the 64-bit integer range",
        id="composite-int-beyond-bigint",
    ),
    pytest.param(
        wire(order_line_delete(subject="A%2D1/1")),
        NOT_CANONICAL,
        id="composite-needless-escape",
    ),
    pytest.param(
        wire(order_line_delete(subject="order 1/1")),
        NOT_CANONICAL,
        id="composite-unescaped-space",
    ),
    pytest.param(
        wire(order_line_delete(subject="%FF/1")),
        NOT_CANONICAL,
        id="composite-invalid-utf8-escape",
    ),
    pytest.param(
        wire(order_line_delete(subject="A%00/1")),
        "key field order_id contains a NUL character",
        id="composite-escaped-nul",
    ),
    pytest.param(
        wire(order_line_delete(subject=encode_subject(("x" * 256, 1)))),
        "key field order_id is longer than 255 characters",
        id="composite-key-too-long",
    ),
]


@pytest.mark.parametrize(("raw", "phrase"), BAD_ENVELOPES)
def test_a_bad_envelope_is_rejected_with_its_reason(
    mirrors: Mirrors, raw: bytes | str, phrase: str
) -> None:
    error = rejection(raw, mirrors)

    assert phrase in str(error)
    assert PII_MARK not in str(error)


@pytest.mark.parametrize(("raw", "phrase"), BAD_UPSERTS)
def test_a_bad_upsert_is_rejected_with_its_reason(
    mirrors: Mirrors, raw: bytes, phrase: str
) -> None:
    error = rejection(raw, mirrors)

    assert phrase in str(error)
    assert PII_MARK not in str(error)
    assert PII_MARK not in repr(error)


@pytest.mark.parametrize(("raw", "phrase"), BAD_DELETES)
def test_a_bad_delete_is_rejected_with_its_reason(
    mirrors: Mirrors, raw: bytes, phrase: str
) -> None:
    error = rejection(raw, mirrors)

    assert phrase in str(error)


@pytest.mark.parametrize(
    "time",
    [
        "20240101T000000Z",
        "2024-W01-1T00:00:00Z",
        "2024-127T00:00:00Z",
        "2024-01-01T00Z",
        "2024-01-01T00:00Z",
        "2024-05-06T07:08:09,5Z",
        "2024-05-06T07:08:09.Z",
        "2024-05-06T07:08:09+05:30:15",
        "2024-05-06T07:08:09+0530",
        "2024-05-06T07:08:09+05",
        "2024-05-06T07:08:09+05:60",
        "2024-05-06T07:08:09+24:00",
        "2024-05-06 07:08:09Z",
        "2024-05-06X07:08:09Z",
        "2024-05-06T07:08:09ZZ",
        "2024-05-06T07:08:09Z\n",
        " 2024-05-06T07:08:09Z",
        "2024-05-06",
        "2024-02-30T00:00:00Z",
        "2024-05-06T24:00:00Z",
        "2024-05-06T07:08:60Z",
        "0000-01-01T00:00:00Z",
        "\u0662\u0660\u0662\u0664-05-06T07:08:09Z",
    ],
)
def test_a_time_that_is_not_strict_rfc3339_is_rejected(mirrors: Mirrors, time: str) -> None:
    error = rejection(wire(customer_upsert(time=time)), mirrors)

    assert f"time must be an RFC 3339 timestamp, got {time!r}" in str(error)


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        ("2024-05-06T05:08:09Z", dt.datetime(2024, 5, 6, 5, 8, 9, tzinfo=dt.UTC)),
        ("2024-05-06t05:08:09z", dt.datetime(2024, 5, 6, 5, 8, 9, tzinfo=dt.UTC)),
        ("2024-05-06T07:38:09+02:30", dt.datetime(2024, 5, 6, 5, 8, 9, tzinfo=dt.UTC)),
        ("2024-05-06T00:08:09-05:00", dt.datetime(2024, 5, 6, 5, 8, 9, tzinfo=dt.UTC)),
        ("2024-05-06T05:08:09-00:00", dt.datetime(2024, 5, 6, 5, 8, 9, tzinfo=dt.UTC)),
        ("2024-05-06T05:08:09.5Z", dt.datetime(2024, 5, 6, 5, 8, 9, 500000, tzinfo=dt.UTC)),
        (
            "2024-05-06T05:08:09.123456789Z",
            dt.datetime(2024, 5, 6, 5, 8, 9, 123456, tzinfo=dt.UTC),
        ),
    ],
)
def test_a_time_in_any_rfc3339_form_is_accepted(time: str, expected: dt.datetime) -> None:
    decoded = decode_event(wire(customer_upsert(time=time)))

    assert decoded.time == expected


_DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=1)


@settings(max_examples=1500, deadline=None)
@given(
    digits=st.lists(_DIGITS, min_size=20, max_size=20),
    fraction=st.sampled_from(["", "."]),
)
def test_the_utc_form_encoders_write_is_read_as_the_groups_read_it(
    digits: list[str], fraction: str
) -> None:
    # parse_rfc3339 hands 'YYYY-MM-DDTHH:MM:SS[.ffffff]Z' to datetime.fromisoformat; any
    # digits there (month 13, hour 24, second 60 included) must come out as the RFC 3339
    # groups read them, or be refused by both.
    d = "".join(digits)
    text = f"{d[:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}"
    text += (f".{d[14:20]}" if fraction else "") + "Z"
    match = RFC3339_RE.fullmatch(text)
    assert match is not None
    try:
        expected: dt.datetime | str = _from_groups(match)
    except ValueError:
        expected = "refused"
    try:
        got: dt.datetime | str = parse_rfc3339(match)
    except ValueError:
        got = "refused"
    assert got == expected
    if isinstance(got, dt.datetime) and isinstance(expected, dt.datetime):
        assert (got.tzinfo, got.utcoffset()) == (expected.tzinfo, expected.utcoffset())


class Reading(Contract, entity="testkit.reading", version=1, key="id", register=False):
    """A contract with a float field, which JSON cannot carry when it is NaN or Infinity."""

    id: str
    value: float


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_an_event_holding_a_non_finite_float_is_never_encoded(value: float) -> None:
    # model_construct skips validation, as a careless owner might.
    event = upserted(Reading.model_construct(id="r-1", value=value), 1, event_id=EVENT_ID)

    with pytest.raises(ValueError, match=re.escape(f"{event!r} cannot be encoded")) as caught:
        encode_event(event)
    assert "NaN and Infinity have no JSON form" in str(caught.value)


def test_a_contract_violation_names_the_contract_and_every_bad_field(mirrors: Mirrors) -> None:
    doc = with_data(customer_upsert(), email="pii.alice", credit_limit="-1", tier="diamond")

    error = rejection(wire(doc), mirrors)

    assert "data violates crm.customer v1: " in str(error)
    for name in ("email:", "credit_limit:", "tier:"):
        assert name in str(error)
    assert PII_MARK not in str(error)


def test_a_rejection_carries_the_event_id_for_the_dead_letter_queue(mirrors: Mirrors) -> None:
    error = rejection(wire(customer_upsert(source="orders")), mirrors)

    assert isinstance(error, ReplicationError)
    assert error.event_id == str(EVENT_ID)
    assert str(error) == f"event {EVENT_ID}: {error.reason}"
    assert error.reason.startswith("source 'orders' is not the owner")


def test_a_rejection_before_the_id_is_read_has_no_event_id(mirrors: Mirrors) -> None:
    error = rejection(b"[]", mirrors)

    assert error.event_id is None
    assert str(error) == error.reason


def test_a_contract_instance_masks_pii_in_its_repr() -> None:
    for shown in (repr(CUSTOMER), str(CUSTOMER), f"{CUSTOMER}", repr([CUSTOMER])):
        assert EMAIL not in shown
        assert "+33123456789" not in shown
        assert "email='<pii>'" in shown
        assert f"id=UUID('{CUSTOMER_ID}')" in shown


def test_a_change_event_never_shows_pii() -> None:
    event = upserted(CUSTOMER, 3, time=WHEN, event_id=EVENT_ID)
    decoded = decode_event(encode_event(event))

    for shown in (repr(event), str(event), f"{event}", repr(decoded), repr([decoded])):
        assert EMAIL not in shown
        assert "+33123456789" not in shown
    assert repr(event) == (
        f"ChangeEvent(crm.customer.upserted subject='{CUSTOMER_ID}' version=3 id={EVENT_ID})"
    )


@pytest.mark.parametrize(
    ("build", "phrase"),
    [
        pytest.param(lambda: upserted(CUSTOMER, 0), "entity version must be a positive", id="v0"),
        pytest.param(
            lambda: upserted(CUSTOMER, True), "entity version must be a positive", id="bool"
        ),
        pytest.param(
            lambda: upserted(CUSTOMER, 1, time=dt.datetime(2024, 1, 1)),
            "event time must be timezone-aware",
            id="naive-time",
        ),
        pytest.param(
            lambda: deleted(Customer, str(CUSTOMER_ID).upper(), 1), NOT_CANONICAL, id="uuid-text"
        ),
        pytest.param(
            lambda: deleted(OrderLine, ("A", True), 1), "cannot be a bool", id="bool-key-part"
        ),
        pytest.param(lambda: deleted(OrderLine, "A", 1), "has 1 part(s)", id="composite-one"),
    ],
)
def test_an_owner_cannot_build_an_invalid_event(
    build: Callable[[], ChangeEvent], phrase: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=re.escape(phrase)):
        build()


# -- the consumer's reading: only the mirrored fields are validated ---------------------


class Parcel(Contract, entity="shipping.parcel", version=1, key="id", register=False):
    id: int
    label: str = Field(max_length=5)
    weight: int = Field(ge=0)
    note: str

    @field_validator("label")
    @classmethod
    def _upper_case(cls, value: str) -> str:
        if value != value.upper():
            raise ValueError("label must be upper case")
        return value


def _parcel_event(**data: Any) -> bytes:
    document = to_document(upserted(Parcel(id=7, label="AB", weight=3, note="n"), 1))
    document["data"].update(data)
    return json.dumps(document).encode()


def _parcels() -> ContractRegistry:
    contracts = ContractRegistry()
    contracts.register(Parcel)
    return contracts


def test_a_reader_ignores_fields_it_does_not_mirror_and_fields_it_does_not_know() -> None:
    raw = _parcel_event(weight=-5, note=None, added_later="x")

    with pytest.raises(InvalidEventError, match="weight"):
        decode_event(raw, _parcels())  # the owner's full contract refuses it
    event = decode_event(raw, _parcels(), fields=("id", "label"))

    assert event.data is not None
    assert event.data.model_dump() == {"id": 7, "label": "AB"}
    assert event.key == (7,)
    assert not hasattr(event.data, "weight")


def test_a_reader_keeps_the_constraints_and_validators_of_the_mirrored_fields() -> None:
    with pytest.raises(InvalidEventError, match="label: String should have at most 5"):
        decode_event(_parcel_event(label="TOOLONG"), _parcels(), fields=("label",))
    with pytest.raises(InvalidEventError, match="label: label must be upper case"):
        decode_event(_parcel_event(label="ab"), _parcels(), fields=("label",))
    with pytest.raises(InvalidEventError, match="NUL"):
        decode_event(_parcel_event(label="A\x00"), _parcels(), fields=("label",))
    with pytest.raises(InvalidEventError, match="id: "):
        decode_event(_parcel_event(id="seven"), _parcels(), fields=("label",))  # key always
    reader = Parcel.__contract__.reader(["label"])
    assert reader is Parcel.__contract__.reader(["id", "label"])  # built once


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Ticket(Contract, entity="testkit.ticket", version=1, key="id", register=False):
    id: int
    details: dict[str, Any]


def test_an_integer_enum_in_a_json_field_is_range_checked_at_once() -> None:
    # An IntEnum member is an int subclass: checking it with ``in range(...)`` walked the
    # 64-bit range one number at a time, and validating the owner's state never returned.
    contracts = ContractRegistry()
    contracts.register(Ticket)
    started = time.perf_counter()

    state = Ticket(id=1, details={"priority": Priority.HIGH, "levels": [Priority.LOW]})
    event = decode_event(encode_event(upserted(state, 1)), contracts)

    assert time.perf_counter() - started < 1.0
    assert event.data is not None
    assert event.data.model_dump() == {"id": 1, "details": {"priority": 2, "levels": [1]}}


WIRE_TEXT = '{"a": [1, 2.5, "é 🧪", null, true], "b": {"c": "\\u00e9"}}'


@pytest.mark.parametrize(
    "raw",
    [
        WIRE_TEXT,
        WIRE_TEXT.encode(),
        bytearray(WIRE_TEXT.encode()),
        WIRE_TEXT.encode("utf-8-sig"),
        WIRE_TEXT.encode("utf-16"),
        WIRE_TEXT.encode("utf-16-le"),
        WIRE_TEXT.encode("utf-32"),
    ],
    ids=["str", "utf-8", "bytearray", "utf-8-bom", "utf-16", "utf-16-le", "utf-32"],
)
def test_the_strict_reader_reads_what_json_loads_reads(raw: str | bytes) -> None:
    assert loads_strict(raw) == json.loads(raw)
    assert loads_strict(raw) == loads_strict(raw)  # the shared decoder keeps nothing


def test_the_strict_reader_refuses_what_json_loads_refuses_with_a_reason() -> None:
    with pytest.raises(StrictJSONError, match="Unexpected UTF-8 BOM"):
        loads_strict("\ufeff" + WIRE_TEXT)
    with pytest.raises(StrictJSONError, match="not valid JSON: Expecting"):
        loads_strict(b'{"a": }')
    with pytest.raises(TypeError, match="must be str, bytes or bytearray, not int"):
        loads_strict(5)  # type: ignore[arg-type]


class Visit(Contract, entity="testkit.visit", version=1, key="id", register=False):
    id: int
    at: dt.datetime
    log: dict[str, Any]


def test_a_utc_offset_with_seconds_reaches_the_wire_as_the_same_instant() -> None:
    # RFC 3339 writes offsets in minutes, and pydantic's JSON drops the seconds of one:
    # Paris before 1911 was 9 min 21 s ahead of UTC, so a mirror got another instant.
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    lmt = dt.datetime(1900, 5, 1, 12, 0, tzinfo=paris)
    assert lmt.utcoffset() == dt.timedelta(minutes=9, seconds=21)
    odd = dt.timezone(dt.timedelta(hours=5, minutes=30, seconds=15))
    contracts = ContractRegistry()
    contracts.register(Visit)
    state = Visit(id=1, at=lmt, log={"seen": [dt.datetime(2024, 1, 1, tzinfo=odd)], "n": 1})

    raw = encode_event(upserted(state, 1))
    event = decode_event(raw, contracts)

    assert isinstance(event.data, Visit)
    assert event.data.at == lmt  # the same instant (aware datetimes compare instants)
    assert b'"at":"1900-05-01T11:50:39Z"' in raw
    assert b'"seen":["2023-12-31T18:29:45Z"]' in raw
    assert state.at.utcoffset() == dt.timedelta(minutes=9, seconds=21)  # the owner's as it was
    plain = Visit(
        id=2, at=dt.datetime(2024, 1, 1, tzinfo=odd.__class__(dt.timedelta(hours=2))), log={}
    )
    assert b'"at":"2024-01-01T00:00:00+02:00"' in encode_event(upserted(plain, 1))  # kept
