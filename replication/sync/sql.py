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

The SQL of each function is the dialect's (:mod:`replication.dialects`): the
elements here compile through whichever dialect the engine's SQLAlchemy
dialect names.
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

from replication.dialects import Dialect, dialect_named

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


def _dialect(compiler: Any) -> Dialect:
    return dialect_named(compiler.dialect.name)


def _arg(compiler: Any, element: FunctionElement[Any], **kw: Any) -> str:
    [value] = list(element.clauses)
    return str(compiler.process(value, **kw))


@compiles(binary_text)
def _binary_text(element: binary_text, compiler: Any, **kw: Any) -> str:
    return _dialect(compiler).binary_text_sql(_arg(compiler, element, **kw))


@compiles(canonical)
def _canonical(element: canonical, compiler: Any, **kw: Any) -> str:
    [value] = list(element.clauses)
    return _dialect(compiler).canonical_sql(
        _arg(compiler, element, **kw),
        element.kind,
        int(element.scale or 0),
        uuid_typed=isinstance(value.type, sa.Uuid),
        engine_dialect=compiler.dialect,
    )


@compiles(_hash_int)
def _hash_int_sql(element: _hash_int, compiler: Any, **kw: Any) -> str:
    text = _arg(compiler, element, **kw)
    return _dialect(compiler).hash_sql(text, element.digits, portable=element.portable)


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


@compiles(json_object)
def _json_object(element: json_object, compiler: Any, **kw: Any) -> str:
    return _dialect(compiler).json_object_sql(_pairs(element, compiler, **kw))


class json_value(FunctionElement[str]):  # noqa: N801 - reads as a SQL function
    """The text of member ``name`` of a JSON object (unescaped; NULL when null or absent)."""

    type = sa.String()
    inherit_cache = False

    def __init__(self, document: ColumnElement[Any], name: str) -> None:
        self.name = name
        super().__init__(document)


@compiles(json_value)
def _json_value(element: json_value, compiler: Any, **kw: Any) -> str:
    return _dialect(compiler).json_value_sql(_arg(compiler, element, **kw), element.name)


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


@contextmanager
def connect(engine: Any) -> Iterator[Any]:
    """A connection of ``engine`` set up for a comparison by its dialect: times in UTC, the
    functions the dialect lacks defined (:meth:`replication.dialects.Dialect.comparing`).

    The session time zone decides how PostgreSQL formats a ``timestamp`` and how
    MySQL reads a ``TIMESTAMP``: UTC, on both sides.
    """
    with engine.connect() as connection:
        dialect = dialect_named(engine.dialect.name)
        with dialect.comparing(connection, canonical_value):
            yield connection
