"""Writing the failures table at run time, as plain SQL over a DB-API connection."""

from __future__ import annotations

__all__ = ["FAILURES_TABLE", "Failure", "read_failures", "record_failures"]

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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


def _sql(dialect: str) -> str:
    names = ", ".join(_COLUMNS)
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in _COLUMNS)
    else:
        marks = ", ".join("%s" for _ in _COLUMNS)
    insert = f"INSERT INTO {FAILURES_TABLE} ({names}) VALUES ({marks})"
    if dialect == "mysql":
        updates = ", ".join(f"{c} = VALUES({c})" for c in (*_UPDATED, "failed_at"))
        return f"{insert} ON DUPLICATE KEY UPDATE {updates}"
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*_UPDATED, "failed_at"))
    return f"{insert} ON CONFLICT (queue, message_id) DO UPDATE SET {updates}"


def _stamp(dialect: str, now: dt.datetime) -> Any:
    if dialect == "mysql":
        return now.astimezone(dt.UTC).replace(tzinfo=None)
    if dialect == "sqlite":
        return now.astimezone(dt.UTC).isoformat()
    return now


def record_failures(
    connection: Any, dialect: str, failures: Sequence[Failure], *, now: dt.datetime | None = None
) -> None:
    """Upsert ``failures`` on ``connection`` (the caller commits)."""
    if not failures:
        return
    stamp = _stamp(dialect, now or dt.datetime.now(dt.UTC))
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
        cursor.executemany(_sql(dialect), rows)
    finally:
        cursor.close()


def read_failures(
    connection: Any, dialect: str, queue: str, message_ids: Sequence[str]
) -> dict[str, tuple[str, str, int]]:
    """``(reason, kind, receive_count)`` by message id, for those of ``queue`` with a row."""
    found: dict[str, tuple[str, str, int]] = {}
    mark = "?" if dialect == "sqlite" else "%s"
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
