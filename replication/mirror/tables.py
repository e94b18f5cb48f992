"""Mirror tables: from a contract and a mirror declaration to a SQLAlchemy ``Table``.

SQLAlchemy is the source of truth for the table definition; the statements the
apply runs are rendered from it (see :mod:`replication.mirror.statements`).

Every mirrored field becomes a nullable column (a tombstone keeps only the key
and its metadata), the key becomes the primary key, and five metadata columns
record the version guard and the provenance of each row.
"""

from __future__ import annotations

__all__ = [
    "APPLIED_AT",
    "DELETED",
    "EVENT_ID",
    "EVENT_TIME",
    "METADATA_COLUMNS",
    "VERSION",
    "KeyString",
    "column_type",
    "mirror_table",
]

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import TypeCompiler
from sqlalchemy.types import TypeEngine

from replication.contracts import FieldKind, FieldSpec
from replication.events import KEY_TEXT_LENGTH
from replication.manifest import MirrorDeclaration

VERSION = "_version"
DELETED = "_deleted"
EVENT_ID = "_event_id"
EVENT_TIME = "_event_time"
APPLIED_AT = "_applied_at"
METADATA_COLUMNS: tuple[tuple[str, FieldKind], ...] = (
    (VERSION, "int"),
    (DELETED, "bool"),
    (EVENT_ID, "uuid"),
    (EVENT_TIME, "datetime"),
    (APPLIED_AT, "datetime"),
)
"""Metadata columns in table order, with the kind of value each holds."""

_TEXT_DIALECTS = ("mysql", "mariadb", "sqlite")
FILLFACTOR = 85
ENUM_TEXT_LENGTH = 64
VARCHAR_LIMIT = 2000
"""Longer declared text becomes TEXT: MySQL caps a whole row at 65,535 bytes."""


def _timestamp() -> TypeEngine[Any]:
    # MySQL's DATETIME drops microseconds unless asked; values are stored in UTC there.
    return (
        sa.DateTime(timezone=True)
        .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
        .with_variant(sa.String(40), "sqlite")
    )


def _uuid() -> TypeEngine[Any]:
    # Canonical 36-character text where there is no native type, so that mirrors
    # join with consumers' own text columns holding the same ids.
    return sa.Uuid(as_uuid=False).with_variant(sa.String(36), *_TEXT_DIALECTS)


class KeyString(sa.String):
    """Text of a key column: compared exactly, byte for byte, as the owner compares it.

    MySQL and MariaDB compare text case-insensitively and ignore trailing spaces
    by default, which would merge distinct keys; this type takes a binary
    collation that does neither (``utf8mb4_nopad_bin`` on MariaDB,
    ``utf8mb4_0900_bin`` on MySQL 8).
    """

    cache_ok = True


@compiles(KeyString, "mysql")
@compiles(KeyString, "mariadb")
def _key_string_mysql(element: KeyString, compiler: TypeCompiler, **kw: Any) -> str:
    mariadb = getattr(compiler.dialect, "is_mariadb", False)
    collation = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
    return f"VARCHAR({element.length}) COLLATE {collation}"


def column_type(spec: FieldSpec, *, key: bool = False) -> TypeEngine[Any]:
    """The column type that holds values of this contract field."""
    kind = spec.kind
    if kind == "str":
        if key:
            return KeyString(spec.max_length or KEY_TEXT_LENGTH)
        if spec.max_length and spec.max_length <= VARCHAR_LIMIT:
            return sa.String(spec.max_length)
        # MySQL's TEXT stops at 64 KiB; the contract allows more.
        return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    if kind == "enum":
        # Text, not a native enum: a new value of up to ENUM_TEXT_LENGTH
        # characters needs no schema migration.
        return sa.String(max(ENUM_TEXT_LENGTH, spec.max_length or 0))
    if kind == "int":
        return sa.BigInteger()
    if kind == "float":
        return sa.Double()
    if kind == "bool":
        return sa.Boolean()
    if kind == "decimal":
        precision = spec.precision or 38
        scale = spec.scale if spec.scale is not None else (0 if spec.precision else 10)
        # SQLite has no exact decimal type: keep the exact text.
        return sa.Numeric(precision, scale, asdecimal=True).with_variant(sa.Text(), "sqlite")
    if kind == "datetime":
        return _timestamp()
    if kind == "date":
        return sa.Date().with_variant(sa.String(10), "sqlite")
    if kind == "uuid":
        return _uuid()
    if kind == "json":
        return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    raise AssertionError(f"unhandled field kind {kind}")


def mirror_table(declaration: MirrorDeclaration, metadata: sa.MetaData | None = None) -> sa.Table:
    """The SQLAlchemy table of a mirror declaration."""
    info = declaration.contract
    columns: list[sa.Column[Any]] = []
    for name in info.key:
        # The owner's key, stored as given: an integer primary key would otherwise be
        # AUTO_INCREMENT on MariaDB (which replaces a key of 0 with a new one) and
        # BIGSERIAL on PostgreSQL.
        key_type = column_type(info.fields[name], key=True)
        columns.append(sa.Column(name, key_type, primary_key=True, autoincrement=False))
    for name in declaration.fields:
        if name not in info.key:
            columns.append(sa.Column(name, column_type(info.fields[name]), nullable=True))
    columns += [
        sa.Column(VERSION, sa.BigInteger(), nullable=False),
        # "false" reads the same on PostgreSQL, MySQL and SQLite (unlike 0 or 'f').
        sa.Column(DELETED, sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column(EVENT_ID, _uuid(), nullable=False),
        sa.Column(EVENT_TIME, _timestamp(), nullable=False),
        sa.Column(APPLIED_AT, _timestamp(), nullable=False),
    ]
    return sa.Table(
        declaration.table,
        metadata if metadata is not None else sa.MetaData(),
        *columns,
        comment=(
            f"Read copy of {info.label} owned by {info.owner}, maintained by replication "
            f"for {declaration.service}; do not write to it."
        ),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
        # Mirrors are update-heavy: free space in each page lets PostgreSQL
        # update a row in place (HOT) without touching the key index.
        postgresql_with={"fillfactor": FILLFACTOR},
    )
