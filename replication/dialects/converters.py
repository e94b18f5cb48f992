"""Converters of contract values into driver parameters, which dialects pick per field kind.

Pure functions, chosen once per column and then called per row (see
:attr:`replication.dialects.base.Dialect.parameter_converters`).
"""

from __future__ import annotations

__all__ = [
    "Converter",
    "as_json",
    "as_str",
    "as_text",
    "bool_int",
    "document_converters",
    "enum_value",
    "iso",
    "jsonable",
    "same",
    "utc_iso",
    "utc_naive",
]

import datetime as dt
import enum
import functools
import json
from collections.abc import Callable
from typing import Any

from pydantic_core import to_jsonable_python

Converter = Callable[[Any], Any]
_UTC = dt.UTC


def same(value: Any) -> Any:
    """The value as it is."""
    return value


def as_text(value: Any) -> Any:
    """The value's text (a UUID, a decimal); None stays None."""
    return None if value is None else str(value)


def as_str(value: Any) -> Any:
    """A string as it is; another value's text (pydantic's URLs validate to objects)."""
    return value if value is None or type(value) is str else str(value)


def enum_value(value: Any) -> Any:
    """An enum member's value; other values as they are."""
    if isinstance(value, enum.Enum):
        return value.value
    return value


def as_json(value: Any) -> Any:
    """The value as compact JSON text; None stays None."""
    if value is None:
        return None
    return json.dumps(to_jsonable_python(value), separators=(",", ":"), ensure_ascii=False)


def utc_naive(value: Any) -> Any:
    """An aware datetime as a naive one in UTC."""
    if value is None:
        return None
    return value.astimezone(_UTC).replace(tzinfo=None)


def utc_iso(value: Any) -> Any:
    """An aware datetime as ISO 8601 text in UTC."""
    if value is None:
        return None
    return value.astimezone(_UTC).isoformat()


def iso(value: Any) -> Any:
    """A date, or a datetime with its offset, as ISO 8601 text."""
    return None if value is None else value.isoformat()


def bool_int(value: Any) -> Any:
    """A boolean as 1 or 0."""
    return None if value is None else int(value)


def jsonable(value: Any) -> Any:
    """The value as JSON-ready data (a nested model as a dict); None stays None."""
    return None if value is None else to_jsonable_python(value)


_DOCUMENT: dict[str, Converter] = {
    "str": as_str,
    "uuid": as_text,
    "decimal": as_text,
    "datetime": iso,
    "date": iso,
    "enum": enum_value,
    "json": jsonable,
}


@functools.cache
def document_converters(kinds: tuple[str, ...]) -> tuple[Converter, ...]:
    """One converter per column, into values of a JSON document of rows: text where the
    column's input function reads text (exact decimals, ISO times with their offset), JSON
    numbers and booleans as they are, a JSON column's value as nested JSON."""
    return tuple(_DOCUMENT.get(kind, same) for kind in kinds)
