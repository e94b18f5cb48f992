"""SQL that both sides of a comparison compute the same way, inside each database.

Every mirrored value is turned into one canonical text per field kind (UTC
timestamps with microseconds, decimals at the contract's scale, lower-case
UUIDs, normalised JSON, ``1``/``0`` for booleans), so that an owner's column
and a mirror's column holding the same value give the same text, whatever
their SQL types. A row's texts are joined and hashed with MD5, which
PostgreSQL, MariaDB and MySQL all compute on the UTF-8 bytes; the first 15
hex digits become an integer that can be summed per bucket. A key's bucket
comes from the hash of its text alone, so both sides put a key in the same
bucket without agreeing on a sort order (their collations may differ).

JSON is normalised by each database's own rules (``jsonb`` text on
PostgreSQL, ``JSON_NORMALIZE`` on MariaDB), which agree within a dialect;
across dialects JSON fields are left out of the content hash (see
``Comparison``).
"""

from __future__ import annotations

__all__ = [
    "NULL_MARK",
    "SEPARATOR",
    "binary_text",
    "bucket_of",
    "canonical",
    "canonical_value",
    "connect",
    "field_parts",
    "joined",
    "json_object",
    "key_order",
    "row_hash",
]

import datetime as dt
import enum
import hashlib
import json
import types
import typing
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

SEPARATOR = "\x1f"
NULL_MARK = "\x1e"


class canonical(FunctionElement[str]):  # noqa: N801 - reads as a SQL function
    """The canonical text of ``value``, a field of ``kind`` (``scale``: decimals)."""

    type = sa.String()
    inherit_cache = False

    def __init__(self, value: ColumnElement[Any], kind: str, scale: int | None = None) -> None:
        self.kind = kind
        self.scale = scale
        super().__init__(value)


class _hash_int(FunctionElement[int]):  # noqa: N801
    """An integer hash of a text, of about ``digits`` hex digits.

    Portable: the first ``digits`` hex digits of MD5, equal on every dialect.
    Native (both sides on one dialect): the database's own faster hash
    (PostgreSQL's ``hashtext``/``hashtextextended``, MySQL's ``CRC32`` for
    short ones).
    """

    type = sa.BigInteger()
    inherit_cache = False

    def __init__(self, text: ColumnElement[Any], digits: int, *, portable: bool) -> None:
        self.digits = digits
        self.portable = portable
        super().__init__(text)


class binary_text(FunctionElement[str]):  # noqa: N801
    """A text that sorts by its bytes (UTF-8), as Python sorts strings, on every dialect."""

    type = sa.String()
    inherit_cache = False


@compiles(binary_text, "postgresql")
def _binary_text_pg(element: binary_text, compiler: Any, **kw: Any) -> str:
    return f'({_arg(compiler, element, **kw)} COLLATE "C")'


@compiles(binary_text, "mysql")
@compiles(binary_text, "mariadb")
def _binary_text_mysql(element: binary_text, compiler: Any, **kw: Any) -> str:
    return f"(CONVERT({_arg(compiler, element, **kw)} USING utf8mb4) COLLATE utf8mb4_bin)"


def _arg(compiler: Any, element: FunctionElement[Any], **kw: Any) -> str:
    [value] = list(element.clauses)
    return str(compiler.process(value, **kw))


@compiles(canonical, "postgresql")
def _canonical_pg(element: canonical, compiler: Any, **kw: Any) -> str:
    x = _arg(compiler, element, **kw)
    kind = element.kind
    if kind in ("str", "enum", "int", "float"):
        return f"CAST({x} AS TEXT)"
    if kind == "uuid":
        [value] = list(element.clauses)
        if isinstance(value.type, sa.Uuid):
            return f"CAST({x} AS TEXT)"  # PostgreSQL writes UUIDs in lower case
        # Text holding a UUID, hyphenated or as 32 hex digits, in either case (lower-casing
        # the usual hyphenated form is cheaper than parsing it).
        return (
            f'CASE WHEN char_length({x}) = 36 THEN lower(CAST({x} AS TEXT) COLLATE "C") '
            f"ELSE CAST(CAST({x} AS UUID) AS TEXT) END"
        )
    if kind == "bool":
        return f"CASE WHEN {x} THEN '1' WHEN NOT {x} THEN '0' END"
    if kind == "decimal":
        return f"CAST(round(CAST({x} AS NUMERIC), {int(element.scale or 0)}) AS TEXT)"
    if kind == "datetime":
        return f"to_char({x} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
    if kind == "date":
        return f"to_char({x}, 'YYYY-MM-DD')"
    if kind == "json":
        return f"CAST(CAST({x} AS JSONB) AS TEXT)"
    raise ValueError(f"no canonical text for kind {kind}")


@compiles(canonical, "mysql")
@compiles(canonical, "mariadb")
def _canonical_mysql(element: canonical, compiler: Any, **kw: Any) -> str:
    x = _arg(compiler, element, **kw)
    kind = element.kind
    if kind in ("str", "enum"):
        return f"CAST({x} AS CHAR CHARACTER SET utf8mb4)"
    if kind in ("int", "float"):
        return f"CAST({x} AS CHAR)"
    if kind == "uuid":
        # SQLAlchemy's Uuid is CHAR(32) here (hex without hyphens); mirrors hold 36 characters.
        hyphenated = (
            f"CONCAT_WS('-', SUBSTRING({x}, 1, 8), SUBSTRING({x}, 9, 4), "
            f"SUBSTRING({x}, 13, 4), SUBSTRING({x}, 17, 4), SUBSTRING({x}, 21))"
        )
        return f"LOWER(IF(CHAR_LENGTH({x}) = 32, {hyphenated}, {x}))"
    if kind == "bool":
        return f"CASE WHEN {x} THEN '1' WHEN NOT {x} THEN '0' END"
    if kind == "decimal":
        return f"CAST(ROUND({x}, {int(element.scale or 0)}) AS CHAR)"
    if kind == "datetime":
        return f"DATE_FORMAT({x}, '%%Y-%%m-%%dT%%H:%%i:%%s.%%f')"
    if kind == "date":
        return f"DATE_FORMAT({x}, '%%Y-%%m-%%d')"
    if kind == "json":
        mariadb = getattr(compiler.dialect, "is_mariadb", False)
        return f"JSON_NORMALIZE({x})" if mariadb else f"CAST(CAST({x} AS JSON) AS CHAR)"
    raise ValueError(f"no canonical text for kind {kind}")


@compiles(_hash_int, "postgresql")
def _hash_int_pg(element: _hash_int, compiler: Any, **kw: Any) -> str:
    x = _arg(compiler, element, **kw)
    if not element.portable:
        if element.digits <= 8:
            return f"(CAST(hashtext({x}) AS BIGINT) & 2147483647)"
        return f"hashtextextended({x}, 0)"
    bits = element.digits * 4
    return f"CAST(CAST(('x' || substr(md5({x}), 1, {element.digits})) AS bit({bits})) AS BIGINT)"


@compiles(_hash_int, "mysql")
@compiles(_hash_int, "mariadb")
def _hash_int_mysql(element: _hash_int, compiler: Any, **kw: Any) -> str:
    x = _arg(compiler, element, **kw)
    # Hashes see the bytes of the text's own character set: UTF-8 it first, as PostgreSQL's.
    utf8 = f"CONVERT({x} USING utf8mb4)"
    if not element.portable and element.digits <= 8:
        return f"CRC32({utf8})"
    return f"CAST(CONV(SUBSTRING(MD5({utf8}), 1, {element.digits}), 16, 10) AS UNSIGNED)"


_MAX_ARGUMENTS = 90
"""PostgreSQL takes at most 100 arguments in a function call: longer rows join in groups."""


def joined(parts: list[ColumnElement[Any]]) -> ColumnElement[str]:
    """The parts' texts joined by :data:`SEPARATOR`, NULL written as :data:`NULL_MARK`."""
    if len(parts) > _MAX_ARGUMENTS:
        groups = [parts[i : i + _MAX_ARGUMENTS] for i in range(0, len(parts), _MAX_ARGUMENTS)]
        return joined([joined(group) for group in groups])
    texts = [sa.func.coalesce(p, sa.literal(NULL_MARK)) for p in parts]
    return sa.func.concat_ws(sa.literal(SEPARATOR), *texts)


def row_hash(parts: list[ColumnElement[Any]], *, portable: bool) -> ColumnElement[int]:
    """A 60-bit hash of a row's canonical texts (summed per bucket: order does not matter)."""
    return _hash_int(joined(parts), 15, portable=portable)


def key_order(key_text: ColumnElement[Any], *, portable: bool) -> ColumnElement[int]:
    """An integer from a key's text: the order both sides stream keys in (ties: the text).

    An integer, not the text: the two databases may sort text differently.
    """
    return _hash_int(key_text, 8, portable=portable)


def bucket_of(key_text: ColumnElement[Any], buckets: int, *, portable: bool) -> ColumnElement[int]:
    """The bucket (0 .. buckets-1) of a key, from its text alone."""
    return _hash_int(key_text, 8, portable=portable) % buckets


class json_object(FunctionElement[Any]):  # noqa: N801 - reads as a SQL function
    """A JSON object built from named SQL values, on any dialect."""

    type = sa.JSON()
    inherit_cache = False

    def __init__(self, **values: ColumnElement[Any]) -> None:
        self.names = list(values)
        super().__init__(*values.values())


def _pairs(element: json_object, compiler: Any, **kw: Any) -> str:
    values = [compiler.process(v, **kw) for v in element.clauses]
    return ", ".join(
        f"'{name}', {value}" for name, value in zip(element.names, values, strict=True)
    )


@compiles(json_object, "postgresql")
def _json_object_pg(element: json_object, compiler: Any, **kw: Any) -> str:
    return f"jsonb_build_object({_pairs(element, compiler, **kw)})"


@compiles(json_object, "mysql")
@compiles(json_object, "mariadb")
def _json_object_mysql(element: json_object, compiler: Any, **kw: Any) -> str:
    return f"JSON_OBJECT({_pairs(element, compiler, **kw)})"


class json_value(FunctionElement[str]):  # noqa: N801 - reads as a SQL function
    """The text of member ``name`` of a JSON object (unescaped; NULL when null or absent)."""

    type = sa.String()
    inherit_cache = False

    def __init__(self, document: ColumnElement[Any], name: str) -> None:
        self.name = name
        super().__init__(document)


@compiles(json_value, "postgresql")
def _json_value_pg(element: json_value, compiler: Any, **kw: Any) -> str:
    return f"(CAST({_arg(compiler, element, **kw)} AS JSONB) ->> '{element.name}')"


@compiles(json_value, "mysql")
@compiles(json_value, "mariadb")
def _json_value_mysql(element: json_value, compiler: Any, **kw: Any) -> str:
    return f"JSON_VALUE({_arg(compiler, element, **kw)}, '$.{element.name}')"


def field_parts(
    model: type[BaseModel], name: str, kind: str, scale: int | None, expr: ColumnElement[Any]
) -> tuple[list[ColumnElement[Any]], bool]:
    """The canonical texts of a field, and whether they rest on JSON text normalisation.

    A nested model of text members is compared member by member (each side
    extracts them, or the owner names them in a :class:`json_object`): cheaper
    than normalising JSON, and comparable across dialects. Other JSON values
    are compared as normalised JSON text, which only agrees within a dialect.
    """
    members = _text_members(model.model_fields[name].annotation)
    if members is not None:
        given = (
            dict(zip(expr.names, expr.clauses, strict=True))
            if isinstance(expr, json_object)
            else {}
        )
        if given and set(given) != set(members):
            given = {}
        return [
            canonical(given[m] if given else json_value(expr, m), members[m]) for m in members
        ], False
    return [canonical(expr, kind, scale)], kind == "json"


def _text_members(annotation: Any) -> dict[str, str] | None:
    """A nested model's members and kinds when all are text, enum or UUID; else None."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = options[0] if len(options) == 1 else None
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return None
    members: dict[str, str] = {}
    for member, info in annotation.model_fields.items():
        inner = info.annotation
        if typing.get_origin(inner) in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(inner) if a is not type(None)]
            inner = options[0] if len(options) == 1 else None
        if inner is str:
            members[member] = "str"
        elif isinstance(inner, type) and issubclass(inner, enum.Enum):
            members[member] = "enum"
        else:
            return None
    return members


# -- SQLite: the same functions, in Python (the demo's embedded default) -------------------


@compiles(canonical, "sqlite")
def _canonical_sqlite(element: canonical, compiler: Any, **kw: Any) -> str:
    x = _arg(compiler, element, **kw)
    return f"replication_canonical('{element.kind}', {int(element.scale or 0)}, {x})"


@compiles(_hash_int, "sqlite")
def _hash_int_sqlite(element: _hash_int, compiler: Any, **kw: Any) -> str:
    return f"replication_hash({_arg(compiler, element, **kw)}, {element.digits})"


@compiles(json_value, "sqlite")
def _json_value_sqlite(element: json_value, compiler: Any, **kw: Any) -> str:
    return f"json_extract({_arg(compiler, element, **kw)}, '$.{element.name}')"


@compiles(json_object, "sqlite")
def _json_object_sqlite(element: json_object, compiler: Any, **kw: Any) -> str:
    return f"json_object({_pairs(element, compiler, **kw)})"


@compiles(binary_text, "sqlite")
def _binary_text_sqlite(element: binary_text, compiler: Any, **kw: Any) -> str:
    return _arg(compiler, element, **kw)  # SQLite compares text byte by byte already


def canonical_value(kind: str, scale: int, value: Any) -> str | None:
    """The canonical text of a Python value of a field of ``kind`` (SQLite's, and keys')."""
    if value is None:
        return None
    if kind == "datetime":
        when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    if kind == "decimal":
        return str(Decimal(str(value)).quantize(Decimal(1).scaleb(-scale)))
    if kind == "bool":
        return "1" if value else "0"
    if kind == "int":
        return str(int(value))
    if kind == "uuid":
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    if kind == "json":
        document = json.loads(value) if isinstance(value, str | bytes) else value
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if kind == "date":
        return str(value)[:10]
    return str(value)


def _hash_python(text: str | None, digits: int) -> int | None:
    if text is None:
        return None
    value = int(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:digits], 16)
    # SQLite sums in 64-bit integers: 40-bit row hashes leave room for 8 million rows a bucket.
    return value & (2**40 - 1) if digits > 10 else value


def _concat_ws(separator: str, *parts: Any) -> str:
    return separator.join(str(p) for p in parts if p is not None)


@contextmanager
def connect(engine: Any) -> Iterator[Any]:
    """A connection of ``engine`` for a comparison: times in UTC; SQLite's functions defined.

    The session time zone decides how PostgreSQL formats a ``timestamp`` and how
    MySQL reads a ``TIMESTAMP``: UTC here, on both sides, for this transaction
    (PostgreSQL) or until the connection is handed back (MySQL restores it).
    """
    with engine.connect() as connection:
        name = engine.dialect.name
        if name == "postgresql":
            connection.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        elif name in ("mysql", "mariadb"):
            connection.exec_driver_sql("SET @replication_time_zone = @@session.time_zone")
            connection.exec_driver_sql("SET time_zone = '+00:00'")
        elif name == "sqlite":
            raw = connection.connection.dbapi_connection
            raw.create_function("replication_canonical", 3, canonical_value, deterministic=True)
            raw.create_function("replication_hash", 2, _hash_python, deterministic=True)
            raw.create_function("concat_ws", -1, _concat_ws, deterministic=True)
        try:
            yield connection
        finally:
            if name in ("mysql", "mariadb"):
                connection.rollback()
                connection.exec_driver_sql("SET time_zone = @replication_time_zone")
