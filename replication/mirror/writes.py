"""The apply's ways of writing a reduced batch, one for each thing a database can do.

Each takes a DB-API cursor, the mirror's statements, the reduced batch (one
event per key, in key order) and this call's applied-at stamp, and returns
``(deleted, event id)`` of each row it wrote; :func:`replication.mirror.apply_changes`
chooses among them by dialect and batch size:

- :func:`write_returning`: the guarded upsert with one bind parameter per value,
  whose ``RETURNING`` lists the rows it wrote (PostgreSQL, SQLite);
- :func:`write_document`: the same statement over the rows as one JSON
  document (PostgreSQL below the bulk threshold);
- :func:`write_stage_merge`: ``COPY`` into a stage table, then one guarded merge
  (PostgreSQL from the bulk threshold);
- :func:`write_returning_touched`: the guarded upsert whose ``RETURNING`` lists
  every row it touched, the written ones told by this call's stamp (MariaDB);
- :func:`write_read_back`: the guarded upsert, then the batch's keys read back
  (MySQL).
"""

from __future__ import annotations

__all__ = [
    "META",
    "rows_for",
    "write_document",
    "write_read_back",
    "write_returning",
    "write_returning_touched",
    "write_stage_merge",
]

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from replication.dialects import Dialect
from replication.events import ChangeEvent
from replication.mirror.statements import MirrorStatements
from replication.mirror.values import converters

META = 5
"""Metadata columns, last in every row: version, deleted, event id, event time, applied at."""


def _data_columns(statements: MirrorStatements) -> tuple[str, ...]:
    """The mirrored non-key columns: between the key and the metadata."""
    return statements.columns[statements.key_count : len(statements.columns) - META]


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


def rows_for(
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


def _returned(cursor: Any) -> list[tuple[bool, str]]:
    """``(deleted, event id)`` of each row a statement's ``RETURNING`` listed as written."""
    return [(bool(flag), str(event_id)) for flag, event_id in cursor.fetchall()]


def write_returning(
    cursor: Any, statements: MirrorStatements, events: list[ChangeEvent], applied_at: dt.datetime
) -> list[tuple[bool, str]]:
    """Guarded upsert; RETURNING lists the rows it wrote."""
    rows = rows_for(statements, events, applied_at, statements.dialect)
    written: list[tuple[bool, str]] = []
    for chunk in _chunks(rows, statements.rows_per_statement):
        sql = _upsert_sql(statements, len(chunk))
        cursor.execute(sql, [value for row in chunk for value in row])
        written += _returned(cursor)
    return written


def write_document(
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
    return _returned(cursor)


def write_stage_merge(
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
    written = _returned(cursor)
    cursor.execute(statements.stage_clear)
    return written


def write_read_back(
    cursor: Any, statements: MirrorStatements, events: list[ChangeEvent], applied_at: dt.datetime
) -> list[tuple[bool, str]]:
    """Guarded upsert of every row, then read back which rows this call wrote."""
    rows = rows_for(statements, events, applied_at, statements.dialect)
    k = statements.key_count
    stamp = rows[0][-1]  # applied-at, the last column, as the driver was given it
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


def write_returning_touched(
    cursor: Any, statements: MirrorStatements, events: list[ChangeEvent], applied_at: dt.datetime
) -> list[tuple[bool, str]]:
    """Guarded upsert returning every row it touched; a row carrying this call's applied-at
    stamp and the event's id is one this call wrote (the read-back's rule, without reading)."""
    rows = rows_for(statements, events, applied_at, statements.dialect)
    k = statements.key_count
    stamp = rows[0][-1]  # applied-at, the last column, as the driver was given it
    # key..., the event id where the stamp is this call's, else NULL; a file rendered
    # before: key..., event id, deleted, applied-at, compared here.
    compared = statements.paramstyle_marker in statements.returning_touched
    mine: dict[tuple[Any, ...], str] = {}
    for chunk in _chunks(rows, statements.rows_per_statement):
        sql = _upsert_sql(statements, len(chunk)) + statements.returning_touched
        values = [value for row in chunk for value in row]
        cursor.execute(sql, [*values, stamp] if compared else values)
        for found in cursor.fetchall():
            event_id = found[k] if compared or found[k + 2] == stamp else None
            if event_id is not None:
                mine[_key_text(found[:k])] = str(event_id)
    return _mine(rows, statements, mine)


def _mine(
    rows: list[tuple[Any, ...]], statements: MirrorStatements, found: dict[tuple[Any, ...], str]
) -> list[tuple[bool, str]]:
    """``(deleted, event id)`` of each row whose key ``found`` holds with the row's event id:
    the rows this call wrote."""
    k = statements.key_count
    event_id_at = len(statements.columns) - META + 2
    written: list[tuple[bool, str]] = []
    for row in rows:
        event_id = str(row[event_id_at])
        if found.get(_key_text(row[:k])) == event_id:
            written.append((bool(row[event_id_at - 1]), event_id))
    return written


def _key_text(key: Sequence[Any]) -> tuple[Any, ...]:
    # Keys read back come as the driver's types; compare them as text.
    return tuple(map(str, key))
