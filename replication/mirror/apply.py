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
  column guarded), the batch's keys are read back: a row holding this call's
  event id and applied-at time was written by it, any other is stale. (MySQL
  reports no per-row outcome, and a read before the write would miscount when
  a concurrent writer commits a newer version in between.)
"""

from __future__ import annotations

__all__ = ["apply_changes", "dialect_of", "refresh_changes"]

import datetime as dt
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from replication.dialects import Dialect, dialect_for_driver
from replication.errors import ConfigurationError
from replication.events import ChangeEvent
from replication.mirror.decide import ApplyResult, reduce_batch
from replication.mirror.statements import MirrorStatements
from replication.mirror.values import converters

_META = 5  # version, deleted, event id, event time, applied at


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
                written = _write_returning_touched(cursor, statements, reduced, applied_at)
            else:
                written = _write_read_back(cursor, statements, reduced, applied_at)
        elif (
            bulk
            and statements.bulk_threshold
            and len(reduced) >= statements.bulk_threshold
            and dialect.can_bulk_load(cursor)
        ):
            written = _write_stage_merge(cursor, dialect, statements, reduced, applied_at)
        elif statements.document_upsert:
            written = _write_document(cursor, dialect, statements, reduced, applied_at)
        else:
            written = _write_returning(cursor, statements, reduced, applied_at)
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
    rows = _rows(
        statements, upserts, _unique_stamp(now or dt.datetime.now(dt.UTC)), statements.dialect
    )
    if not statements.refresh_update:
        raise ConfigurationError(
            f"the statements of mirror table {statements.table} were rendered before refreshes "
            "existed: render them again (replication mirrors render)"
        )
    k, columns = statements.key_count, statements.columns
    end = len(columns) - _META
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


def _data_columns(statements: MirrorStatements) -> tuple[str, ...]:
    """The mirrored non-key columns: between the key and the metadata."""
    return statements.columns[statements.key_count : len(statements.columns) - _META]


def _values(
    data_columns: tuple[str, ...], event: ChangeEvent, applied_at: dt.datetime
) -> list[Any]:
    state = event.data
    if state is None:
        values: list[Any] = [*event.key, *([None] * len(data_columns)), event.version, True]
    else:
        values = [*event.key, *[getattr(state, c) for c in data_columns], event.version, False]
    values += (event.id, event.time, applied_at)
    return values


def _rows(
    statements: MirrorStatements,
    events: Iterable[ChangeEvent],
    applied_at: dt.datetime,
    target: str,
) -> list[tuple[Any, ...]]:
    convert = converters(statements.kinds, target)
    data_columns = _data_columns(statements)
    return [
        tuple(f(v) for f, v in zip(convert, _values(data_columns, e, applied_at), strict=True))
        for e in events
    ]


def _chunks(rows: list[tuple[Any, ...]], size: int) -> Iterable[list[tuple[Any, ...]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _upsert_sql(statements: MirrorStatements, rows: int) -> str:
    """The guarded multi-row upsert for ``rows`` rows."""
    values = ", ".join([statements.row_template] * rows)
    return statements.insert_prefix + values + statements.upsert_suffix


def _write_returning(
    cursor: Any, statements: MirrorStatements, events: list[ChangeEvent], applied_at: dt.datetime
) -> list[tuple[bool, str]]:
    """Guarded upsert; RETURNING lists the rows it wrote."""
    rows = _rows(statements, events, applied_at, statements.dialect)
    written: list[tuple[bool, str]] = []
    for chunk in _chunks(rows, statements.rows_per_statement):
        sql = _upsert_sql(statements, len(chunk))
        cursor.execute(sql, [value for row in chunk for value in row])
        written += [(bool(flag), str(event_id)) for flag, event_id in cursor.fetchall()]
    return written


def _write_document(
    cursor: Any,
    dialect: Dialect,
    statements: MirrorStatements,
    events: list[ChangeEvent],
    applied_at: dt.datetime,
) -> list[tuple[bool, str]]:
    """Guarded upsert of the rows as one JSON document (the dialect's); RETURNING lists the
    rows it wrote."""
    convert = dialect.document_converters(statements.kinds)
    data_columns = _data_columns(statements)
    document = dialect.document(
        statements.columns,
        (
            [f(v) for f, v in zip(convert, _values(data_columns, e, applied_at), strict=True)]
            for e in events
        ),
    )
    cursor.execute(statements.document_upsert, [document])
    return [(bool(flag), str(event_id)) for flag, event_id in cursor.fetchall()]


def _write_stage_merge(
    cursor: Any,
    dialect: Dialect,
    statements: MirrorStatements,
    events: list[ChangeEvent],
    applied_at: dt.datetime,
) -> list[tuple[bool, str]]:
    """Bulk path: load a session-local stage table in one go, then one guarded merge."""
    data_columns = _data_columns(statements)
    cursor.execute(statements.stage_setup)
    dialect.bulk_load(
        cursor,
        statements.stage_copy,
        statements.kinds,
        (_values(data_columns, event, applied_at) for event in events),
    )
    cursor.execute(statements.stage_merge)
    written = [(bool(flag), str(event_id)) for flag, event_id in cursor.fetchall()]
    cursor.execute(statements.stage_clear)
    return written


def _write_read_back(
    cursor: Any, statements: MirrorStatements, events: list[ChangeEvent], applied_at: dt.datetime
) -> list[tuple[bool, str]]:
    """Guarded upsert of every row, then read back which rows this call wrote."""
    rows = _rows(statements, events, applied_at, statements.dialect)
    k = statements.key_count
    event_id_at = len(statements.columns) - _META + 2
    stamp = rows[0][event_id_at + 2]  # applied-at, as the driver was given it
    for chunk in _chunks(rows, statements.rows_per_statement):
        sql = _upsert_sql(statements, len(chunk))
        cursor.execute(sql, [value for row in chunk for value in row])
    mine: dict[tuple[Any, ...], str] = {}
    for chunk in _chunks(rows, statements.rows_per_statement):
        sql = statements.select_written_prefix + (
            "(" + ", ".join([statements.key_template] * len(chunk)) + ")"
        )
        cursor.execute(sql, [stamp, *[value for row in chunk for value in row[:k]]])
        for found in cursor.fetchall():
            mine[_key_text(found[:k])] = str(found[k])
    return _mine(rows, statements, mine)


def _write_returning_touched(
    cursor: Any, statements: MirrorStatements, events: list[ChangeEvent], applied_at: dt.datetime
) -> list[tuple[bool, str]]:
    """Guarded upsert returning every row it touched; a row carrying this call's applied-at
    stamp and the event's id is one this call wrote (the read-back's rule, without reading)."""
    rows = _rows(statements, events, applied_at, statements.dialect)
    k = statements.key_count
    event_id_at = len(statements.columns) - _META + 2
    stamp = rows[0][event_id_at + 2]  # applied-at, as the driver was given it
    mine: dict[tuple[Any, ...], str] = {}
    for chunk in _chunks(rows, statements.rows_per_statement):
        sql = _upsert_sql(statements, len(chunk)) + statements.returning_touched
        cursor.execute(sql, [value for row in chunk for value in row])
        for found in cursor.fetchall():  # key..., event id, deleted, applied-at
            if found[k + 2] == stamp:
                mine[_key_text(found[:k])] = str(found[k])
    return _mine(rows, statements, mine)


def _mine(
    rows: list[tuple[Any, ...]], statements: MirrorStatements, found: dict[tuple[Any, ...], str]
) -> list[tuple[bool, str]]:
    """``(deleted, event id)`` of each row whose key ``found`` holds with the row's event id:
    the rows this call wrote."""
    k = statements.key_count
    event_id_at = len(statements.columns) - _META + 2
    written: list[tuple[bool, str]] = []
    for row in rows:
        event_id = str(row[event_id_at])
        if found.get(_key_text(row[:k])) == event_id:
            written.append((bool(row[event_id_at - 1]), event_id))
    return written


def _key_text(key: Sequence[Any]) -> tuple[Any, ...]:
    # Keys read back come as the driver's types; compare them as text.
    return tuple(str(part) for part in key)
