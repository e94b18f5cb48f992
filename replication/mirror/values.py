"""Converting contract values to what each database driver is given.

Pure functions, chosen once per column (by field kind and dialect) and then
called per row. Three targets: bind parameters for PostgreSQL (psycopg2),
MySQL/MariaDB (PyMySQL) and SQLite (sqlite3), and PostgreSQL's COPY text
format.
"""

from __future__ import annotations

__all__ = ["COPY", "Converter", "converters"]

import datetime as dt
import enum
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from pydantic_core import to_jsonable_python

Converter = Callable[[Any], Any]
COPY = "copy"
"""Pseudo-dialect: PostgreSQL's COPY text format."""

_UTC = dt.UTC


def _same(value: Any) -> Any:
    return value


def _text(value: Any) -> Any:
    return None if value is None else str(value)


def _str(value: Any) -> Any:
    # pydantic types such as URLs validate to objects whose text is the value.
    return value if value is None or type(value) is str else str(value)


def _enum(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _json(value: Any) -> Any:
    if value is None:
        return None
    return json.dumps(to_jsonable_python(value), separators=(",", ":"), ensure_ascii=False)


def _utc_naive(value: Any) -> Any:
    if value is None:
        return None
    return value.astimezone(_UTC).replace(tzinfo=None)


def _utc_iso(value: Any) -> Any:
    if value is None:
        return None
    return value.astimezone(_UTC).isoformat()


def _iso(value: Any) -> Any:
    return None if value is None else value.isoformat()


def _bool_int(value: Any) -> Any:
    return None if value is None else int(value)


_PARAM: dict[str, dict[str, Converter]] = {
    "postgresql": {"str": _str, "uuid": _text, "enum": _enum, "json": _json},
    "mysql": {"str": _str, "uuid": _text, "enum": _enum, "json": _json, "datetime": _utc_naive},
    "sqlite": {
        "str": _str,
        "uuid": _text,
        "enum": _enum,
        "json": _json,
        "datetime": _utc_iso,
        "date": _iso,
        "decimal": _text,
        "bool": _bool_int,
    },
}

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    return str(value).translate(_COPY_ESCAPES)


def _copy_plain(value: Any) -> str:
    # Numbers, UUIDs and dates never contain characters COPY escapes.
    return "\\N" if value is None else str(value)


def _copy_bool(value: Any) -> str:
    if value is None:
        return "\\N"
    return "t" if value else "f"


def _copy_datetime(value: Any) -> str:
    return "\\N" if value is None else value.isoformat()


def _copy_enum(value: Any) -> str:
    return _copy_text(_enum(value))


def _copy_json(value: Any) -> str:
    return "\\N" if value is None else _copy_text(_json(value))


_COPY: dict[str, Converter] = {
    "str": _copy_text,
    "int": _copy_plain,
    "float": lambda v: "\\N" if v is None else repr(float(v)),
    "decimal": _copy_plain,
    "uuid": _copy_plain,
    "date": _copy_plain,
    "bool": _copy_bool,
    "datetime": _copy_datetime,
    "enum": _copy_enum,
    "json": _copy_json,
}


@cache
def converters(kinds: tuple[str, ...], target: str) -> tuple[Converter, ...]:
    """One converter per column, for a dialect's bind parameters or for ``COPY``.

    ``mariadb`` (SQLAlchemy's name for a ``mariadb://`` URL) converts as ``mysql``.
    """
    if target == COPY:
        return tuple(_COPY[kind] for kind in kinds)
    table = _PARAM["mysql" if target == "mariadb" else target]
    return tuple(table.get(kind, _same) for kind in kinds)
