"""The failures table: why a consumer could not apply a record (schema, for migrations).

One row per (queue, message id): permanent failures (sent to the DLQ at once)
and transient ones (retried by SQS; the row keeps the last reason and receive
count, so a message SQS later moves to the DLQ still has its reason). The
consumer writes it with :mod:`replication.consumer.failures`, without SQLAlchemy.
"""

from __future__ import annotations

__all__ = ["FAILURES_TABLE", "failures_table"]

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from replication.consumer.failures import FAILURES_TABLE


def _timestamp() -> sa.types.TypeEngine[Any]:
    return (
        sa.DateTime(timezone=True)
        .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
        .with_variant(sa.String(40), "sqlite")
    )


def failures_table(metadata: sa.MetaData | None = None) -> sa.Table:
    """The failures table (create it with Alembic, or ``create_all`` in tests and demos)."""
    return sa.Table(
        FAILURES_TABLE,
        metadata if metadata is not None else sa.MetaData(),
        sa.Column("queue", sa.String(80), primary_key=True),
        sa.Column("message_id", sa.String(100), primary_key=True),
        sa.Column("entity", sa.String(200), nullable=True),
        sa.Column("subject", sa.String(512), nullable=True),
        sa.Column("event_id", sa.String(36), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("receive_count", sa.Integer(), nullable=False),
        sa.Column("dead_lettered", sa.Boolean(), nullable=False),
        sa.Column("first_failed_at", _timestamp(), nullable=False),
        sa.Column("failed_at", _timestamp(), nullable=False),
        sa.Index(f"ix_{FAILURES_TABLE}_failed_at", "failed_at"),
    )
