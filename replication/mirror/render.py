"""Render :class:`~replication.mirror.statements.MirrorStatements` from a mirror table.

SQLAlchemy is the source of truth for the table (:mod:`replication.mirror.tables`);
this module quotes its identifiers per dialect and assembles the statements
once, so the apply itself never needs SQLAlchemy.
"""

from __future__ import annotations

__all__ = [
    "BULK_THRESHOLD",
    "DIALECTS",
    "render_statements",
    "sqlalchemy_dialect",
    "statements_for",
]

import sqlalchemy as sa
from sqlalchemy.dialects import registry
from sqlalchemy.engine import Dialect

from replication.dialects import dialect_named, registered
from replication.dialects.postgresql import POSTGRESQL
from replication.manifest import MirrorDeclaration
from replication.mirror.statements import MirrorStatements
from replication.mirror.tables import (
    APPLIED_AT,
    DELETED,
    EVENT_ID,
    METADATA_COLUMNS,
    VERSION,
    mirror_table,
)

DIALECTS = tuple(d.name for d in registered())
"""The dialects the project ships."""

_MAX_ROWS = 1_000

BULK_THRESHOLD = POSTGRESQL.bulk_threshold
"""From this many rows after reduction, PostgreSQL takes the COPY + merge path."""


def sqlalchemy_dialect(name: str) -> Dialect:
    """The SQLAlchemy dialect object for a dialect name (``mariadb`` included)."""
    database = dialect_named(name)
    loaded: type[Dialect] = registry.load(database.sqlalchemy_name)
    return loaded(**database.sqlalchemy_options(name))


def statements_for(declaration: MirrorDeclaration, dialect: str) -> MirrorStatements:
    """Render the statements of a declared mirror for a dialect."""
    return render_statements(declaration, mirror_table(declaration), dialect)


def render_statements(
    declaration: MirrorDeclaration, table: sa.Table, dialect: str
) -> MirrorStatements:
    """Render the statements for ``table`` (the declaration's mirror table) on ``dialect``."""
    database = dialect_named(dialect)
    # Quoted as the dialect's own name asks (MariaDB's statements are MySQL's).
    quote = sqlalchemy_dialect(database.name).identifier_preparer.quote
    info = declaration.contract
    key = list(info.key)
    fields = [name for name in declaration.fields if name not in info.key]
    meta = [name for name, _ in METADATA_COLUMNS]
    columns = [*key, *fields, *meta]
    missing = [c for c in columns if c not in table.c]
    if missing:
        raise ValueError(f"table {table.name} lacks column(s) {', '.join(missing)}")
    kinds = [info.fields[c].kind for c in (*key, *fields)] + [k for _, k in METADATA_COLUMNS]
    t = quote(table.name)
    q = [quote(c) for c in columns]
    qkey = [quote(c) for c in key]
    marker = database.marker
    row_template = "(" + ", ".join([marker] * len(columns)) + ")"
    key_template = "(" + ", ".join([marker] * len(key)) + ")"
    insert_prefix = f"INSERT INTO {t} ({', '.join(q)}) VALUES "
    updated = [quote(c) for c in (*fields, *meta) if c != VERSION]
    v, d = quote(VERSION), quote(DELETED)
    e, a = quote(EVENT_ID), quote(APPLIED_AT)
    suffix = database.guarded_upsert(t, qkey, updated, v, returned=(d, e))
    stage = database.stage_statements(quote, table.name, q, suffix)
    refreshed = [quote(c) for c in (*fields, *meta) if c not in (VERSION, DELETED)]
    matched = [*qkey, v, d]
    refresh_update = (
        f"UPDATE {t} SET {', '.join(f'{c} = {marker}' for c in refreshed)} "
        f"WHERE {' AND '.join(f'{c} = {marker}' for c in matched)}"
    )
    select_written = (
        f"SELECT {', '.join(qkey)}, {e}, {d} FROM {t} "
        f"WHERE {a} = {marker} AND ({', '.join(qkey)}) IN "
    )
    # The server compares the stamp: a row this call did not write returns a NULL event
    # id, and the driver reads no datetime per row.
    returning_touched = (
        ""
        if database.returns_written
        else f" RETURNING {', '.join(qkey)}, IF({a} = {marker}, {e}, NULL)"
    )
    return MirrorStatements(
        dialect=database.name,
        entity=info.entity,
        contract_version=info.version,
        table=table.name,
        columns=tuple(columns),
        kinds=tuple(kinds),
        key_count=len(key),
        paramstyle_marker=marker,
        insert_prefix=insert_prefix,
        row_template=row_template,
        upsert_suffix=suffix,
        rows_per_statement=max(1, min(_MAX_ROWS, database.parameter_budget // len(columns))),
        select_written_prefix=select_written,
        key_template=key_template,
        stage_setup=stage.setup if stage else "",
        stage_copy=stage.load if stage else "",
        stage_merge=stage.merge if stage else "",
        stage_clear=stage.clear if stage else "",
        bulk_threshold=database.bulk_threshold if stage else 0,
        refresh_update=refresh_update,
        returning_touched=returning_touched,
        document_upsert=database.document_upsert(t, q, suffix),
    )
