"""Apply a batch of change events to a mirror, inside the caller's transaction.

Runs the statements rendered by :mod:`replication.mirror.statements` over a
plain DB-API connection (psycopg2, psycopg 3, PyMySQL, sqlite3; a SQLAlchemy
``Connection`` is unwrapped), so this module imports neither SQLAlchemy nor a
driver. It never commits: the caller owns the transaction.

One set-based, version-guarded write per chunk of rows, as the statements'
dialect (:mod:`replication.dialects`) renders it:

- where the guarded upsert returns the rows it wrote (PostgreSQL and SQLite:
  ``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE mirror.version <
  excluded.version RETURNING``), that is the outcome; from ``bulk_threshold``
  rows, a dialect with a bulk path (PostgreSQL) first loads the rows into a
  stage table (``COPY``) and merges them with one such statement; below it (or
  with the bulk path off), a dialect with a document upsert (PostgreSQL) sends
  the rows as one JSON parameter that the statement reads as rows of the
  table's type, instead of one bind parameter per value;
- elsewhere (MySQL/MariaDB: ``INSERT ... ON DUPLICATE KEY UPDATE`` with every
  column guarded), a row holding this call's event id and applied-at time was
  written by it, any other is stale: MariaDB's ``RETURNING`` lists the rows the
  statement touched, MySQL's are read back. (MySQL reports no per-row outcome,
  and a read before the write would miscount when a concurrent writer commits
  a newer version in between.)

The writes themselves are in :mod:`replication.mirror.writes`.
"""

from __future__ import annotations

__all__ = ["apply_changes", "dialect_of", "refresh_changes"]

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any

from replication.dialects import Dialect, dialect_for_driver
from replication.errors import ConfigurationError
from replication.events import ChangeEvent
from replication.mirror.decide import ApplyResult, reduce_batch
from replication.mirror.statements import MirrorStatements
from replication.mirror.writes import (
    META,
    rows_for,
    write_document,
    write_read_back,
    write_returning,
    write_returning_touched,
    write_stage_merge,
)


def dialect_of(connection: Any) -> str:
    """The dialect of a DB-API (or SQLAlchemy) connection, from its driver."""
    return _dialect_of(_dbapi(connection)).name


def _dialect_of(raw: Any) -> Dialect:
    root = type(raw).__module__.split(".", 1)[0]
    found = dialect_for_driver(root)
    if found is None:
        raise ValueError(f"unsupported database driver {root!r}")
    return found


def _dbapi(connection: Any) -> Any:
    if hasattr(connection, "exec_driver_sql"):  # a SQLAlchemy Connection
        if not connection.in_transaction():
            # Writing under SQLAlchemy's feet would not autobegin its transaction,
            # and the caller's commit() would then commit nothing.
            connection.begin()
        return connection.connection.dbapi_connection
    return connection


def apply_changes(
    connection: Any,
    statements: MirrorStatements,
    events: Sequence[ChangeEvent],
    *,
    bulk: bool = True,
    now: dt.datetime | None = None,
) -> ApplyResult:
    """Apply ``events`` to the mirror of ``statements`` in the caller's transaction."""
    raw = _dbapi(connection)
    dialect = _dialect_of(raw)
    if dialect.name != statements.dialect:
        raise ValueError(
            f"statements were rendered for {statements.dialect}, the connection is {dialect.name}"
        )
    for event in events:
        if (event.entity, event.contract.version) != (
            statements.entity,
            statements.contract_version,
        ):
            raise ValueError(
                f"{event!r} is not for mirror {statements.table} "
                f"({statements.entity} v{statements.contract_version})"
            )
    if dialect.in_autocommit(raw):
        # Each statement would commit on its own: the batch would not be atomic, and
        # PostgreSQL's stage table (ON COMMIT DELETE ROWS) would empty before the merge.
        raise ValueError(
            "apply_changes runs inside the caller's transaction; "
            "this connection is in autocommit mode"
        )
    reduced = reduce_batch(events)
    collapsed = len(events) - len(reduced)
    if not reduced:
        return ApplyResult(received=len(events), collapsed=collapsed)
    applied_at = _unique_stamp(now or dt.datetime.now(dt.UTC))
    cursor = raw.cursor()
    try:
        if not dialect.returns_written:
            if statements.returning_touched and dialect.upsert_returns_touched(raw):
                written = write_returning_touched(cursor, statements, reduced, applied_at)
            else:
                written = write_read_back(cursor, statements, reduced, applied_at)
        elif (
            bulk
            and statements.bulk_threshold
            and len(reduced) >= statements.bulk_threshold
            and dialect.can_bulk_load(cursor)
        ):
            written = write_stage_merge(cursor, dialect, statements, reduced, applied_at)
        elif statements.document_upsert:
            written = write_document(cursor, dialect, statements, reduced, applied_at)
        else:
            written = write_returning(cursor, statements, reduced, applied_at)
    finally:
        cursor.close()
    deleted = sum(1 for flag, _ in written if flag)
    return ApplyResult(
        received=len(events),
        applied=len(written) - deleted,
        deleted=deleted,
        stale=len(reduced) - len(written),
        collapsed=collapsed,
        written=frozenset(event_id for _, event_id in written),
    )


def refresh_changes(
    connection: Any,
    statements: MirrorStatements,
    events: Sequence[ChangeEvent],
    *,
    now: dt.datetime | None = None,
) -> frozenset[str]:
    """Rewrite live rows held at exactly each upsert's version; returns the ids written.

    A snapshot at version V is the owner's state at V, so it may replace a row
    at V (a backfill filling a column added since, a repair of content that
    drifted). Never a tombstone, never a newer row: the version guard holds.
    """
    upserts = [e for e in reduce_batch(events) if e.data is not None]
    if not upserts:
        return frozenset()
    raw = _dbapi(connection)
    rows = rows_for(
        statements, upserts, _unique_stamp(now or dt.datetime.now(dt.UTC)), statements.dialect
    )
    if not statements.refresh_update:
        raise ConfigurationError(
            f"the statements of mirror table {statements.table} were rendered before refreshes "
            "existed: render them again (replication mirrors render)"
        )
    k, columns = statements.key_count, statements.columns
    end = len(columns) - META
    sql = statements.refresh_update
    written = set()
    cursor = raw.cursor()
    try:
        for event, row in zip(upserts, rows, strict=True):
            cursor.execute(sql, [*row[k:end], *row[end + 2 :], *row[:k], row[end], row[end + 1]])
            if cursor.rowcount == 1:
                written.add(str(event.id))
    finally:
        cursor.close()
    return frozenset(written)


_last_stamp = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_stamp_lock = threading.Lock()
_STAMP_WINDOW = dt.timedelta(seconds=1)


def _unique_stamp(now: dt.datetime) -> dt.datetime:
    """``now``, moved forward by microseconds if a recent call used it, so calls differ.

    Where the apply reads the written rows back (MySQL), it tells which rows a call
    wrote by its event id and applied-at stamp; two calls applying the same event
    with the same stamp would be indistinguishable.
    """
    global _last_stamp
    with _stamp_lock:
        stamp = now
        if _last_stamp - _STAMP_WINDOW < now <= _last_stamp:
            stamp = _last_stamp + dt.timedelta(microseconds=1)
        _last_stamp = stamp
    return stamp
