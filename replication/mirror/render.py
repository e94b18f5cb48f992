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

import hashlib

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect

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

DIALECTS = ("postgresql", "mysql", "sqlite")

# Rows per statement: below PostgreSQL's 65,535 bind parameters, SQLite's 32,766
# and MySQL's default 16 MiB packet for ordinary rows.
_PARAMETER_BUDGET = {"postgresql": 60_000, "mysql": 30_000, "sqlite": 30_000}
_MAX_ROWS = 1_000

BULK_THRESHOLD = 500
"""From this many rows after reduction, PostgreSQL takes the COPY + merge path."""


def sqlalchemy_dialect(name: str) -> Dialect:
    """The SQLAlchemy dialect object for a dialect name (``mariadb`` included)."""
    if name == "postgresql":
        return postgresql.dialect()  # type: ignore[no-untyped-call]
    if name == "mariadb":
        return mysql.dialect(is_mariadb=True)
    if name == "mysql":
        return mysql.dialect()
    if name == "sqlite":
        return sqlite.dialect()
    raise ValueError(f"unsupported dialect {name!r} (supported: {', '.join(DIALECTS)})")


def _stage_name(table: str) -> str:
    # Identifiers stop at 63 characters on PostgreSQL: a long table name gets a
    # hashed suffix instead of being cut to a prefix another mirror may share.
    name = f"_stage_{table}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:10]
    return f"_stage_{table[:45]}_{digest}"


def statements_for(declaration: MirrorDeclaration, dialect: str) -> MirrorStatements:
    """Render the statements of a declared mirror for a dialect."""
    return render_statements(declaration, mirror_table(declaration), dialect)


def render_statements(
    declaration: MirrorDeclaration, table: sa.Table, dialect: str
) -> MirrorStatements:
    """Render the statements for ``table`` (the declaration's mirror table) on ``dialect``."""
    if dialect == "mariadb":
        dialect = "mysql"
    sa_dialect = sqlalchemy_dialect(dialect)
    quote = sa_dialect.identifier_preparer.quote
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
    marker = "?" if dialect == "sqlite" else "%s"
    row_template = "(" + ", ".join([marker] * len(columns)) + ")"
    key_template = "(" + ", ".join([marker] * len(key)) + ")"
    insert_prefix = f"INSERT INTO {t} ({', '.join(q)}) VALUES "
    updated = [quote(c) for c in (*fields, *meta) if c != VERSION]
    v, d = quote(VERSION), quote(DELETED)
    e, a = quote(EVENT_ID), quote(APPLIED_AT)
    stage = quote(_stage_name(table.name))
    stage_setup = stage_copy = stage_merge = stage_clear = ""
    if dialect in ("postgresql", "sqlite"):
        sets = ", ".join(f"{c} = excluded.{c}" for c in [*updated, v])
        suffix = (
            f" ON CONFLICT ({', '.join(qkey)}) DO UPDATE SET {sets}"
            f" WHERE {t}.{v} < excluded.{v} RETURNING {d}, {e}"
        )
        if dialect == "postgresql":
            stage_setup = (
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} "
                f"(LIKE {t} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            stage_copy = f"COPY {stage} ({', '.join(q)}) FROM STDIN"
            # The stage is read in the order the rows were copied, which is the
            # batch's key order (reduce_batch sorts it): concurrent appliers lock
            # rows in one order without paying for a sort here. A fresh temporary
            # heap that is only appended to is scanned in insertion order.
            stage_merge = f"INSERT INTO {t} ({', '.join(q)}) SELECT {', '.join(q)} FROM {stage}"
            stage_merge += suffix
            stage_clear = f"DELETE FROM {stage}"
    else:
        # MySQL evaluates assignments left to right, each seeing the ones before:
        # the version must be assigned last so every guard sees the old version.
        guard = f"{t}.{v} < VALUES({v})"
        sets = ", ".join(f"{c} = IF({guard}, VALUES({c}), {c})" for c in [*updated, v])
        suffix = f" ON DUPLICATE KEY UPDATE {sets}"
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
    return MirrorStatements(
        dialect=dialect,
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
        rows_per_statement=max(1, min(_MAX_ROWS, _PARAMETER_BUDGET[dialect] // len(columns))),
        select_written_prefix=select_written,
        key_template=key_template,
        stage_setup=stage_setup,
        stage_copy=stage_copy,
        stage_merge=stage_merge,
        stage_clear=stage_clear,
        bulk_threshold=BULK_THRESHOLD if dialect == "postgresql" else 0,
        refresh_update=refresh_update,
    )
