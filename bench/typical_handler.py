"""A typical hand-written apply Lambda: the baseline of ``bench/coldstart.py``.

What teams usually write to keep a read copy of another team's entity, without
this project: Powertools Logger and batch processing, boto3 with a module-level
SQS client (for dead-lettering poison), SQLAlchemy ORM with a declarative model
of the mirror and an engine created at import (psycopg2), the pydantic contract
for validation. Each record: unwrap the SNS envelope, validate, load the row
(locked), skip it if its version is not older, ``session.merge`` and commit.

It mirrors ``crm.customer`` v1 into ``typical_customer_mirror``, a table of the
same shape as the project's ``customer_mirror`` (``mirror_table`` creates it).
Configured by ``ORDERS_DATABASE_URL`` and ``DLQ_URL``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal
from typing import Any

import boto3
import psycopg2
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError
from sqlalchemy import BigInteger, Boolean, DateTime, Numeric, String, Text, create_engine, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from contracts import Customer

TABLE = "typical_customer_mirror"

logger = Logger(service="orders")
processor = BatchProcessor(event_type=EventType.SQS)
sqs = boto3.client("sqs")
DLQ_URL = os.environ.get("DLQ_URL", "")

# psycopg2 named explicitly: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3.
DATABASE_URL = os.environ["ORDERS_DATABASE_URL"].replace("postgresql:", "postgresql+psycopg2:", 1)
engine = create_engine(DATABASE_URL, pool_pre_ping=True)
Session = sessionmaker(engine)


class Base(DeclarativeBase):
    pass


class CustomerMirror(Base):
    """The local read copy of a crm customer."""

    __tablename__ = TABLE

    id: Mapped[str] = mapped_column(UUID(as_uuid=False), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(Text)
    tier: Mapped[str | None] = mapped_column(String(64))
    credit_limit: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    created_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    tags: Mapped[list[str] | None] = mapped_column(JSONB)
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    phone: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column("_version", BigInteger)
    deleted: Mapped[bool] = mapped_column("_deleted", Boolean, server_default=text("false"))
    event_id: Mapped[str] = mapped_column("_event_id", UUID(as_uuid=False))
    event_time: Mapped[dt.datetime] = mapped_column("_event_time", DateTime(timezone=True))
    applied_at: Mapped[dt.datetime] = mapped_column("_applied_at", DateTime(timezone=True))


def dead_letter(record: SQSRecord, reason: str) -> str:
    """Send a record that can never apply to the DLQ, with its reason."""
    sqs.send_message(
        QueueUrl=DLQ_URL,
        MessageBody=record.body,
        MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
    )
    logger.warning("dead-lettered", extra={"message_id": record.message_id, "reason": reason})
    return "dead-lettered"


def record_handler(record: SQSRecord) -> str:
    """Apply one record; an exception leaves it in the queue for SQS to retry."""
    body = json.loads(record.body)
    event = json.loads(body["Message"]) if body.get("Type") == "Notification" else body
    if event.get("type", "").rsplit(".", 1)[0] != "crm.customer":
        return dead_letter(record, f"not a crm.customer event: {event.get('type')}")
    try:
        customer = None if event.get("data") is None else Customer.model_validate(event["data"])
    except ValidationError as exc:
        return dead_letter(record, str(exc))
    version = int(event["entityversion"])
    key = str(customer.id) if customer is not None else event["subject"]
    row = CustomerMirror(
        id=key,
        version=version,
        deleted=customer is None,
        event_id=event["id"],
        event_time=dt.datetime.fromisoformat(event["time"]),
        applied_at=dt.datetime.now(dt.UTC),
        name=None if customer is None else customer.name,
        email=None if customer is None else str(customer.email),
        tier=None if customer is None else customer.tier.value,
        credit_limit=None if customer is None else customer.credit_limit,
        created_at=None if customer is None else customer.created_at,
        tags=None if customer is None else customer.tags,
        address=None if customer is None else customer.address.model_dump(),
        phone=None if customer is None else customer.phone,
    )
    with Session() as session:
        try:
            current = session.get(CustomerMirror, key, with_for_update=True)
            if current is not None and current.version >= version:
                logger.info("stale", extra={"message_id": record.message_id, "key": key})
                return "stale"
            session.merge(row)
            session.commit()
        except DBAPIError as exc:
            if isinstance(exc.orig, psycopg2.DataError):  # a value the database refuses
                session.rollback()
                return dead_letter(record, str(exc.orig))
            raise
    outcome = "deleted" if customer is None else "applied"
    logger.info(outcome, extra={"message_id": record.message_id, "key": key, "version": version})
    return outcome


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The Lambda entry point: a partial-batch response."""
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
