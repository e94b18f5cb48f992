"""Helpers for consumer tests: mirror and failures tables, an apply function, Lambda events."""

from __future__ import annotations

import copy
import io
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from replication.consumer.core import Consumer
from replication.consumer.database import connect, spec_from_url
from replication.consumer.dead_letters import DeadLetters, MemoryDeadLetters
from replication.consumer.failures_table import failures_table
from replication.consumer.function import ApplyFunction
from replication.consumer.observe import Observer
from replication.manifest import Manifest
from replication.mirror.render import statements_for
from replication.mirror.tables import mirror_table
from replication.payloads import PAYLOAD_MAX_BYTES
from tests.databases import Database

EVENTS = Path(__file__).resolve().parent / "events"


PAYLOAD_BUCKET = "payloads"
"""The bucket the test consumers read offloaded payloads from (their owners' prefixes)."""


def lambda_event(name: str) -> dict[str, Any]:
    """A Lambda event kept as JSON under tests/events/, as AWS delivers it."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def create_consumer_tables(db: Database, manifest: Manifest) -> None:
    """Drop and create the manifest's mirror tables and the failures table."""
    metadata = sa.MetaData()
    for declaration in manifest.mirrors:
        mirror_table(declaration, metadata)
    failures_table(metadata)
    engine = sa.create_engine(db.sqlalchemy_url, poolclass=sa.pool.NullPool)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
    finally:
        engine.dispose()


@dataclass
class Harness:
    """An apply function on a real database, with its dead letters and log output kept."""

    function: ApplyFunction
    dead_letters: Any
    log: io.StringIO
    connections: list[Any] = field(default_factory=list)

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.function(event, None)
        return response

    def failed_ids(self, response: dict[str, Any]) -> list[str]:
        """Message ids reported as failed in a partial-batch response."""
        return [item["itemIdentifier"] for item in response["batchItemFailures"]]

    def close(self) -> None:
        self.function.consumer.close()


def harness(
    db: Database,
    manifest: Manifest,
    *,
    dead_letters: DeadLetters | None = None,
    prefix: str = "dev",
    metrics: bool = False,
    payload_max_bytes: int | None = None,
    owner_accounts: dict[str, str] | None = None,
) -> Harness:
    """An :class:`ApplyFunction` over its own connection to ``db``."""
    spec = spec_from_url(db.sqlalchemy_url)
    letters = dead_letters if dead_letters is not None else MemoryDeadLetters()
    log = io.StringIO()
    opened: list[Any] = []

    def open_connection() -> Any:
        connection = connect(spec)
        opened.append(connection)
        return connection

    consumer = Consumer(
        manifest,
        connect=open_connection,
        dialect=db.dialect,
        statements={d.contract.entity: statements_for(d, db.dialect) for d in manifest.mirrors},
        dead_letters=letters,
        prefix=prefix,
        payload_bucket=PAYLOAD_BUCKET,
        payload_max_bytes=payload_max_bytes or PAYLOAD_MAX_BYTES,
        owner_accounts=owner_accounts,
    )
    function = ApplyFunction(consumer, Observer(manifest.service, stream=log, metrics=metrics))
    return Harness(function, letters, log, opened)


def rows(db: Database, sql: str) -> list[tuple[Any, ...]]:
    """Every row of a query, on a fresh transaction of the test's own connection."""
    db.connection.rollback()
    cursor = db.connection.cursor()
    try:
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()
        db.connection.rollback()


def sqs_record(
    body: str,
    *,
    queue: str = "dev-orders--crm-customer-v1",
    receive_count: int = 1,
    group: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One SQS record as Lambda delivers it (same shape as the files in tests/events/)."""
    template: dict[str, Any] = copy.deepcopy(lambda_event("sqs_raw_delivery.json")["Records"][0])
    template["messageId"] = str(uuid.uuid4())
    template["body"] = body
    template["eventSourceARN"] = f"arn:aws:sqs:us-east-1:123456789012:{queue}"
    template["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    template["messageAttributes"] = attributes or {}
    if group is not None:
        template["attributes"]["MessageGroupId"] = group
        template["attributes"]["MessageDeduplicationId"] = template["messageId"]
    return template
