"""Writing the failures table at run time, as plain SQL over a DB-API connection."""

from __future__ import annotations

__all__ = ["FAILURES_TABLE", "Failure", "read_failures", "record_failures"]

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from replication.dialects import Dialect, dialect_named

FAILURES_TABLE = "replication_failures"
_COLUMNS = (
    "queue",
    "message_id",
    "entity",
    "subject",
    "event_id",
    "kind",
    "reason",
    "receive_count",
    "dead_lettered",
    "first_failed_at",
    "failed_at",
)
_KEY = ("queue", "message_id")
_UPDATED = ("entity", "subject", "event_id", "kind", "reason", "receive_count", "dead_lettered")
_MAX_REASON = 4000


@dataclass(frozen=True)
class Failure:
    """One record the consumer could not apply, and why."""

    queue: str
    message_id: str
    kind: str
    """``permanent`` (dead-lettered at once) or ``transient`` (left for SQS to retry)."""
    reason: str
    receive_count: int
    dead_lettered: bool
    entity: str | None = None
    subject: str | None = None
    event_id: str | None = None


def _sql(dialect: Dialect) -> str:
    names = ", ".join(_COLUMNS)
    marks = ", ".join(dialect.marker for _ in _COLUMNS)
    insert = f"INSERT INTO {FAILURES_TABLE} ({names}) VALUES ({marks})"
    return insert + dialect.upsert(_KEY, (*_UPDATED, "failed_at"))


def record_failures(
    connection: Any, dialect: str, failures: Sequence[Failure], *, now: dt.datetime | None = None
) -> None:
    """Upsert ``failures`` on ``connection`` (the caller commits)."""
    if not failures:
        return
    database = dialect_named(dialect)
    [to_stamp] = database.converters(("datetime",))
    stamp = to_stamp(now or dt.datetime.now(dt.UTC))
    rows = [
        (
            f.queue,
            f.message_id,
            f.entity,
            f.subject,
            f.event_id,
            f.kind,
            f.reason[:_MAX_REASON],
            f.receive_count,
            f.dead_lettered,
            stamp,
            stamp,
        )
        for f in failures
    ]
    cursor = connection.cursor()
    try:
        cursor.executemany(_sql(database), rows)
    finally:
        cursor.close()


def read_failures(
    connection: Any, dialect: str, queue: str, message_ids: Sequence[str]
) -> dict[str, tuple[str, str, int]]:
    """``(reason, kind, receive_count)`` by message id, for those of ``queue`` with a row."""
    found: dict[str, tuple[str, str, int]] = {}
    mark = dialect_named(dialect).marker
    cursor = connection.cursor()
    try:
        for start in range(0, len(message_ids), 500):
            chunk = list(message_ids[start : start + 500])
            marks = ", ".join(mark for _ in chunk)
            cursor.execute(
                f"SELECT message_id, reason, kind, receive_count FROM {FAILURES_TABLE} "
                f"WHERE queue = {mark} AND message_id IN ({marks})",
                (queue, *chunk),
            )
            for message_id, reason, kind, receive_count in cursor.fetchall():
                found[message_id] = (reason, kind, int(receive_count))
    finally:
        cursor.close()
    return found
