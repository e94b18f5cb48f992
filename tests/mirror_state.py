"""Read a mirror back and compare it with what the owner holds, across dialects."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

from pydantic_core import to_jsonable_python

from replication.contracts import Contract
from replication.events import ChangeEvent
from replication.mirror.statements import MirrorStatements
from replication.mirror.tables import DELETED, VERSION
from tests.databases import Database

Row = dict[str, Any]


def normalize(kind: str, value: Any) -> Any:
    """A dialect-independent form of a stored or contract value."""
    if value is None:
        return None
    if kind == "uuid":
        return str(uuid.UUID(str(value)))
    if kind == "decimal":
        return Decimal(str(value))
    if kind == "datetime":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:  # MySQL stores UTC without an offset
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    if kind == "json":
        if isinstance(value, str | bytes):
            return json.loads(value)
        return json.loads(json.dumps(to_jsonable_python(value)))
    if kind == "bool":
        return bool(value)
    if kind == "enum":
        return getattr(value, "value", value)
    if kind == "date":
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)
    return value


def read_mirror(db: Database, statements: MirrorStatements) -> dict[tuple[Any, ...], Row]:
    """Every mirror row by key, values normalized, metadata under ``_version``/``_deleted``."""
    columns = statements.columns[: len(statements.columns) - 3]  # without event id/times
    kinds = statements.kinds[: len(columns)]
    cursor = db.connection.cursor()
    try:
        q = "`" if db.dialect == "mysql" else '"'
        names = ", ".join(f"{q}{c}{q}" for c in columns)
        cursor.execute(f"SELECT {names} FROM {q}{statements.table}{q}")
        rows = cursor.fetchall()
    finally:
        cursor.close()
    result: dict[tuple[Any, ...], Row] = {}
    decoded = db.dialect == "postgresql"  # the drivers decode jsonb: a str is a JSON string
    for raw in rows:
        row = {
            c: normalize(k, json.dumps(v) if decoded and k == "json" and v is not None else v)
            for c, k, v in zip(columns, kinds, raw, strict=True)
        }
        result[tuple(row[c] for c in columns[: statements.key_count])] = row
    return result


def expected_row(
    statements: MirrorStatements, key: tuple[Any, ...], version: int, state: Contract | None
) -> Row:
    """The mirror row an owner's state (None: deleted) at ``version`` must produce."""
    columns = statements.columns[: len(statements.columns) - 3]
    kinds = statements.kinds[: len(columns)]
    row: Row = {}
    k = statements.key_count
    for i, (column, kind) in enumerate(zip(columns, kinds, strict=True)):
        if column == VERSION:
            row[column] = version
        elif column == DELETED:
            row[column] = state is None
        elif i < k:
            row[column] = normalize(kind, key[i])
        else:
            row[column] = None if state is None else normalize(kind, getattr(state, column))
    return row


def key_of(statements: MirrorStatements, key: tuple[Any, ...]) -> tuple[Any, ...]:
    """A key normalized the way :func:`read_mirror` keys rows."""
    return tuple(normalize(kind, part) for kind, part in zip(statements.kinds, key, strict=False))


def row_of(statements: MirrorStatements, event: ChangeEvent) -> Row:
    """The mirror row ``event`` must leave for its key."""
    return expected_row(statements, event.key, event.version, event.data)


def rows_of(statements: MirrorStatements, *events: ChangeEvent) -> dict[tuple[Any, ...], Row]:
    """The mirror ``events`` (one per key) must leave, keyed like :func:`read_mirror`."""
    return {key_of(statements, e.key): row_of(statements, e) for e in events}
