"""Recording change events in the caller's transaction.

An event exists if and only if the business change committed: the outbox row
is inserted on the same connection, in the same transaction, as the change.

With psycopg 3 (and libpq's pipeline mode) the INSERT waits for the COMMIT and
goes to the server with it, in one round trip: the owner's transaction waits
for the network once for its events, at commit. The row is built (its event
validated and encoded) when it is recorded, so an invalid event still fails
there; a row the database refuses fails the commit, which then commits
nothing. A row recorded in a savepoint, on an autocommit connection, or with
another driver is inserted at once.
"""

from __future__ import annotations

__all__ = ["outbox_row", "record_delete", "record_event", "record_upsert"]

import datetime as dt
import functools
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from replication.contracts import Contract, ContractInfo
from replication.conversions import with_older_versions
from replication.dialects import dialect_named
from replication.events import ChangeEvent, deleted, encode_event, upserted
from replication.outbox.table import outbox_table

_DEFAULT = outbox_table()


def outbox_row(event: ChangeEvent) -> dict[str, Any]:
    """The outbox row of a change event."""
    return {
        "event_id": str(event.id),
        "entity": event.entity,
        "contract_version": event.contract.version,
        "op": event.op,
        "subject": event.subject,
        "entity_version": event.version,
        "payload": encode_event(event).decode(),
        "created_at": event.time.astimezone(dt.UTC),
    }


def _connection(target: sa.Connection | Session) -> sa.Connection:
    return target.connection() if isinstance(target, Session) else target


_COLUMNS = (
    "event_id",
    "entity",
    "contract_version",
    "op",
    "subject",
    "entity_version",
    "payload",
    "created_at",
)
_ROWS_PER_STATEMENT = 100
"""Rows per multi-row INSERT: a flush of many changes sends one statement per 100 rows."""


def _driver_sql_ok(dialect: sa.Dialect) -> bool:
    """Whether the driver takes the outbox values as they are, in named pyformat parameters."""
    return dialect_named(dialect.name).outbox_driver_sql and dialect.paramstyle == "pyformat"


@functools.cache
def _insert_sql(table: sa.Table, dialect: sa.Dialect, count: int = 1) -> str:
    """The outbox INSERT of ``count`` rows as driver SQL with named pyformat parameters.

    Parameters are named ``%(<column>)s`` for one row and ``%(<column>_<n>)s``
    for row ``n`` of several.
    """
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in _COLUMNS)
    if count == 1:
        values = "(" + ", ".join(f"%({name})s" for name in _COLUMNS) + ")"
    else:
        values = ", ".join(
            "(" + ", ".join(f"%({name}_{n})s" for name in _COLUMNS) + ")" for n in range(count)
        )
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES {values}"


_DEFERRED: weakref.WeakKeyDictionary[sa.Connection, list[tuple[str, dict[str, Any]]]] = (
    weakref.WeakKeyDictionary()
)
"""Outbox statements waiting for their connection's COMMIT (psycopg 3)."""
_LISTENING: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _statements(
    dialect: sa.Dialect, rows: list[dict[str, Any]], table: sa.Table
) -> list[tuple[str, dict[str, Any]]]:
    if len(rows) == 1:
        return [(_insert_sql(table, dialect), rows[0])]
    statements = []
    # In order: a multi-row INSERT numbers its rows' ids in the order of its VALUES.
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        params = {f"{name}_{n}": row[name] for n, row in enumerate(chunk) for name in _COLUMNS}
        statements.append((_insert_sql(table, dialect, len(chunk)), params))
    return statements


def _defers(connection: sa.Connection) -> bool:
    """Whether ``connection``'s outbox rows can wait for its COMMIT and go with it."""
    if connection.in_nested_transaction() or not connection.in_transaction():
        return False
    driver = connection.connection.driver_connection
    return dialect_named(connection.dialect.name).pipelines(driver)


def _listen(engine: sa.Engine) -> None:
    if engine not in _LISTENING:
        sa.event.listen(engine, "commit", _commit)
        sa.event.listen(engine, "rollback", _forget)
        sa.event.listen(engine, "savepoint", _insert_now)
        sa.event.listen(engine, "begin_twophase", _insert_now)
        _LISTENING.add(engine)


def _commit(connection: sa.Connection) -> None:
    """Before the COMMIT: send the waiting rows and the COMMIT together."""
    statements = _DEFERRED.pop(connection, None)
    if not statements:
        return
    driver: Any = connection.connection.driver_connection
    dbapi = connection.dialect.loaded_dbapi
    try:
        dialect_named(connection.dialect.name).commit_pipelined(driver, statements)
    except dbapi.Error as exc:
        driver.rollback()
        sql, params = statements[0]
        raise sa.exc.DBAPIError.instance(sql, params, exc, dbapi.Error) from exc


def _forget(connection: sa.Connection) -> None:
    _DEFERRED.pop(connection, None)


def _insert_now(connection: sa.Connection, *_: Any) -> None:
    """Before a savepoint (whose rollback must not take earlier rows with it) or a
    two-phase commit: the waiting rows go in now."""
    for sql, params in _DEFERRED.pop(connection, []):
        connection.exec_driver_sql(sql, params)


def insert_rows(connection: sa.Connection, rows: list[dict[str, Any]], table: sa.Table) -> None:
    """Insert outbox rows on ``connection``.

    On the owner's commit path: where the driver takes the values as they are
    (psycopg2, PyMySQL), the statement is compiled once and run as driver SQL,
    which spares SQLAlchemy's per-execution work (about 150 us a transaction),
    and several rows go in one multi-row INSERT, one round trip, where
    psycopg2's executemany would take one round trip per row.
    """
    dialect = connection.dialect
    if not _driver_sql_ok(dialect):
        if rows:
            connection.execute(table.insert(), rows)
        return
    statements = _statements(dialect, rows, table)
    if _defers(connection):
        _listen(connection.engine)
        _DEFERRED.setdefault(connection, []).extend(statements)
        return
    for sql, params in statements:
        connection.exec_driver_sql(sql, params)


def record_event(
    target: sa.Connection | Session, *events: ChangeEvent, table: sa.Table = _DEFAULT
) -> None:
    """Insert change events into the outbox, in the transaction of ``target``.

    Each event is recorded in its own version and in every older version
    derived from it by a declared conversion (see :mod:`replication.conversions`).
    """
    if events:
        rows = [outbox_row(e) for event in events for e in with_older_versions(event)]
        insert_rows(_connection(target), rows, table)


def record_upsert(
    target: sa.Connection | Session, state: Contract, version: int, *, table: sa.Table = _DEFAULT
) -> ChangeEvent:
    """Record that ``state`` is its key's full state at ``version``; returns the event."""
    event = upserted(state, version)
    record_event(target, event, table=table)
    return event


def record_delete(
    target: sa.Connection | Session,
    contract: type[Contract] | ContractInfo,
    key: Any,
    version: int,
    *,
    table: sa.Table = _DEFAULT,
) -> ChangeEvent:
    """Record that ``key`` was deleted at ``version``; returns the event."""
    event = deleted(contract, key, version)
    record_event(target, event, table=table)
    return event
