"""The outbox table: change events written in the owner's business transaction.

One row per change event, in insertion order (``id``). The relay publishes
unpublished rows and marks them; published rows are removed after a
retention period. On PostgreSQL a statement trigger sends ``NOTIFY
replication_outbox`` when rows are inserted, so a waiting relay wakes at
commit without polling.
"""

from __future__ import annotations

__all__ = [
    "NOTIFY_CHANNEL",
    "OUTBOX_TABLE",
    "create_notify_sql",
    "drop_notify_sql",
    "outbox_table",
]

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from replication.mirror.tables import KeyString

OUTBOX_TABLE = "replication_outbox"
NOTIFY_CHANNEL = "replication_outbox"
SUBJECT_LENGTH = 512


def _timestamp() -> sa.types.TypeEngine[Any]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def create_notify_sql(name: str = OUTBOX_TABLE) -> str:
    """PostgreSQL: the statement trigger that NOTIFYs waiting relays of new rows."""
    return (
        f"CREATE OR REPLACE FUNCTION {name}_notify() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN PERFORM pg_notify('{NOTIFY_CHANNEL}', ''); RETURN NULL; END $$; "
        f"DROP TRIGGER IF EXISTS {name}_notify ON {name}; "
        f"CREATE TRIGGER {name}_notify AFTER INSERT ON {name} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {name}_notify()"
    )


def drop_notify_sql(name: str = OUTBOX_TABLE) -> str:
    """PostgreSQL: removes the trigger and its function."""
    return f"DROP FUNCTION IF EXISTS {name}_notify() CASCADE"


def outbox_table(metadata: sa.MetaData | None = None, name: str = OUTBOX_TABLE) -> sa.Table:
    """The outbox table (create it with Alembic, or ``create_all`` in tests and demos)."""
    table = sa.Table(
        name,
        metadata if metadata is not None else sa.MetaData(),
        # SQLite only auto-increments an INTEGER PRIMARY KEY.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("entity", KeyString(64), nullable=False),
        sa.Column("contract_version", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("subject", KeyString(SUBJECT_LENGTH), nullable=False),
        sa.Column("entity_version", sa.BigInteger(), nullable=False),
        sa.Column(
            "payload", sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"), nullable=False
        ),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("published_at", _timestamp(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _timestamp(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        # Marked published without being sent: a newer version of its key was sent instead.
        sa.Column("superseded", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Index(f"ix_{name}_pending", "published_at", "id"),
        sa.Index(f"ix_{name}_key", "entity", "subject", "id"),
        comment="Change events awaiting publication by the replication relay.",
        # Owners never need the new id back: no RETURNING on their commit path.
        implicit_returning=False,
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
    )
    trigger = sa.DDL(create_notify_sql(name))  # type: ignore[no-untyped-call]
    sa.event.listen(table, "after_create", trigger.execute_if(dialect="postgresql"))
    drop = sa.DDL(drop_notify_sql(name))  # type: ignore[no-untyped-call]
    sa.event.listen(table, "after_drop", drop.execute_if(dialect="postgresql"))
    return table
